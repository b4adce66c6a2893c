import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createPolicy, normaliseModule } from '../../../src/formats/pickle/policy.js';

const p = createPolicy();
const cls = (m: string, n: string) => p.classify(m, n).cls;

test('PyTorch, NumPy and container globals a checkpoint uses are allowed', () => {
  for (const [m, n] of [
    ['torch._utils', '_rebuild_tensor_v2'],
    ['torch', 'FloatStorage'],
    ['torch', 'bfloat16'],
    ['collections', 'OrderedDict'],
    ['numpy.core.multiarray', '_reconstruct'],
    ['numpy', 'dtype'],
    ['_codecs', 'encode'],
    ['__builtin__', 'set'],
  ]) assert.is(cls(m as string, n as string), 'allowed', `${m}.${n}`);
});

test('Python 2 and private aliases resolve to the real module', () => {
  assert.is(normaliseModule('posix'), 'os');
  assert.is(normaliseModule('nt'), 'os');
  assert.is(normaliseModule('__builtin__'), 'builtins');
  assert.is(normaliseModule('_operator'), 'operator');
  assert.is(cls('posix', 'system'), 'dangerous');
});

test('dangerous capabilities match on module prefix and on the dotted walk', () => {
  assert.is(cls('subprocess', 'Popen'), 'dangerous');
  assert.is(cls('asyncio.subprocess', 'create_subprocess_exec'), 'dangerous');
  assert.is(cls('torch', 'serialization.os.system'), 'dangerous');
  assert.match(p.classify('torch', 'serialization.os.system').reason, /reached through torch\.serialization/);
  assert.is(cls('collections', 'OrderedDict.__init__.__globals__'), 'dangerous');
});

test('a module path segment that merely shares a name with a dangerous module is not an alias', () => {
  // sklearn.utils.io would be the real submodule, not the `io` module.
  assert.is.not(cls('somepkg.io', 'Reader'), 'dangerous');
});

test('unknown globals are unknown and known ML libraries are named', () => {
  assert.is(cls('mypackage', 'Thing'), 'unknown');
  assert.is(cls('sklearn.linear_model._logistic', 'LogisticRegression'), 'library');
  assert.match(p.classify('sklearn.linear_model._logistic', 'LogisticRegression').reason, /scikit-learn/);
});

test('a gadget name never seen before is still caught by what it does', () => {
  assert.is(cls('vendor.tools', 'run_command'), 'dangerous');
  assert.is(cls('vendor.tools', 'spawn_shell'), 'dangerous');
  assert.is(cls('vendor.tools', 'Config'), 'unknown');
});

test('non-identifier names are never allowed', () => {
  assert.is.not(cls('collections', 'OrderedDict\nos'), 'allowed');
});

test('user allow entries accept exact names and module prefixes', () => {
  const q = createPolicy({ allow: ['my.pkg.Config', 'other.*'] });
  assert.is(q.classify('my.pkg', 'Config').cls, 'allowed');
  assert.is(q.classify('other.sub', 'X').cls, 'allowed');
  assert.is(q.classify('otherwise', 'X').cls, 'unknown');
});

test.run();
