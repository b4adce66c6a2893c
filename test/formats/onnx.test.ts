import { readFileSync } from 'node:fs';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { decodeOnnx } from '../../src/formats/onnx.js';
import { scan } from '../../src/scan.js';
import { fixture, manifestTests } from './manifest-cases.js';

manifestTests('onnx/', 'onnx');

test('decodeOnnx() reads the graph with protobufjs and the ONNX schema', () => {
  const m = decodeOnnx(readFileSync(fixture('onnx/valid.onnx')));
  assert.is(m.graph?.node?.[0]?.op_type, 'Add');
  assert.is(m.graph?.initializer?.[0]?.name, 'w');
});

test('external data is judged by path alone when the model is scanned from bytes', async () => {
  const bytes = readFileSync(fixture('onnx/external-dotdot.onnx'));
  const r = await scan(bytes, { name: 'model.onnx' });
  assert.is(r.files[0]?.verdict, 'malicious');
  const ok = await scan(readFileSync(fixture('onnx/external-ok/model.onnx')), { name: 'model.onnx' });
  assert.is(ok.files[0]?.verdict, 'safe');
});

test.run();
