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

test.run();
