import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { analyzePickle } from '../../../src/formats/pickle/analyze.js';
import { StreamReader } from '../../../src/formats/pickle/reader.js';
import { BufferSource } from '../../../src/formats/source.js';
import { createPolicy } from '../../../src/formats/pickle/policy.js';
import { render } from '../../../src/formats/pickle/values.js';
import { cpuMsOf } from '../../helpers/budget.js';
import { threadCpuMs } from '../../../src/cpu-time.js';

const policy = createPolicy();
function run(bytes: Buffer) {
  return analyzePickle(new StreamReader(new BufferSource(bytes), 0), { policy, maxOpcodes: 1e6, maxArgBytes: 1 << 20, deadline: threadCpuMs() + 5000, joblib: true });
}
const sbu = (s: string) => Buffer.concat([Buffer.from([0x8c, Buffer.byteLength(s)]), Buffer.from(s)]);
const b = (...parts: Array<Buffer | string | number[]>) => Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p, 'latin1') : Array.isArray(p) ? Buffer.from(p) : p)));

test('MEMOIZE stores at len(memo), like CPython, not at a running counter', () => {
  // BINPUT 7 first: the memo has one entry, so MEMOIZE writes index 1.
  const a = run(b([0x80, 4], sbu('a'), 'q\x07', sbu('b'), [0x94], 'h\x01', '.'));
  assert.is(a.result && render(a.result), "'b'");
});

test('POP at a mark pops the mark (CPython and the pure-Python unpickler agree)', () => {
  const a = run(b([0x80, 2], 'K\x01', '(', '0', '.'));
  assert.not.ok(a.error);
  assert.is(a.result && render(a.result), '1');
});

test('STOP with an empty stack is an underflow, as in CPython', () => {
  const a = run(b([0x80, 2], '.'));
  assert.match(a.error?.message ?? '', /underflow/);
});

test('GET of an unset memo index fails like CPython', () => {
  const a = run(b([0x80, 2], 'h\x03', '.'));
  assert.match(a.error?.message ?? '', /Memo value not found at index 3/);
});

test('a STRING argument is unescaped before STACK_GLOBAL uses it', () => {
  const a = run(b([0x80, 4], "S'\\x6fs'\n", "S'sys\\164em'\n", [0x93], '.'));
  assert.ok(a.imports.has('os.system'));
});

test('PROTO above 5 is rejected', () => {
  assert.match(run(b([0x80, 6], 'N.')).error?.message ?? '', /unsupported pickle protocol: 6/);
});

test('an opcode straddling a FRAME end is a finding, and reading goes on linearly like the C unpickler', () => {
  const body = b(sbu('collections'), sbu('OrderedDict'), [0x93], ')R.');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(3n);
  const a = run(b([0x80, 4, 0x95], len, body));
  assert.ok(a.stopped);
  assert.ok(a.issues.some((i) => i.rule === 'pickle/frame-divergence'));
});

test('a call records its rendered arguments for the finding', () => {
  const a = run(b([0x80, 4], sbu('os'), sbu('system'), [0x93], sbu('id'), [0x85], 'R.'));
  assert.equal(a.imports.get('os.system')?.calls, ["os.system('id')"]);
});

test('containers are shared, not copied: a 2^40 memo bomb stays linear', () => {
  const parts: Array<Buffer | string | number[]> = [[0x80, 4], ']', [0x94]];
  for (let i = 0; i < 40; i++) parts.push(b('h', [i], 'h', [i], [0x86, 0x94]));
  parts.push('.');
  let a!: ReturnType<typeof run>;
  const ms = cpuMsOf(() => {
    a = run(b(...parts));
  });
  assert.ok(a.stopped);
  assert.ok(ms < 500, `took ${ms} ms of CPU`);
  assert.ok((a.result && render(a.result).length) ?? 0 < 2000);
});

test('INT "01" and "00" are the booleans of protocol 0', () => {
  assert.is(render(run(b('I01\n.')).result ?? { k: 'none' }), 'True');
  assert.is(render(run(b('I00\n.')).result ?? { k: 'none' }), 'False');
});

test('a source shorter than its declared size ends a text line with an error, never an endless loop (issue 13)', () => {
  const bytes = Buffer.from('(lp0\ncos\nsys', 'latin1');
  // A member that claims 100 kB and holds 13 bytes, like a deflated zip member with a lying header.
  const lying = { size: 100_000, read: (o: number, l: number) => bytes.subarray(Math.min(o, bytes.length), Math.min(bytes.length, o + l)), close() {} };
  const a = analyzePickle(new StreamReader(lying, 0), { policy, maxOpcodes: 1e6, maxArgBytes: 1 << 20, deadline: threadCpuMs() + 5000 });
  assert.is(a.error?.kind, 'truncated');
  // not-flagged twin: the honest source reads the same stream to the same place
  const honest = run(bytes);
  assert.is(honest.error?.kind, 'truncated');
  assert.is(honest.imports.size, 0);
});

test.run();
