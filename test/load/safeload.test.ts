import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GuardError } from '../../src/errors.js';
import type { Report } from '../../src/report/model.js';
import { safeLoad, type Tensor } from '../../src/index.js';
import { closeDefaultPool } from '../../src/unpickler/index.js';
import { isTensor } from '../../src/load/graph.js';
import { FIXTURES, SCAN_FIXTURES } from '../helpers/fixtures.js';

const TENSORS = join(FIXTURES, 'tensors');
interface Expected {
  format: string;
  tensors: Record<string, { dtype: string; shape: number[]; sha256: string }>;
}
const EXPECTED = JSON.parse(readFileSync(join(TENSORS, 'expected.json'), 'utf8')) as Record<string, Expected> & { _escapes: Record<string, string> };

function sha(t: Tensor): string {
  return createHash('sha256').update(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength)).digest('hex');
}

const bitExact = suite('safeLoad() is bit-exact against PyTorch and NumPy');
bitExact.after(() => closeDefaultPool());

for (const [file, exp] of Object.entries(EXPECTED)) {
  if (file.startsWith('_')) continue;
  bitExact(`${file}: every tensor matches what ${exp.format.startsWith('pytorch') ? 'torch.load' : 'the reference reader'} gives`, async () => {
    const r = await safeLoad(join(TENSORS, file));
    assert.is(r.format, exp.format);
    assert.equal([...r.tensors.keys()].sort(), Object.keys(exp.tensors).sort());
    for (const [name, e] of Object.entries(exp.tensors)) {
      const t = r.tensors.get(name) as Tensor;
      assert.is(t.dtype, e.dtype, `${name} dtype`);
      assert.equal(t.shape, e.shape, `${name} shape`);
      assert.is(sha(t), e.sha256, `${name} bytes`);
    }
  });
}
bitExact.run();

const graph = suite('safeLoad() object graph');
graph.after(() => closeDefaultPool());

graph('a compressed joblib file is inflated into a private temporary file that is gone afterwards', async () => {
  const before = readdirSync(tmpdir()).filter((n) => n.startsWith('modelguard-load-'));
  const r = await safeLoad(join(TENSORS, 'arrays_gzip.joblib'));
  assert.is(r.format, 'gzip+joblib');
  assert.is(r.tensors.get('nested.ids')?.shape[0], 5);
  assert.equal(readdirSync(tmpdir()).filter((n) => n.startsWith('modelguard-load-')), before);
  // Bytes in memory take the same path.
  const m = await safeLoad(readFileSync(join(TENSORS, 'arrays_zlib.joblib')), { name: 'arrays_zlib.joblib' });
  assert.is(m.format, 'zlib+joblib');
  assert.equal([...m.tensors.keys()].sort(), ['f', 'nested.ids', 'w']);
});

graph('a nested training checkpoint keeps its Python values', async () => {
  const r = await safeLoad(join(TENSORS, 'checkpoint.pt'));
  const o = r.object as Record<string, unknown>;
  assert.is(Object.getPrototypeOf(o), null);
  assert.is(o.epoch, 3);
  assert.is(o.loss, 0.25, 'BINFLOAT that torch 1.13 weights_only cannot load');
  assert.is(o.name, 'run-7');
  assert.is(o.none, null);
  assert.equal(o.flags, [true, false]);
  assert.equal(o.tuple, [1, 'a', 2.5]);
  assert.equal(o.history, [0.1, 0.05, 0.025]);
  assert.is(o.big, 2n ** 70n);
  const state = (o.optimizer as Record<string, unknown>).state as Map<number, Record<string, unknown>>;
  assert.instance(state, Map, 'int-keyed dicts are Maps');
  const buf = state.get(0)?.momentum_buffer;
  assert.ok(isTensor(buf));
  assert.is(r.tensors.get('optimizer.state.0.momentum_buffer'), buf, 'tensors sit in place in the object');
  assert.is(r.report.files[0]?.verdict, 'safe');
});

graph('shared storages stay shared in the graph; views are materialised', async () => {
  const r = await safeLoad(join(TENSORS, 'views.pt'));
  const b = r.tensors.get('shared_b') as Tensor;
  assert.equal([...(b.data as BigInt64Array)], [3n, 4n, 5n, 6n, 7n]);
  const c = r.tensors.get('shared_c') as Tensor;
  assert.equal(c.shape, [5, 2]);
  assert.equal([...(c.data as BigInt64Array)].slice(0, 4), [0n, 5n, 1n, 6n]);
  assert.equal(r.tensors.get('scalar')?.shape, []);
  assert.is((r.tensors.get('scalar')?.data as Float32Array)[0], 3.5);
  assert.is(r.tensors.get('empty')?.data.length, 0);
});

graph('a bare tensor gets the name ""', async () => {
  const r = await safeLoad(join(TENSORS, 'bare_tensor.pt'));
  assert.equal([...r.tensors.keys()], ['']);
  assert.ok(isTensor(r.object));
});

graph('a key named __proto__ pollutes nothing', async () => {
  const r = await safeLoad(join(TENSORS, 'proto_key.pt'));
  const o = r.object as Record<string, unknown>;
  assert.ok(Object.prototype.hasOwnProperty.call(o, '__proto__'));
  assert.ok(isTensor(o.__proto__));
  assert.is(({} as Record<string, unknown>).constructor, Object);
  assert.is(Object.getPrototypeOf(o), null);
  assert.ok(r.tensors.has('__proto__') && r.tensors.has('constructor'));
});

graph('in-memory bytes load like a file', async () => {
  const r = await safeLoad(readFileSync(join(TENSORS, 'views.pt')), { name: 'views.pt' });
  assert.is(sha(r.tensors.get('transposed') as Tensor), EXPECTED['views.pt']?.tensors.transposed?.sha256);
});

graph('legacy format metadata comes from its first pickles', async () => {
  const r = await safeLoad(join(TENSORS, 'checkpoint_legacy.pt'));
  assert.is(r.format, 'pytorch-legacy');
  assert.is(r.metadata.protocol, 1001);
});
graph.run();

const refuse = suite('safeLoad() refuses unsafe files');
refuse.after(() => closeDefaultPool());

async function refused(path: string, opts: Parameters<typeof safeLoad>[1] = {}): Promise<GuardError & { report: Report }> {
  try {
    await safeLoad(path, opts);
  } catch (e) {
    assert.instance(e, GuardError);
    return e as GuardError & { report: Report };
  }
  assert.unreachable(`${path} loaded`);
  throw new Error('unreachable');
}

for (const f of ['torch_reduce_payload.pt', 'torch_legacy_payload.pt', 'torch_extra_pkl.pt', 'torch_extra_member.pt', 'torch_renamed_root.pt', 'torch_deflated.pt']) {
  refuse(`malicious ${f} is refused with UNSAFE_MODEL and its report`, async () => {
    const e = await refused(join(SCAN_FIXTURES, 'attack', f));
    assert.is(e.code, 'UNSAFE_MODEL');
    assert.is(e.report.files[0]?.verdict, 'malicious');
    assert.ok(e.report.files[0]?.findings.some((x) => x.verdict === 'malicious' && /would call|imports/.test(x.message + (x.evidence ?? ''))));
  });
}

for (const [file, target] of Object.entries(EXPECTED._escapes)) {
  refuse(`escape attempt ${file} fails closed naming ${target}`, async () => {
    const e = await refused(join(TENSORS, file));
    assert.is(e.code, 'UNSAFE_MODEL');
    assert.ok(JSON.stringify(e.report).includes(target.split('.').pop() as string));
  });
}

refuse('with allowSuspicious, the VM still refuses what it intercepts (pyodide.code.run_js)', async () => {
  const e = await refused(join(TENSORS, 'escape/pyodide_run_js.pkl'), { allowSuspicious: true });
  assert.is(e.code, 'UNSAFE_MODEL');
  const f = e.report.files[0]?.findings.find((x) => x.rule === 'vm/runtime-escape');
  assert.ok(f, 'VM finding added to the report');
  assert.is(e.report.files[0]?.verdict, 'malicious');
});

refuse('with allowSuspicious, a 2 GiB bytearray still fails closed', async () => {
  const e = await refused(join(TENSORS, 'escape/bytearray_2g.pkl'), { allowSuspicious: true });
  assert.ok(e.code === 'INVALID_MODEL' || e.code === 'UNSAFE_MODEL', e.code);
});

refuse('suspicious files need allowSuspicious or --allow; allow turns the class into a plain object', async () => {
  const file = join(SCAN_FIXTURES, 'bypass/unknown_class.pkl');
  const e = await refused(file);
  assert.is(e.code, 'UNSAFE_MODEL');
  assert.is(e.report.files[0]?.verdict, 'suspicious');
});

refuse('option mistakes name the fix', async () => {
  await safeLoad(join(TENSORS, 'array.npy'), { maxbytes: 1 } as never).then(
    () => assert.unreachable(),
    (e: GuardError) => {
      assert.is(e.code, 'USAGE');
      assert.match(e.message, /did you mean `maxBytes`/);
    },
  );
});

refuse('maxBytes caps what a load may allocate', async () => {
  const e = await refused(join(TENSORS, 'views.pt'), { maxBytes: 64 });
  assert.is(e.code, 'LIMIT_EXCEEDED');
});
refuse.run();

const allow = suite('safeLoad() allow option');
allow.after(() => closeDefaultPool());
allow('an allowed class loads as a plain placeholder object with its state', async () => {
  const r = await safeLoad(join(SCAN_FIXTURES, 'bypass/unknown_class.pkl'), { allow: ['mypackage.models.Config'] });
  assert.is(r.report.files[0]?.verdict, 'safe');
  const o = r.object as { __class__: string; state: unknown; args: unknown[] };
  assert.is(o.__class__, 'mypackage.models.Config');
  assert.equal(o.args, []);
  assert.ok('state' in o);
});

allow('a whole-module pickle loaded with allowSuspicious keeps its parameters by attribute path', async () => {
  const r = await safeLoad(join(SCAN_FIXTURES, 'real/torch_full_model.pt'), { allowSuspicious: true });
  assert.ok(r.tensors.has('_modules.0._parameters.weight'), [...r.tensors.keys()].join(' '));
  const o = r.object as { __class__: string; state: { _modules: unknown } };
  assert.is(o.__class__, 'intercepted');
  assert.ok(o.state._modules);
});
allow.run();

const allowPrefix = suite('safeLoad() allow prefixes');
allowPrefix.after(() => closeDefaultPool());
allowPrefix('`mypackage.*` accepts every class under the prefix', async () => {
  const r = await safeLoad(join(SCAN_FIXTURES, 'bypass/unknown_class.pkl'), { allow: ['mypackage.*'] });
  assert.is((r.object as { __class__: string }).__class__, 'mypackage.models.Config');
});
allowPrefix.run();

/**
 * Issue 12 point 8: tensors `Tensor` cannot represent (quantized, sparse, structured records) are
 * refused with UNSUPPORTED naming the tensor, never dropped or returned as their parts. The files
 * come from real PyTorch and NumPy (Debian python3-torch, python3-numpy), written here at test time.
 */
const lossless = suite('safeLoad() never drops data silently');
let realDir = '';
lossless.before(() => {
  realDir = mkdtempSync(join(tmpdir(), 'mg-lossless-'));
  execFileSync('/usr/bin/python3', ['-W', 'ignore', '-c', [
    'import sys, os, torch, numpy as np',
    'd = sys.argv[1]',
    'w = torch.arange(6, dtype=torch.float32).reshape(2, 3)',
    "torch.save({'w': w, 'q': torch.quantize_per_tensor(torch.tensor([1.0, 2.0, -1.5]), 0.1, 3, torch.qint8)}, os.path.join(d, 'qint8.pt'))",
    "torch.save({'w': w, 'q': torch.quantize_per_tensor(torch.tensor([1.0, 2.0]), 0.5, 10, torch.quint8)}, os.path.join(d, 'quint8.pt'))",
    "torch.save({'w': w, 'q': torch.quantize_per_tensor(torch.tensor([1.0, 2.0]), 0.5, 0, torch.qint32)}, os.path.join(d, 'qint32.pt'))",
    "torch.save({'w': w, 'q': torch.quantize_per_channel(w, torch.tensor([0.1, 0.2]), torch.tensor([0, 1]), 0, torch.qint8)}, os.path.join(d, 'per_channel.pt'))",
    "torch.save({'layer': {'w': w, 'sp': torch.sparse_coo_tensor(torch.tensor([[0, 1], [2, 0]]), torch.tensor([3.0, 4.0]), (2, 3))}}, os.path.join(d, 'sparse_coo.pt'))",
    "torch.save({'w': w, 'csr': w.to_sparse_csr()}, os.path.join(d, 'sparse_csr.pt'))",
    "torch.save({'w': w, 'q': torch.quantize_per_tensor(torch.tensor([1.0, 2.0, -1.5]), 0.1, 3, torch.qint8).dequantize(), 'sp': torch.sparse_coo_tensor(torch.tensor([[0, 1], [2, 0]]), torch.tensor([3.0, 4.0]), (2, 3)).to_dense()}, os.path.join(d, 'dense_twin.pt'))",
    "rec = np.zeros(3, dtype=[('a', '<i4'), ('b', '<f8')])",
    "np.save(os.path.join(d, 'record.npy'), rec)",
    "np.save(os.path.join(d, 'recarray.npy'), np.rec.array([(1, 2.0)], dtype=[('x', '<i2'), ('y', '<f4')]))",
    "np.savez(os.path.join(d, 'record.npz'), plain=np.arange(4, dtype=np.float32), rec=rec)",
    "np.savez(os.path.join(d, 'fields_twin.npz'), plain=np.arange(4, dtype=np.float32), a=rec['a'], b=rec['b'])",
    'import pickle, joblib',
    "pickle.dump({'rec': rec, 'plain': np.arange(3.0)}, open(os.path.join(d, 'record.pkl'), 'wb'), protocol=4)",
    "joblib.dump({'rec': rec, 'plain': np.arange(3.0)}, os.path.join(d, 'record.joblib'))",
    "joblib.dump({'a': rec['a'], 'b': rec['b'], 'plain': np.arange(3.0)}, os.path.join(d, 'fields_twin.joblib'))",
  ].join('\n'), realDir]);
});
lossless.after(async () => {
  rmSync(realDir, { recursive: true, force: true });
  await closeDefaultPool();
});

async function refusal(file: string): Promise<GuardError> {
  try {
    const r = await safeLoad(join(realDir, file));
    throw new Error(`${file} loaded: ${[...r.tensors.keys()].join(', ')}`);
  } catch (e) {
    if (!(e instanceof GuardError)) throw e;
    return e;
  }
}

for (const [file, tensor, what] of [
  ['qint8.pt', 'q', /quantized tensor \(torch\.qint8\)/],
  ['quint8.pt', 'q', /quantized tensor \(torch\.quint8\)/],
  ['qint32.pt', 'q', /quantized tensor \(torch\.qint32\)/],
  ['per_channel.pt', 'q', /quantized tensor/],
  ['sparse_coo.pt', 'layer.sp', /sparse tensor/],
  ['sparse_csr.pt', 'csr', /sparse \(compressed\) tensor/],
] as const) {
  lossless(`${file}: refused with UNSUPPORTED naming tensor "${tensor}"`, async () => {
    const e = await refusal(file);
    assert.is(e.code, 'UNSUPPORTED', e.message);
    assert.match(e.message, `tensor "${tensor}"`);
    assert.match(e.message, what);
    assert.is(e.context.tensor, tensor);
  });
}

lossless('the not-flagged twin: the same tensors dequantized and densified load exactly', async () => {
  const r = await safeLoad(join(realDir, 'dense_twin.pt'));
  assert.equal([...r.tensors.keys()].sort(), ['q', 'sp', 'w']);
  assert.equal([...(r.tensors.get('q')?.data as Float32Array)], [Math.fround(1.0), Math.fround(2.0), Math.fround(-1.5)]);
  assert.equal([...(r.tensors.get('sp')?.data as Float32Array)], [0, 0, 3, 4, 0, 0]);
  assert.equal(r.tensors.get('sp')?.shape, [2, 3]);
});

for (const [file, tensor, fields] of [['record.npy', '<array>', 'a, b'], ['recarray.npy', '<array>', 'x, y'], ['record.npz', 'rec.npy', 'a, b'], ['record.pkl', 'rec', 'a, b'], ['record.joblib', 'rec', 'a, b']] as const) {
  lossless(`${file}: a structured NumPy dtype is refused with UNSUPPORTED naming the array and its fields`, async () => {
    const e = await refusal(file);
    assert.is(e.code, 'UNSUPPORTED', e.message);
    assert.match(e.message, /structured \(record\) NumPy dtype/);
    assert.match(e.message, `fields ${fields}`);
    assert.is(e.context.tensor, tensor);
  });
}

lossless('the not-flagged twin: the record fields saved as their own arrays load', async () => {
  const r = await safeLoad(join(realDir, 'fields_twin.npz'));
  assert.equal([...r.tensors.keys()].sort(), ['a', 'b', 'plain']);
  assert.is(r.tensors.get('a')?.dtype, 'int32');
  assert.is(r.tensors.get('b')?.dtype, 'float64');
  const j = await safeLoad(join(realDir, 'fields_twin.joblib'));
  assert.equal([...j.tensors.keys()].sort(), ['a', 'b', 'plain']);
});
lossless.run();
