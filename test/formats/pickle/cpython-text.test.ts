// Text arguments (INT, LONG, FLOAT) read like CPython reads them. The VM (CPython 3.14) checks the
// static pass in test/formats/differential.test.ts; here the machine's own CPython (3.11, the
// base-0 reading PyTorch users still run) is asked about the same texts, so both readings are held.
import { threadCpuMs } from '../../../src/cpu-time.js';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { analyzePickle } from '../../../src/formats/pickle/analyze.js';
import { StreamReader } from '../../../src/formats/pickle/reader.js';
import { BufferSource } from '../../../src/formats/source.js';
import { createPolicy } from '../../../src/formats/pickle/policy.js';
import { parseCFloat, parseCInt, parseCLong } from '../../../src/formats/pickle/strings.js';
import { render } from '../../../src/formats/pickle/values.js';

const policy = createPolicy();
const run = (bytes: Buffer) => analyzePickle(new StreamReader(new BufferSource(bytes), 0), { policy, maxOpcodes: 1e6, maxArgBytes: 1 << 20, deadline: threadCpuMs() + 5000 });

const INT_TEXTS = ['0', '1', '00', '01', ' 1', '+1', '-0', '010', '0x10', '0X1f', '0o17', '0b101', '1_000', '1__0', '_1', '0x', '0x_1', '08', '1 ', '\t7', ' ', 'abc', '99999999999', '0777777777777777777777', '0x7fffffffffffffffff', '1\x00zz', '\x001', '0_0', '0_1', '1e3', '-', '1_', '0o', ' 0x1f '];
const FLOAT_TEXTS = ['1.0', '1e400', '1e-400', ' 1.0', 'inf', '-Infinity', 'nan', 'infx', '1e', '.5', '5.', '.', '0x1p3', '1_0.0', '1.0\x00x', '1.0 ', '+.5e-3', '1.0\r'];

/** What /usr/bin/python3's C unpickler makes of `op text \n .`: a repr, or null when it refuses. */
function native(op: string, texts: string[]): Array<string | null> {
  const py = `
import pickle, sys, json
out = []
for t in json.loads(sys.stdin.read()):
    try:
        out.append(repr(pickle.loads((${JSON.stringify(op)} + t + "\\n.").encode("latin-1"))))
    except Exception:
        out.append(None)
print(json.dumps(out))`;
  const r = spawnSync('/usr/bin/python3', ['-c', py], { input: JSON.stringify(texts), encoding: 'utf8' });
  assert.is(r.status, 0, r.stderr);
  return JSON.parse(r.stdout) as Array<string | null>;
}

test("INT: every text this machine's CPython loads is accepted, with its value when only the base-0 reading takes it", () => {
  const want = native('I', INT_TEXTS);
  INT_TEXTS.forEach((t, i) => {
    const got = parseCInt(Buffer.from(t, 'latin1'), 64);
    const w = want[i];
    if (w === null || w === undefined) return;
    assert.ok(got, `INT ${JSON.stringify(t)}: CPython loads ${w}, the static pass refuses it`);
    const shown = got.bool ? (got.value === 1n ? 'True' : 'False') : got.value.toString();
    if (got.onlyOld) assert.is(shown, w, `INT ${JSON.stringify(t)}`);
  });
});

test('LONG and FLOAT: every text this CPython loads is accepted; what no version loads is refused', () => {
  const longs = native('L', INT_TEXTS);
  INT_TEXTS.forEach((t, i) => {
    if (longs[i] !== null) assert.ok(parseCLong(Buffer.from(t, 'latin1')), `LONG ${JSON.stringify(t)}: CPython loads ${longs[i]}`);
  });
  const floats = native('F', FLOAT_TEXTS);
  FLOAT_TEXTS.forEach((t, i) => {
    const got = parseCFloat(Buffer.from(t, 'latin1'));
    assert.is(got !== null, floats[i] !== null, `FLOAT ${JSON.stringify(t)}: CPython says ${floats[i]}`);
  });
});

test('a base-prefixed INT before the payload does not stop the analysis (I0x10 bypass)', () => {
  const payload = Buffer.from("I0x10\n0cos\nsystem\n(S'echo modelguard-fixture'\ntR.", 'latin1');
  const a = run(payload);
  assert.not.ok(a.error, a.error?.message);
  assert.ok(a.imports.has('os.system'));
  // not-flagged twin: the same prefix before a harmless value
  const benign = run(Buffer.from('I0x10\n0I5\n.', 'latin1'));
  assert.is(benign.imports.size, 0);
  assert.is(benign.result && render(benign.result), '5');
});

test('INT 00/01 are bools and a two-character line that parses to 0 or 1 is one too, like load_int', () => {
  assert.is(render(run(Buffer.from('I01\n.', 'latin1')).result!), 'True');
  assert.is(render(run(Buffer.from('I 0\n.', 'latin1')).result!), 'False');
  assert.is(render(run(Buffer.from('I001\n.', 'latin1')).result!), '1');
});

test('GLOBAL refuses an empty or non-UTF-8 name, INST a non-ASCII one, before importing anything', () => {
  assert.ok(run(Buffer.from('c\nsystem\n.', 'latin1')).error);
  assert.ok(run(Buffer.from('cos\xff\nsystem\n.', 'latin1')).error);
  const inst = run(Buffer.from('(ios\xe9\nsystem\n.', 'latin1'));
  assert.ok(inst.error);
  assert.is(inst.imports.size, 0);
  // INST takes the mark before it reads the names: no mark, no import
  const nomark = run(Buffer.from('ios\nsystem\n.', 'latin1'));
  assert.match(nomark.error?.message ?? '', /MARK/);
  assert.is(nomark.imports.size, 0);
});

test('APPENDS, SETITEMS and ADDITEMS with nothing after the mark touch no target, as in CPython', () => {
  for (const s of ['K\x01(e.', 'K\x01(u.', 'K\x01(\x90.']) {
    const a = run(Buffer.from(`\x80\x04${s}`, 'latin1'));
    assert.not.ok(a.error, `${JSON.stringify(s)}: ${a.error?.message}`);
  }
  assert.ok(run(Buffer.from('\x80\x04K\x01(K\x02e.', 'latin1')).error);
});

test.run();
