import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { FindingSink } from '../../src/report/findings.js';
import { judgeKerasConfig, isKerasArchive } from '../../src/formats/keras.js';
import { scan } from '../../src/scan.js';
import { fixture, manifestTests } from './manifest-cases.js';

// Keras v3 archives and unpacked config.json files; legacy .h5 lives in keras-h5.test.ts.
manifestTests('keras/', undefined, /\.h5$/);

function judge(config: unknown) {
  const sink = new FindingSink();
  judgeKerasConfig(sink, config as never, { source: 'config.json' });
  return sink.findings.map((f) => `${f.rule}:${f.verdict}`);
}

test('isKerasArchive() needs config.json and metadata.json', () => {
  assert.ok(isKerasArchive(['metadata.json', 'config.json', 'model.weights.h5']));
  assert.not.ok(isKerasArchive(['config.json', 'data.pkl']));
});

test('a __lambda__ anywhere in the config (not only in a Lambda layer) is malicious', () => {
  const cfg = { class_name: 'Dense', config: { name: 'd', activation: { class_name: '__lambda__', config: { code: 'YWJj' } } } };
  assert.equal(judge(cfg), ['keras/lambda-layer:malicious']);
});

test('builtins.exec as a function reference is malicious, builtins.max is not flagged', () => {
  assert.equal(judge({ module: 'builtins', class_name: 'function', config: 'exec' }), ['keras/dangerous-module:malicious']);
  assert.equal(judge({ module: 'builtins', class_name: 'function', config: 'max' }), []);
});

test('a config nested 100 000 levels deep is bounded, not a stack overflow', () => {
  let v: unknown = { class_name: 'Dense', config: { name: 'x' } };
  for (let i = 0; i < 100_000; i++) v = { class_name: 'Wrapper', config: { name: 'w', layer: v } };
  const out = judge(v);
  assert.ok(out.includes('keras/config-too-large:suspicious'));
});

test('a .keras archive reports its Lambda once (archive hook, not again as a member config)', async () => {
  const r = await scan(fixture('keras/lambda.keras'));
  assert.is(r.files[0]?.findings.filter((f) => f.rule === 'keras/lambda-layer').length, 1);
  assert.is(r.files[0]?.findings[0]?.location?.member, 'config.json');
});

test('a Lambda around a Keras op is not flagged; around a foreign function it is suspicious', () => {
  const lambda = (fn: unknown) => ({ class_name: 'Lambda', config: { name: 'l', function: fn } });
  assert.equal(judge(lambda({ module: 'keras.src.ops.numpy', class_name: 'function', config: 'add', registered_name: null })), []);
  assert.ok(judge(lambda({ module: 'my_ops', class_name: 'function', config: 'add' })).includes('keras/lambda-function:suspicious'));
});

// Keras 3 shapes: every object Keras rebuilds is {module, class_name, config, registered_name}.
const ref = (module: string, className: string, config: unknown = {}, registered: string | null = null) => ({ module, class_name: className, config, registered_name: registered });
const fnRef = (module: string, fn: string) => ({ module, class_name: 'function', config: fn, registered_name: 'function' });
const sequential = (...layers: unknown[]) => ({ module: 'keras', class_name: 'Sequential', config: { name: 'seq', layers: [ref('keras.layers', 'InputLayer', { name: 'in', batch_shape: [null, 4] }), ...layers] }, registered_name: null });
const dense = (activation: unknown = 'relu') => ref('keras.layers', 'Dense', { name: 'd', units: 2, activation, kernel_initializer: ref('keras.initializers', 'GlorotUniform', { seed: null }), dtype: ref('keras', 'DTypePolicy', { name: 'float32' }) });
const lambda = (fn: unknown, extra: Record<string, unknown> = {}) => ref('keras.layers', 'Lambda', { name: 'l', function: fn, ...extra });
const verdicts = (cfg: unknown) => judge(cfg).map((r) => r.split(':')[1]);

// Each malicious shape with its not-flagged twin: the same place in the config, an allowlisted name.
const pairs: Array<[string, unknown, string, unknown]> = [
  ['keras.utils.get_file as a layer class (CVE-2025-8747 shape)', sequential(dense(), ref('keras.utils', 'get_file', { fname: 'x', origin: 'http://192.0.2.1/x.tar.gz', extract: true, cache_dir: '/tmp' })), 'keras/dangerous-function',
    sequential(dense(), ref('keras.layers', 'Dropout', { name: 'drop', rate: 0.5 }))],
  ['get_file through the internal module path', sequential(ref('keras.src.utils.file_utils', 'get_file', { origin: 'http://192.0.2.1/x' })), 'keras/dangerous-function',
    sequential(ref('keras.src.layers.core.dense', 'Dense', { name: 'd', units: 1 }))],
  ['get_file as an activation function', sequential(dense(fnRef('keras.utils', 'get_file'))), 'keras/dangerous-function',
    sequential(dense(fnRef('keras.activations', 'relu')))],
  ['keras.config.enable_unsafe_deserialization before a Lambda (CVE-2025-9906 shape)', sequential(lambda(fnRef('keras.config', 'enable_unsafe_deserialization'))), 'keras/dangerous-function',
    sequential(lambda(fnRef('keras.src.ops.numpy', 'add')))],
  ['any keras.config function', sequential(dense(fnRef('keras.src.backend.config', 'set_floatx')), ref('keras.config', 'set_dtype_policy')), 'keras/dangerous-function',
    sequential(dense(fnRef('keras.src.activations.activations', 'gelu')))],
  ['keras.models.load_model as a layer', sequential(ref('keras.models', 'load_model', { filepath: 'http://192.0.2.1/m.keras' })), 'keras/dangerous-function',
    sequential(ref('keras.models', 'Sequential', { name: 'inner', layers: [] }))],
  ['TFSMLayer loads a SavedModel from a path', sequential(ref('keras.layers', 'TFSMLayer', { name: 't', filepath: 'gs://example.invalid/m' })), 'keras/dangerous-function',
    sequential(ref('keras.layers', 'Conv2D', { name: 'c', filters: 1, kernel_size: 3 }))],
  ['TorchModuleWrapper unpickles a torch module from its config', sequential(ref('keras.layers', 'TorchModuleWrapper', { name: 't', module: 'gASVAAAAAAAAAAA=' })), 'keras/dangerous-function',
    sequential(ref('keras.layers', 'LayerNormalization', { name: 'ln', epsilon: 0.001 }))],
  ['a ModelCheckpoint callback writes files', sequential(dense(), ref('keras.callbacks', 'ModelCheckpoint', { filepath: '/tmp/x' })), 'keras/dangerous-function',
    sequential(dense(), ref('keras.optimizers', 'Adam', { learning_rate: ref('keras.optimizers.schedules', 'ExponentialDecay', { initial_learning_rate: 0.1 }) }))],
  ['Lambda source text calling eval', sequential(lambda("lambda x: eval(\"__import__('os').system('echo modelguard-fixture')\")")), 'keras/lambda-layer',
    sequential(lambda(fnRef('keras.ops', 'relu')))],
  ['legacy Lambda code with function_type lambda', sequential(lambda('def f(x):\n  return eval(x)', { function_type: 'lambda', module: '__main__' })), 'keras/lambda-layer',
    sequential(lambda('relu', { function_type: 'function', module: 'keras.activations' }))],
  ['legacy Lambda [code, defaults, closure]', sequential(lambda(['4wEAAAAAAAAA', null, null], { function_type: 'lambda' })), 'keras/lambda-layer',
    sequential(lambda('add', { function_type: 'function', module: 'keras.src.ops.numpy' }))],
  ['Lambda naming builtins.eval by function_type function', sequential(lambda('eval', { function_type: 'function', module: 'builtins' })), 'keras/dangerous-module',
    sequential(lambda('max', { function_type: 'function', module: 'builtins' }))],
  ['a Lambda output_shape as code', sequential(lambda(fnRef('keras.ops', 'relu'), { output_shape: ['4wEAAAAAAAAA', null, null], output_shape_type: 'lambda' })), 'keras/lambda-layer',
    sequential(lambda(fnRef('keras.ops', 'relu'), { output_shape: [null, 4], output_shape_type: 'raw' }))],
  ['TFOpLambda naming tf.io.write_file', sequential(ref('keras.layers', 'TFOpLambda', { name: 'tf.io.write_file', function: 'io.write_file' })), 'keras/dangerous-function',
    sequential(ref('keras.layers', 'TFOpLambda', { name: 'tf.math.add', function: 'math.add' }))],
  ['a registered name that is dangerous', sequential(ref('keras.layers', 'Dense', { name: 'd' }, 'get_file')), 'keras/dangerous-function',
    sequential(ref('keras.layers', 'Dense', { name: 'd' }, 'Dense'))],
  ['a module-less (tf.keras 2) reference to load_model', { class_name: 'Sequential', config: { name: 's', layers: [{ class_name: 'load_model', config: { filepath: '/tmp/m.h5' } }] } }, 'keras/dangerous-function',
    { class_name: 'Sequential', config: { name: 's', layers: [{ class_name: 'Dense', config: { name: 'd', units: 2 } }] } }],
  ['subprocess named as a module', sequential(dense(fnRef('subprocess', 'check_output'))), 'keras/dangerous-module',
    sequential(dense(fnRef('keras.activations', 'sigmoid')))],
];
for (const [what, bad, rule, twin] of pairs) {
  test(`${what} is malicious by ${rule}; its twin is not flagged`, () => {
    const found = judge(bad);
    assert.ok(found.includes(`${rule}:malicious`), JSON.stringify(found));
    assert.equal(judge(twin), []);
  });
}

test('unknown modules and unlisted Keras objects are suspicious, never safe', () => {
  assert.equal(verdicts(sequential(ref('my_package.layers', 'MyLayer', { name: 'm' }))), ['suspicious']);
  assert.equal(verdicts(sequential(dense(fnRef('keras.utils', 'to_categorical')))), ['suspicious']);
  assert.equal(verdicts(sequential(ref('keras_hub.src.utils.preset_utils', 'load_json'))), ['suspicious']);
  assert.equal(verdicts(sequential(dense(fnRef('builtins', 'hash')))), ['suspicious']);
  assert.equal(judge(sequential(ref('keras_hub.src.models.gemma.gemma_backbone', 'GemmaBackbone', { name: 'b' }, 'keras_hub>GemmaBackbone'))), []);
});

test('Keras data markers (__numpy__, __tensor__, __bytes__) are not imports', () => {
  assert.equal(judge(sequential(ref('keras.layers', 'Embedding', { name: 'e', embeddings_initializer: { class_name: '__numpy__', config: { value: [1, 2], dtype: 'float32' } } }))), []);
});

test('real Keras 3 and tf.keras 2 configs written by the fixture generator stay safe', async () => {
  for (const f of ['keras/valid.keras', 'keras/keras-hub.keras', 'keras/unpacked-valid/config.json']) {
    const r = await scan(fixture(f));
    assert.is(r.files[0]?.verdict, 'safe', `${f}: ${JSON.stringify(r.files[0]?.findings)}`);
  }
});

test.run();
