import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { CLI, FIXTURES, ROOT, SCAN_FIXTURES } from '../helpers/fixtures.js';
import { HANG_GUARD_MS } from '../helpers/budget.js';

const TENSORS = join(FIXTURES, 'tensors');

function guard(...args: string[]) {
  return spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', cwd: ROOT, timeout: HANG_GUARD_MS });
}

test('guard load prints a table of tensors and the other values', () => {
  const r = guard('load', join(TENSORS, 'checkpoint.pt'));
  assert.is(r.status, 0, r.stderr);
  assert.match(r.stdout, /^name\s+dtype\s+shape\s+bytes/m);
  assert.match(r.stdout, /model\.0\.weight\s+float32\s+\[3, 4\]\s+48/);
  assert.match(r.stdout, /optimizer\.state\.0\.momentum_buffer\s+float32/);
  assert.match(r.stdout, /loss = 0\.25/);
  assert.match(r.stdout, /name = "run-7"/);
  assert.match(r.stdout, /15 tensors, 264 bytes \(pytorch-zip\)/);
  assert.match(r.stdout, /verdict: safe/);
});

test('guard load into a pipe whose reader is gone (| true) stops quietly', () => {
  // `true` exits at once, long before guard writes: every write meets EPIPE.
  const r = spawnSync('/bin/sh', ['-c', `"${process.execPath}" "${CLI}" load "${join(TENSORS, 'all_dtypes.pt')}" | true`], { encoding: 'utf8', cwd: ROOT, timeout: HANG_GUARD_MS });
  assert.is(r.status, 0);
  assert.not.match(r.stderr, /EPIPE|Unhandled|internal error/, r.stderr);
});

test('guard load reads xz, lzma and bz2 compressed joblib files', () => {
  for (const method of ['xz', 'lzma', 'bz2']) {
    const r = guard('load', join(SCAN_FIXTURES, 'real', `numpy_arrays_${method}.joblib`));
    assert.is(r.status, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`w\\s+float64\\s+\\[10\\]\\s+80`));
    assert.match(r.stdout, new RegExp(`\\(${method}\\+joblib\\)`));
  }
});

test('guard load --json gives tensors and values', () => {
  const r = guard('load', '--json', join(TENSORS, 'views.pt'));
  assert.is(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout) as { format: string; tensors: Array<{ name: string; dtype: string; shape: number[]; bytes: number }> };
  assert.is(out.format, 'pytorch-zip');
  assert.equal(out.tensors.find((t) => t.name === 'transposed'), { name: 'transposed', dtype: 'float32', shape: [6, 5, 4], bytes: 480 });
});

test('guard load refuses a malicious file with exit 1 and the findings', () => {
  const r = guard('load', join(SCAN_FIXTURES, 'attack/torch_reduce_payload.pt'));
  assert.is(r.status, 1);
  assert.match(r.stderr, /refused/);
  assert.match(r.stderr, /MALICIOUS/);
  assert.is(r.stdout, '');
});

test('guard load exits 2 on usage and I/O errors', () => {
  assert.is(guard('load').status, 2);
  assert.is(guard('load', join(TENSORS, 'missing.pt')).status, 2);
  const r = guard('load', '--alow', 'x', join(TENSORS, 'array.npy'));
  assert.is(r.status, 2);
  assert.match(r.stderr, /did you mean `--allow`/);
});

test.run();
