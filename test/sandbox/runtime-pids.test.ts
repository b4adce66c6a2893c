import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { pidsMaxCandidates } from '../../src/sandbox/runtime-pids.js';
import { HANG_GUARD_MS } from '../helpers/budget.js';
import { ROOT } from './helpers.js';

test('candidates: cgroup v1 pids line and v2 line, nearest folder first, both under the hierarchy root', () => {
  const v1 = '12:pids:/libpod_parent/libpod-abc\n11:memory:/libpod_parent/libpod-abc\n0::/\n';
  assert.equal(pidsMaxCandidates(v1).slice(0, 3), ['/sys/fs/cgroup/pids/libpod_parent/libpod-abc', '/sys/fs/cgroup/pids/libpod_parent', '/sys/fs/cgroup/pids']);
  assert.ok(pidsMaxCandidates(v1).includes('/sys/fs/cgroup'), 'the v2 line counts too');
  assert.equal(pidsMaxCandidates('0::/kubepods/pod1/c1\n'), ['/sys/fs/cgroup/kubepods/pod1/c1', '/sys/fs/cgroup/kubepods/pod1', '/sys/fs/cgroup/kubepods', '/sys/fs/cgroup']);
  assert.equal(pidsMaxCandidates('3:cpu,cpuacct:/x\n'), [], 'a hierarchy without pids is not read');
});

/** Where this machine lets root make a pids cgroup: a v1 pids hierarchy or a v2 one with pids. */
function pidsRoot(): string | null {
  for (const root of ['/sys/fs/cgroup/pids', '/sys/fs/cgroup']) {
    if (existsSync(join(root, 'cgroup.procs')) && (root.endsWith('/pids') || existsSync(join(root, 'cgroup.subtree_control')))) return root;
  }
  return null;
}

const root = process.getuid?.() === 0 ? pidsRoot() : null;
test(`a process in a cgroup with pids.max set reads that bound (what --pids-limit sets)${root ? '' : ' [skipped: not root or no pids hierarchy]'}`, () => {
  if (!root) return;
  // A parent bound of 123 above a child's looser 500: the tightest on the way up holds.
  const parent = join(root, `mg-runtime-pids-${process.pid}`);
  const dir = join(parent, 'inner');
  mkdirSync(parent);
  mkdirSync(dir);
  try {
    writeFileSync(join(parent, 'pids.max'), '123');
    writeFileSync(join(dir, 'pids.max'), '500');
    const mod = pathToFileURL(join(ROOT, 'dist', 'src', 'sandbox', 'runtime-pids.js')).href;
    // The shell moves itself into the cgroup, then becomes Node, which reads its bound.
    const r = spawnSync('sh', ['-c', `echo $$ > ${dir}/cgroup.procs && exec "$0" --input-type=module -e "const m = await import(process.argv[1]); console.log(m.runtimePidsMax())" "$1"`, process.execPath, mod], { encoding: 'utf8', timeout: HANG_GUARD_MS });
    assert.is(r.status, 0, r.stderr);
    assert.is(r.stdout.trim(), '123');
  } finally {
    rmdirSync(dir);
    rmdirSync(parent);
  }
});

test.run();
