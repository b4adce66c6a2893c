// The static pickle pass against CPython's own pickle machine (issue 12, point 1): generated and
// mutated streams go through analyzePickle and, in batches, through the VM — Pyodide's CPython
// running the C unpickler (what pickle.load and torch.load use) and the pure-Python unpickler with
// every opcode counted. Any disagreement in outcome, imports, where the stream stops, opcodes
// dispatched or the opcode it fails at is a failure, except where CPython itself reads a stream
// two ways (an opcode straddling a FRAME end) or the static pass cannot know a runtime value (a call
// result, a persistent object) and assumes the permissive case — both are counted and printed.
//
// CI runs 100,000 streams; `npm run differential -- --count 1000000` (or MODELGUARD_DIFF_COUNT)
// runs more, with `--seed N` to vary them.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { analyzePickle, type PickleTrace } from '../../src/formats/pickle/analyze.js';
import { StreamReader } from '../../src/formats/pickle/reader.js';
import { BufferSource } from '../../src/formats/source.js';
import { createPolicy } from '../../src/formats/pickle/policy.js';
import { closeDefaultPool, defaultPool, UnpicklerPool } from '../../src/unpickler/index.js';
import { threadCpuMs } from '../../src/cpu-time.js';

const DEFAULT_COUNT = 100_000;
/** Streams per VM round trip. */
const BATCH = 2_000;
/** Mismatches printed in full. */
const SHOWN = 25;

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}
const COUNT = Number(arg('count') ?? process.env.MODELGUARD_DIFF_COUNT ?? DEFAULT_COUNT);
const SEED = Number(arg('seed') ?? process.env.MODELGUARD_DIFF_SEED ?? 12);
/** VM workers running batches side by side (`--workers N`): two halve the wall time where two cores are free. */
const WORKERS = Math.max(1, Number(arg('workers') ?? process.env.MODELGUARD_DIFF_WORKERS ?? 2));
/** Streams between progress lines on long runs. */
const PROGRESS_EVERY = 100_000;

// ----- generator -------------------------------------------------------------------------------

/** mulberry32: small, seedable, good enough to spread streams. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const INT_TEXT = ['0', '1', '00', '01', ' 1', '+1', '-0', '+0', '010', '0x10', '0X1f', '0o17', '0b101', '1_000', '1__0', '_1', '0x', '0x_1', '0x__1', '08', '1 ', '\t7', ' ', '', 'abc', '1L', '99999999999', '2147483648', '-2147483649', '0777777777777777777777', '0x7fffffffffffffff', '1\x00zz', '\x001', '\x00', '0_0', '0_1', '1e3', '٣', '12\r', '0b', '-', '+', '1_', '9'.repeat(4300), '9'.repeat(4301), '0o', '00000000000000000000001', ' 0x1f ', '1\x0b'];
const FLOAT_TEXT = ['1.0', '1e400', '-1e400', '1e-400', ' 1.0', 'inf', '-Infinity', 'INF', 'nan', '-NaN', 'infx', 'infinit', '1e', '1e+', '.5', '5.', '.', '0x1p3', '1_0.0', '1.0\x00x', '1.0 ', '', '+.5e-3', '00.5', '1.0\r', 'nan(1)', '--1', '1.5L'];
const IDX_TEXT = ['0', '1', ' 2', '+3', '-1', '007', '1_0', 'x', '', '99999999999', '2147483648', '0x1', '3 ', '1__0', '\x002'];
const STRING_TEXT = ["'abc'", '"x"', "'a\\x4'", "'\\x41'", "'abc'\r", 'abc', "'", "'\\'", "'\\777'", "'\\q'", "''", '"\'', "'os'", "'system'", "'\\n\\t'", "'\\\n'"];
const UNICODE_TEXT = ['abc', '\\u0041', '\\u00', '\\U00110000', '\\U0001F600', '\\\\u0041', '\\\\\\u0041', '\xe9', '\\x41', '\\', 'os', 'system'];
const NAMES = ['os', 'system', 'builtins', 'eval', 'collections', 'OrderedDict', 'torch._utils', '_rebuild_tensor_v2', '', 'mod\xe9', '\xff', 'a\r', 'x.y', '__builtin__', 'copy_reg', '_reconstructor'];
const UTF8_BYTES = [Buffer.from('abc'), Buffer.from('os'), Buffer.from('system'), Buffer.from('é€😀'), Buffer.from([0xff]), Buffer.from([0xed, 0xa0, 0x80]), Buffer.from([0xc0, 0x80]), Buffer.from([0xe2, 0x82]), Buffer.from([0xf4, 0x90, 0x80, 0x80]), Buffer.alloc(0)];
/** Every opcode byte, and a few that are not opcodes. */
const OPBYTES = [...'(.0125FIJKLMNPQRSTUVXabcdeghijlopqrstu}])G'].map((c) => c.charCodeAt(0)).concat([0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8a, 0x8b, 0x42, 0x43, 0x8c, 0x8d, 0x8e, 0x8f, 0x90, 0x91, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x00, 0x41, 0x7b, 0xff]);

function le(n: number, width: number): Buffer {
  const b = Buffer.alloc(width);
  if (width === 8) b.writeBigUInt64LE(BigInt(n));
  else b.writeUIntLE(n >>> 0, 0, Math.min(width, 6));
  return b;
}

/** Generator cases that push exactly one value. */
const VALUE_FRAGMENTS = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 20, 22, 29, 30, 31, 34, 35, 36, 37, 38, 33];

function generate(rand: () => number): Buffer {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)] as T;
  const int = (n: number) => Math.floor(rand() * n);
  const parts: Buffer[] = [];
  const L = (s: string) => Buffer.from(s, 'latin1');
  const counted = (op: number, width: number, body: Buffer) => Buffer.concat([Buffer.from([op]), le(body.length, width), body]);
  const r0 = rand();
  if (r0 < 0.6) parts.push(Buffer.from([0x80, rand() < 0.95 ? int(6) : 6 + int(250)]));
  // A third of the streams are built to load: scalars and globals inside MARK … TUPLE, then STOP.
  const wellFormed = rand() < 0.35;
  if (wellFormed) parts.push(L('('));
  const n = 1 + int(14);
  for (let i = 0; i < n; i++) {
    const k = wellFormed ? pick(VALUE_FRAGMENTS) : int(40);
    switch (k) {
      case 0: parts.push(L('N')); break;
      case 1: parts.push(L(`I${pick(INT_TEXT)}\n`)); break;
      case 2: parts.push(L(`L${pick(INT_TEXT)}${rand() < 0.5 ? 'L' : ''}\n`)); break;
      case 3: parts.push(L(`F${pick(FLOAT_TEXT)}\n`)); break;
      case 4: parts.push(Buffer.concat([L('K'), Buffer.from([int(256)])])); break;
      case 5: parts.push(Buffer.concat([L('J'), le(int(2 ** 32), 4)])); break;
      case 6: parts.push(L(`S${pick(STRING_TEXT)}\n`)); break;
      case 7: parts.push(L(`V${pick(UNICODE_TEXT)}\n`)); break;
      case 8: parts.push(counted(0x8c, 1, pick(UTF8_BYTES))); break;
      case 9: parts.push(counted(0x58, 4, pick(UTF8_BYTES))); break;
      case 10: parts.push(counted(0x43, 1, pick(UTF8_BYTES))); break;
      case 11: parts.push(counted(0x96, 8, pick(UTF8_BYTES))); break;
      case 12: parts.push(L(pick(['(', ']', '}', ')', '\x8f', '(', '(']))); break;
      case 13: parts.push(L(pick(['l', 't', 'd', '\x91', '\x85', '\x86', '\x87']))); break;
      case 14: parts.push(L(pick(['a', 'e', 's', 'u', '\x90']))); break;
      case 15: parts.push(L(`p${pick(IDX_TEXT)}\n`)); break;
      case 16: parts.push(L(`g${pick(IDX_TEXT)}\n`)); break;
      case 17: parts.push(Buffer.from([pick([0x71, 0x68]), int(4)])); break;
      case 18: parts.push(Buffer.concat([Buffer.from([pick([0x72, 0x6a])]), le(rand() < 0.9 ? int(4) : int(2 ** 32), 4)])); break;
      case 19: parts.push(L('\x94')); break;
      case 20: parts.push(L(`c${pick(NAMES)}\n${pick(NAMES)}\n`)); break;
      case 21: parts.push(L(`i${pick(NAMES)}\n${pick(NAMES)}\n`)); break;
      case 22: parts.push(Buffer.concat([counted(0x8c, 1, pick(UTF8_BYTES.slice(0, 3))), counted(0x8c, 1, pick(UTF8_BYTES.slice(0, 3))), L('\x93')])); break;
      case 23: parts.push(L(pick(['R', '\x81', '\x92', 'o', 'b', 'Q']))); break;
      case 24: parts.push(L(`P${pick(['1', 'x', '', '\xe9', 'storage'])}\n`)); break;
      case 25: parts.push(L(pick(['0', '1', '2']))); break;
      case 26: parts.push(Buffer.from([0x82, int(3)])); break;
      case 27: parts.push(L(pick(['\x97', '\x98']))); break;
      case 28: parts.push(Buffer.concat([L('\x95'), le(int(40), 8)])); break;
      case 29: parts.push(L(pick(['\x88', '\x89']))); break;
      case 30: parts.push(Buffer.concat([L('G'), Buffer.from([int(256), int(256), 0, 0, 0, 0, 0, 0])])); break;
      case 31: parts.push(counted(0x8a, 1, Buffer.from([int(256), int(256)]).subarray(0, int(3)))); break;
      case 32: parts.push(L(`(${pick(['N', 'K\x01', ']', '}', ')', 'I5\n', 'X\x00\x00\x00\x00'])}${pick(['t', 'l', 'd', '\x91', 'o', 'e', 'u', '\x90', '1'])}`)); break;
      case 33: parts.push(L(pick([']K\x01a', '}K\x01K\x02s', '\x8f(K\x01\x90', ']K\x00K\x05s', 'K\x01(\x8f\x90', ')N\x86b', '}N\x86b', 'Nb', 'K\x01}b', ']}b', ']))\x86b', 'K\x01K\x02\x86\x98']))); break;
      case 34: parts.push(counted(0x42, 4, pick(UTF8_BYTES))); break;
      case 35: parts.push(counted(0x54, 4, pick(UTF8_BYTES))); break;
      case 36: parts.push(Buffer.from([0x8b, ...le(int(3), 4), int(256), int(256)])); break;
      case 37: parts.push(L('c__builtin__\nset\n')); break;
      case 38: parts.push(Buffer.concat([L('\x8e'), le(int(4), 8), L('abcd')])); break;
      default: parts.push(Buffer.from([pick(OPBYTES)]));
    }
  }
  if (wellFormed) parts.push(L(rand() < 0.8 ? 't' : 'l'), L(pick(['', '\x94', 'q\x00', '2', 'p1\n0g1\n'])));
  if (rand() < 0.9) parts.push(L('.'));
  let buf = Buffer.concat(parts);
  if (r0 >= 0.6 && r0 < 0.7) {
    // A frame over part of the stream, possibly with no PROTO before it.
    const len = int(buf.length + 4);
    buf = Buffer.concat([Buffer.from([0x95]), le(len, 8), buf]);
  }
  return rand() < 0.5 ? mutate(buf, rand) : buf;
}

function mutate(buf: Buffer, rand: () => number): Buffer {
  let b = Buffer.from(buf);
  const times = 1 + Math.floor(rand() * 3);
  for (let t = 0; t < times && b.length > 0; t++) {
    const at = Math.floor(rand() * b.length);
    const k = Math.floor(rand() * 6);
    if (k === 0) b[at] = Math.floor(rand() * 256);
    else if (k === 1) b[at] = OPBYTES[Math.floor(rand() * OPBYTES.length)] as number;
    else if (k === 2) b = Buffer.concat([b.subarray(0, at), b.subarray(Math.min(b.length, at + 1 + Math.floor(rand() * 4)))]);
    else if (k === 3) b = Buffer.concat([b.subarray(0, at), Buffer.from([OPBYTES[Math.floor(rand() * OPBYTES.length)] as number]), b.subarray(at)]);
    else if (k === 4) b = b.subarray(0, at);
    else b = Buffer.concat([b.subarray(0, at), b.subarray(Math.floor(rand() * b.length))]);
  }
  return b;
}

// ----- comparison ------------------------------------------------------------------------------

/**
 * From _mg_diff_batch: the C unpickler's [loaded, end (or where its reads stopped when it failed),
 * imports, error], then the pure-Python one's [loaded, end, imports, opcodes dispatched, offset of
 * the opcode it failed at, error].
 */
type Row = [boolean, number, Array<[string, string]>, string | null, boolean, number, Array<[string, string]>, number, number, string | null];

/** CPython's words for running out of bytes (bad_readline says it for an empty line too). */
const TRUNCATED = /pickle data was truncated|Ran out of input|^EOFError|exceeds system's maximum/;

interface Tally {
  streams: number;
  agreed: number;
  /** CPython's C and Python unpicklers disagree with each other; the static pass matched C. */
  cpyDiverged: number;
  frame: number;
  opaque: number;
  version: number;
  memory: number;
  mismatches: string[];
  mismatchCount: number;
  loaded: number;
}

const policy = createPolicy();

function compare(buf: Buffer, row: Row, t: Tally): void {
  const trace: PickleTrace = { imports: [], dispatched: 0, failOp: -1, opaque: [], opaqueEnds: [], versioned: [] };
  const a = analyzePickle(new StreamReader(new BufferSource(buf), 0), { policy, maxOpcodes: 1_000_000, maxArgBytes: 1 << 20, deadline: threadCpuMs() + 60_000, cLongBits: 32, trace });
  const [cOk, cEnd, cImports, cErr, pyOk, pyEnd, pyImports, pyOps, pyFail, pyErr] = row;
  const sOk = a.stopped && !a.error;
  t.streams++;
  if (cOk) t.loaded++;
  const imp = (xs: Array<[string, string]>) => JSON.stringify(xs);
  const problems: string[] = [];
  if (sOk !== cOk) problems.push(`static ${sOk ? 'loads' : `rejects (${a.error?.message})`} but CPython ${cOk ? 'loads' : `rejects (${cErr})`}`);
  if (sOk && cOk && a.end !== cEnd) problems.push(`static stops at ${a.end}, CPython at ${cEnd}`);
  if (imp(trace.imports) !== imp(cImports)) problems.push(`imports: static ${imp(trace.imports)}, CPython ${imp(cImports)}`);
  // Where the C unpickler's reads stopped is exact outside frames; running out of bytes is the
  // same failure wherever the last read began.
  const truncated = !cOk && TRUNCATED.test(cErr ?? '');
  if (!cOk && !sOk && !trace.framed) {
    if (truncated !== (a.error?.kind === 'truncated')) problems.push(`failure: static ${a.error?.kind} (${a.error?.message}), CPython ${cErr}`);
    else if (!truncated && a.end !== cEnd) problems.push(`fails after byte ${a.end} in the static pass, after byte ${cEnd} in CPython (${cErr})`);
  }
  // The pure-Python unpickler counts opcodes; it stands in for C only where both end the same way.
  // Failing, both must have stopped reading at the same byte, both or neither by running out of
  // bytes: outside frames that pins the failing opcode (each opcode reads at least one byte). Inside
  // one C has read the whole frame, so a failure is not pinned to an opcode.
  const failedAlike = !trace.framed && TRUNCATED.test(pyErr ?? '') === TRUNCATED.test(cErr ?? '');
  const pyAgrees = pyOk === cOk && pyEnd === cEnd && (cOk || failedAlike) && imp(pyImports) === imp(cImports);
  if (pyAgrees) {
    if (trace.dispatched !== pyOps) problems.push(`opcodes: static dispatched ${trace.dispatched}, CPython ${pyOps}`);
    if (!cOk && !truncated && trace.failOp !== pyFail) problems.push(`fails at: static opcode @${trace.failOp}, CPython @${pyFail}`);
  }
  if (problems.length === 0) {
    if (pyAgrees) t.agreed++;
    else t.cpyDiverged++;
    return;
  }
  // CPython itself reads an opcode straddling a FRAME end two ways (pickle.loads linearly, a file
  // from after the frame); the static pass flags the stream instead of picking one.
  if (a.issues.some((i) => i.rule === 'pickle/frame-divergence')) {
    t.frame++;
    return;
  }
  // The static pass failed or went on where a runtime value it cannot know decided: fine only when
  // it did not reject a stream CPython loads, and CPython failed at exactly such an opcode.
  const bypass = !sOk && cOk;
  // Memory the C unpickler could not get (a memo index of a billion) depends on the machine.
  if (!bypass && /^MemoryError/.test(cErr ?? '')) {
    t.memory++;
    return;
  }
  const failedAt = (offsets: number[], ends: number[]) => (pyAgrees && offsets.includes(pyFail)) || (!trace.framed && ends.includes(cEnd));
  const importsPrefix = imp(trace.imports).startsWith(imp(cImports).slice(0, -1));
  if (!bypass && !cOk && importsPrefix) {
    // Outside frames the opcode CPython failed at is known; inside one, any such opcode will do.
    const pinned = !trace.framed;
    // CPython failed at an opcode whose outcome the static pass could not know…
    if (pinned ? failedAt(trace.opaque, trace.opaqueEnds) : trace.opaque.length > 0) {
      t.opaque++;
      return;
    }
    // …or at one that an older CPython (3.11 here, base-0 INT/LONG) runs and this one does not.
    const versioned = trace.versioned.length > 0;
    if (pinned ? failedAt(trace.versioned.filter((_, i) => i % 2 === 0), trace.versioned.filter((_, i) => i % 2 === 1)) : versioned) {
      t.version++;
      return;
    }
  }
  t.mismatchCount++;
  if (t.mismatches.length < SHOWN) t.mismatches.push(`${buf.toString('hex')}  ${JSON.stringify(buf.toString('latin1'))}\n    ${problems.join('\n    ')}`);
}

const diff = suite('the static pass and CPython');

diff.after(async () => {
  await closeDefaultPool();
});

diff(`agree on ${COUNT} generated and mutated streams (seed ${SEED})`, async () => {
  const rand = rng(SEED);
  const t: Tally = { streams: 0, agreed: 0, cpyDiverged: 0, frame: 0, opaque: 0, version: 0, memory: 0, mismatches: [], mismatchCount: 0, loaded: 0 };
  const own = WORKERS > 1 ? new UnpicklerPool({ size: WORKERS }) : null;
  const pool = own ?? defaultPool();
  const inflight: Array<Promise<void>> = [];
  let nextProgress = PROGRESS_EVERY;
  try {
    for (let done = 0; done < COUNT; ) {
      const n = Math.min(BATCH, COUNT - done);
      const bufs: Buffer[] = [];
      for (let i = 0; i < n; i++) bufs.push(generate(rand));
      const packed = Buffer.concat(bufs.flatMap((b) => [le(b.length, 4), b]));
      inflight.push(
        pool.run({ pickle: packed, config: { diffBatch: true }, timeoutMs: 300_000 }).then((reply) => {
          const rows = (JSON.parse(reply.json ?? '{}') as { diff?: Row[] }).diff;
          assert.ok(rows && rows.length === n, `the VM answered ${rows?.length} rows for ${n} streams`);
          bufs.forEach((b, i) => compare(b, rows[i] as Row, t));
        }),
      );
      if (inflight.length >= WORKERS) await inflight.shift();
      done += n;
      if (COUNT > PROGRESS_EVERY && t.streams >= nextProgress) {
        console.log(`differential progress: ${t.streams} streams compared, ${t.mismatchCount} disagree`);
        nextProgress += PROGRESS_EVERY;
      }
    }
    await Promise.all(inflight);
  } finally {
    if (own) await own.close();
  }
  console.log(
    `differential: ${t.streams} streams (${t.loaded} load in CPython): ${t.agreed} agree on outcome, end, imports, opcodes and failing opcode; ` +
      `${t.cpyDiverged} agree with the C unpickler where the pure-Python one differs; ${t.frame} straddle a FRAME (flagged); ` +
      `${t.opaque} depend on an opaque runtime value; ${t.version} are read only by CPython ≤ 3.13 (accepted); ${t.memory} ran CPython out of memory; ${t.mismatchCount} disagree`,
  );
  if (t.mismatches.length) console.log(t.mismatches.join('\n'));
  assert.is(t.mismatchCount, 0, `${t.mismatchCount} streams where the static pass and CPython disagree`);
  assert.ok(t.agreed > t.streams / 2, 'most streams are compared opcode for opcode');
});

diff.run();
