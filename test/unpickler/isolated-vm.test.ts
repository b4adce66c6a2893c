import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, readFileSync, realpathSync } from 'node:fs';
import { join } from 'node:path';
import { ISOLATED_VM_CANDIDATES, isolatedVmDirs, loadIsolatedVm } from '../../src/unpickler/isolated-vm.js';
import { workerReadList } from '../../src/unpickler/walls.js';
import { ROOT } from '../helpers/fixtures.js';

/** isolated-vm majors by the Node lines their `engines` and prebuilt binaries cover. */
function fits(major: number, nodeMajor: number): boolean {
  if (major === 5) return nodeMajor >= 18 && nodeMajor <= 22;
  if (major === 6) return nodeMajor >= 22 && nodeMajor <= 24;
  return major === 7 && nodeMajor >= 24;
}

test('loadIsolatedVm() loads an isolated-vm major that fits the running Node, and runs code in it', () => {
  const loaded = loadIsolatedVm();
  assert.ok((ISOLATED_VM_CANDIDATES as readonly string[]).includes(loaded.name), loaded.name);
  const manifest = JSON.parse(readFileSync(join(loaded.dir, 'package.json'), 'utf8')) as { name: string; version: string };
  assert.is(manifest.name, 'isolated-vm');
  assert.is(manifest.version, loaded.version);
  const nodeMajor = Number(process.versions.node.split('.')[0]);
  assert.ok(fits(Number(loaded.version.split('.')[0]), nodeMajor), `isolated-vm ${loaded.version} on Node ${process.versions.node}`);
  const isolate = new loaded.ivm.Isolate({ memoryLimit: 16 });
  try {
    assert.is(isolate.createContextSync().evalSync('6 * 7'), 42);
  } finally {
    isolate.dispose();
  }
  assert.is(loadIsolatedVm(), loaded, 'loaded once');
});

test('loadIsolatedVm() prefers the newest installed major that loads', () => {
  const loaded = loadIsolatedVm();
  const installed = isolatedVmDirs();
  assert.ok(installed.includes(loaded.dir));
  // every candidate listed before the one that loaded is either absent or does not load here
  const newer = ISOLATED_VM_CANDIDATES.slice(0, ISOLATED_VM_CANDIDATES.indexOf(loaded.name as (typeof ISOLATED_VM_CANDIDATES)[number]));
  for (const name of newer) {
    const path = join(ROOT, 'node_modules', name);
    if (!existsSync(path)) continue;
    const dir = realpathSync(path);
    assert.ok(installed.includes(dir), dir);
    const version = (JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { version: string }).version;
    assert.not.ok(fits(Number(version.split('.')[0]), Number(process.versions.node.split('.')[0])), `${name}@${version} fits but was passed over`);
  }
});

test('a walled worker may read every installed isolated-vm (it loads whichever fits its Node)', () => {
  const read = workerReadList(join(ROOT, 'dist', 'src', 'unpickler', 'worker.js'), '/nonexistent');
  for (const dir of isolatedVmDirs()) assert.ok(read.includes(dir), dir);
});

test.run();
