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

vm('a 4 GiB bytearray fails closed with a finding (wasm memory is capped)', async () => {
  for (const file of ['bytearray_4g.pkl', 'bytearray_2g.pkl']) {
    const r = await vmScanPass(readFileSync(join(ESCAPES, file)), { policy, pool });
    assert.ok(r.error, file);
    assert.ok(r.findings.some((f) => f.rule === 'vm/limit' && f.verdict === 'suspicious'), `${file}: ${JSON.stringify(r.findings)}`);
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

vm.run();
