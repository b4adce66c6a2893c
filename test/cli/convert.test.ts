import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLI, FIXTURES, ROOT, SCAN_FIXTURES } from '../helpers/fixtures.js';
import { HANG_GUARD_MS } from '../helpers/budget.js';

const TENSORS = join(FIXTURES, 'tensors');
/** Debian's interpreter has python3-torch and python3-numpy. */
const PYTHON = '/usr/bin/python3';

function guard(...args: string[]) {
  return spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', cwd: ROOT, timeout: HANG_GUARD_MS });
}

/** Reads OUT per the safetensors spec with NumPy and compares every tensor with torch.load(IN). */
const READBACK = `
import json, struct, sys
import numpy as np, torch
src, out = sys.argv[1], sys.argv[2]
raw = open(out, 'rb').read()
n = struct.unpack('<Q', raw[:8])[0]
header = json.loads(raw[8:8 + n])
meta = header.pop('__metadata__')
data = raw[8 + n:]
names = list(header)
assert names == sorted(names), 'tensors sorted by name'
end = 0
NP = {'F32': '<f4', 'F64': '<f8', 'F16': '<f2', 'BF16': '<u2', 'I8': 'i1', 'U8': 'u1', 'I16': '<i2', 'I32': '<i4', 'I64': '<i8', 'BOOL': '?', 'C64': '<c8'}
got = {}
for k in names:
    h = header[k]
    b, e = h['data_offsets']
    assert b == end, 'contiguous, in order'
    end = e
    got[k] = np.frombuffer(data[b:e], dtype=NP[h['dtype']]).reshape(h['shape'])
assert end == len(data), 'no trailing bytes'
assert len(n.to_bytes(8, 'little')) == 8 and n % 8 == 0
def flat(o, p, acc):
    if isinstance(o, torch.Tensor):
        acc.setdefault(p, o)
    elif isinstance(o, dict):
        for k, v in o.items(): flat(v, f'{p}.{k}' if p else str(k), acc)
    elif isinstance(o, (list, tuple)):
        for i, v in enumerate(o): flat(v, f'{p}.{i}' if p else str(i), acc)
ref = {}
flat(torch.load(src), '', ref)
assert sorted(ref) == sorted(got), (sorted(ref), sorted(got))
for k, t in ref.items():
    t = t.detach().contiguous()
    want = t.view(torch.int16).numpy().view('<u2') if t.dtype == torch.bfloat16 else t.numpy()
    assert want.shape == got[k].shape, k
    assert want.tobytes() == got[k].tobytes(), k
print(json.dumps(meta))
`;

function tmp(): string {
  return mkdtempSync(join(tmpdir(), 'mg-convert-'));
}

for (const file of ['checkpoint.pt', 'views.pt', 'checkpoint_legacy.pt', 'bare_tensor.pt']) {
  test(`guard convert ${file}: NumPy reads back exactly what torch.load gives`, () => {
    const dir = tmp();
    try {
      const out = join(dir, 'out.safetensors');
      const r = guard('convert', join(TENSORS, file), out);
      assert.is(r.status, 0, r.stderr);
      assert.match(r.stdout, /wrote .* tensors/);
      const py = spawnSync(PYTHON, ['-c', READBACK, join(TENSORS, file), out], { encoding: 'utf8', timeout: HANG_GUARD_MS });
      assert.is(py.status, 0, py.stderr);
      const meta = JSON.parse(py.stdout) as Record<string, string>;
      assert.is(meta.source_sha256, createHash('sha256').update(readFileSync(join(TENSORS, file))).digest('hex'));
      assert.match(meta.source_format ?? '', /^pytorch-/);
      assert.equal(readdirSync(dir), ['out.safetensors'], 'no temp files left');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

test('guard convert refuses an unsafe input with exit 1 and writes nothing', () => {
  const dir = tmp();
  try {
    const out = join(dir, 'out.safetensors');
    const r = guard('convert', join(SCAN_FIXTURES, 'attack/torch_legacy_payload.pt'), out);
    assert.is(r.status, 1);
    assert.match(r.stderr, /refused/);
    assert.not.ok(existsSync(out));
    assert.equal(readdirSync(dir), []);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('guard convert refuses dtypes safetensors cannot hold, leaving no file', () => {
  const dir = tmp();
  try {
    const out = join(dir, 'out.safetensors');
    const r = guard('convert', join(TENSORS, 'all_dtypes.pt'), out);
    assert.is(r.status, 2);
    assert.match(r.stderr, /complex128/);
    assert.equal(readdirSync(dir), []);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
