import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { probeWritable, usableCacheDir } from '../src/cache.js';
import { ROOT } from './helpers/fixtures.js';
import { HANG_GUARD_MS } from './helpers/budget.js';

/** What `fn` wrote to stderr. */
function stderrOf(fn: () => void): string {
  const original = process.stderr.write.bind(process.stderr);
  let out = '';
  process.stderr.write = ((chunk: string | Uint8Array) => {
    out += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString();
    return true;
  }) as typeof process.stderr.write;
  try {
    fn();
  } finally {
    process.stderr.write = original;
  }
  return out;
}

test('a writable cache folder is used as is (created when missing), silently', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mg-cache-'));
  try {
    const want = join(dir, 'a', 'b');
    let got = '';
    assert.is(stderrOf(() => (got = usableCacheDir(want))), '');
    assert.is(got, want);
    assert.ok(statSync(want).isDirectory());
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('an unusable cache folder falls back to a private temporary one, said once', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mg-cache-'));
  try {
    writeFileSync(join(dir, 'file'), '');
    const bad = join(dir, 'file', 'modelguard');
    assert.match(probeWritable(bad) ?? '', /ENOTDIR/);
    let first = '';
    let second = '';
    const said = stderrOf(() => {
      first = usableCacheDir(bad);
      second = usableCacheDir(bad);
    });
    assert.is(first, second);
    assert.ok(first.startsWith(join(tmpdir(), 'modelguard-cache-')), first);
    assert.is(statSync(first).mode & 0o777, 0o700, 'private to this user');
    assert.is(probeWritable(first), undefined);
    assert.is(said.match(/is not usable/g)?.length, 1, said);
    assert.match(said, /\(ENOTDIR on mkdir\); using a private temporary one/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the private temporary cache folder is removed when the process exits', () => {
  const entry = join(ROOT, 'dist', 'src', 'cache.js');
  const script = `import { usableCacheDir } from ${JSON.stringify(entry)}; console.log(usableCacheDir('/proc/modelguard-cannot-be-here'));`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: HANG_GUARD_MS });
  assert.is(r.status, 0, r.stderr);
  const used = r.stdout.trim();
  assert.match(used, /modelguard-cache-/);
  assert.not.ok(existsSync(used), `${used} left behind`);
  assert.match(r.stderr, /is not usable/);
});

test.run();
