import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { FileSource, BufferSource } from '../../src/formats/source.js';
import { parseSafetensors, validateSafetensors, SafetensorsFormatError, SAFETENSORS_MAX_TENSORS } from '../../src/formats/safetensors.js';
import { fixture, manifestTests } from './manifest-cases.js';
import { cpuMsOf } from '../helpers/budget.js';

manifestTests('safetensors/', 'safetensors');

test('parseSafetensors() returns dtype, shape and byte range of each tensor', () => {
  const src = new FileSource(fixture('safetensors/valid.safetensors'));
  try {
    const info = parseSafetensors(src);
    const byName = Object.fromEntries(info.tensors.map((t) => [t.name, t]));
    assert.equal(byName.weight, { name: 'weight', dtype: 'F32', shape: [2, 2], begin: 0, end: 16 });
    assert.equal(byName.ids, { name: 'ids', dtype: 'I64', shape: [3], begin: 16, end: 40 });
    assert.is(info.metadata.format, 'pt');
    assert.is(info.dataStart, 8 + info.headerLength);
    assert.is(info.dataStart + 40, src.size);
    // The descriptors are enough to read the bytes without re-parsing.
    const w = src.read(info.dataStart + (byName.weight?.begin ?? 0), 16);
    assert.equal([...new Float32Array(w.buffer.slice(w.byteOffset, w.byteOffset + 16))], [1, 2, 3, 4]);
  } finally {
    src.close();
  }
});

test('parseSafetensors() throws a typed error naming the rule for a malformed file', () => {
  const src = new FileSource(fixture('safetensors/offsets-gap.safetensors'));
  try {
    assert.throws(() => parseSafetensors(src), (e: unknown) => e instanceof SafetensorsFormatError && e.problems.some((p) => p.rule === 'safetensors/offsets-gap'));
  } finally {
    src.close();
  }
});

test('a header length of 2^64-1 is rejected without allocating', () => {
  const b = Buffer.alloc(16, 0xff);
  b[8] = 0x7b;
  const r = validateSafetensors(new BufferSource(b));
  assert.equal(r.problems.map((p) => p.rule), ['safetensors/header-too-large']);
});

test('an empty header {} with no data is valid', () => {
  const b = Buffer.concat([Buffer.from([2, 0, 0, 0, 0, 0, 0, 0]), Buffer.from('{}')]);
  const r = validateSafetensors(new BufferSource(b));
  assert.is(r.problems.length, 0);
  assert.is(r.info?.tensors.length, 0);
});

test('a header with 100 000 tensors is judged within 2 s, and one entry over the cap is invalid', () => {
  const make = (n: number) => {
    const parts: string[] = [];
    for (let k = 0; k < n; k++) parts.push(`"layer.${k}.weight":{"dtype":"F32","shape":[1],"data_offsets":[${4 * k},${4 * k + 4}]}`);
    const header = Buffer.from(`{${parts.join(',')}}`);
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(header.length));
    return Buffer.concat([len, header, Buffer.alloc(4 * n)]);
  };
  const bytes = make(100_000);
  let ok!: ReturnType<typeof validateSafetensors>;
  const ms = cpuMsOf(() => {
    ok = validateSafetensors(new BufferSource(bytes));
  });
  assert.is(ok.problems.length, 0);
  assert.is(ok.info?.tensors.length, 100_000);
  assert.ok(ms < 2000, `took ${ms} ms of CPU`);
  const over = validateSafetensors(new BufferSource(make(SAFETENSORS_MAX_TENSORS + 1)));
  assert.equal(over.problems.map((p) => p.rule), ['safetensors/too-many-tensors']);
});

test.run();
