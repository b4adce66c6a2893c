import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { autoMapEntries } from '../../src/formats/json-config.js';
import { parseJsonStrict } from '../../src/formats/json-strict.js';
import { manifestTests } from './manifest-cases.js';

// tokenizer_config.json chat templates, config.json auto_map, broken configs.
manifestTests('hf/');

test('autoMapEntries() names the .py files and remote repositories', () => {
  const e = autoMapEntries(parseJsonStrict('{"AutoTokenizer": ["tokenization_x.XTok", "tokenization_x_fast.XTokFast"], "AutoModel": "org/repo--modeling_x.XModel"}').value);
  assert.equal(e.map((x) => [x.file, x.repo ?? null]), [
    ['tokenization_x.py', null],
    ['tokenization_x_fast.py', null],
    ['modeling_x.py', 'org/repo'],
  ]);
});

test('parseJsonStrict() reports duplicate keys, keeps big integers exact and caps depth', () => {
  const r = parseJsonStrict('{"a": 1, "a": 2, "n": 18446744073709551615}');
  assert.equal(r.issues.map((i) => i.kind), ['duplicate-key']);
  assert.is((r.value as Record<string, unknown>).n, 18446744073709551615n);
  const deep = parseJsonStrict('['.repeat(100_000) + ']'.repeat(100_000));
  assert.is(deep.value, undefined);
  assert.is(deep.issues[0]?.kind, 'depth');
  const proto = parseJsonStrict('{"__proto__": {"polluted": true}}');
  assert.is(({} as Record<string, unknown>).polluted, undefined);
  assert.ok(proto.value && typeof proto.value === 'object');
});

test.run();
