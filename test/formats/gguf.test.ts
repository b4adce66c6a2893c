import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { FileSource, BufferSource } from '../../src/formats/source.js';
import { parseGguf, validateGguf, GgufFormatError } from '../../src/formats/gguf.js';
import { fixture, manifestTests } from './manifest-cases.js';
import { threadCpuMs } from '../../src/cpu-time.js';

manifestTests('gguf/', 'gguf');

test('parseGguf() returns ggml type, shape and absolute byte range of each tensor', () => {
  const src = new FileSource(fixture('gguf/valid-v3.gguf'));
  try {
    const info = parseGguf(src);
    assert.is(info.version, 3);
    assert.is(info.alignment, 32);
    assert.is(info.dataStart % 32, 0);
    assert.equal(info.tensors, [
      { name: 'tok_embd.weight', dtype: 'F32', typeId: 0, shape: [8], begin: info.dataStart, end: info.dataStart + 32 },
      { name: 'output.weight', dtype: 'Q8_0', typeId: 8, shape: [32], begin: info.dataStart + 32, end: info.dataStart + 66 },
    ]);
    assert.is(info.metadata.get('general.architecture'), 'llama');
    const tokens = info.metadata.get('tokenizer.ggml.tokens');
    assert.equal(tokens, { type: 'ARRAY', elementType: 'STRING', length: 4, head: ['<s>', '</s>', 'a', 'b'] });
    const t0 = src.read(info.tensors[0]?.begin ?? 0, 32);
    assert.is(t0.readFloatLE(4), 1);
  } finally {
    src.close();
  }
});

test('parseGguf() throws a typed error naming the rule', () => {
  const src = new FileSource(fixture('gguf/bad-alignment.gguf'));
  try {
    assert.throws(() => parseGguf(src), (e: unknown) => e instanceof GgufFormatError && e.problems.some((p) => p.rule === 'gguf/bad-alignment'));
  } finally {
    src.close();
  }
});

test('a bare header with no metadata and no tensors is valid', () => {
  const b = Buffer.alloc(24);
  b.write('GGUF', 0, 'latin1');
  b.writeUInt32LE(3, 4);
  const r = validateGguf(new BufferSource(b));
  assert.is(r.problems.length, 0);
  assert.is(r.info?.tensors.length, 0);
});

test('every truncation of a valid file is invalid, never a throw', () => {
  const src = new FileSource(fixture('gguf/valid-v3.gguf'));
  const all = src.read(0, src.size);
  src.close();
  for (let n = 0; n < all.length - 66; n += 7) {
    const r = validateGguf(new BufferSource(all.subarray(0, n)));
    assert.ok(r.problems.length > 0, `prefix of ${n} bytes`);
  }
});

test('a header walk that runs past its time budget is invalid with gguf/time-limit', () => {
  const n = 1_000_000;
  const key = Buffer.from('tokenizer.ggml.tokens');
  const parts = [Buffer.from('GGUF'), u32(3), u64(0n), u64(1n), u64(BigInt(key.length)), key, u32(9), u32(8), u64(BigInt(n))];
  const el = Buffer.concat([u64(1n), Buffer.from('a')]);
  const body = Buffer.alloc(el.length * n);
  for (let k = 0; k < n; k++) el.copy(body, k * el.length);
  const r = validateGguf(new BufferSource(Buffer.concat([...parts, body])), threadCpuMs() - 1);
  assert.equal(r.problems.map((p) => p.rule), ['gguf/time-limit']);
});

function u32(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v);
  return b;
}
function u64(v: bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(v);
  return b;
}

test.run();
