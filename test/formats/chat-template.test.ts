import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { analyzeChatTemplate } from '../../src/formats/chat-template.js';
import { manifestTests } from './manifest-cases.js';
import { cpuMsOf } from '../helpers/budget.js';

manifestTests('templates/', 'chat-template');

const rules = (src: string) => analyzeChatTemplate(src).map((f) => `${f.rule}:${f.verdict}`);

test('dunder access is caught in every spelling', () => {
  for (const src of [
    "{{ x.__class__ }}",
    "{{ x['__globals__'] }}",
    '{{ x["__builtins__"] }}',
    "{{ x|attr('__init__') }}",
    "{{ x['\\u005f\\u005fclass\\u005f\\u005f'] }}",
    "{{ x['\\137\\137class\\137\\137'] }}",
    "{{ x|map(attribute='__class__')|list }}",
    "{{ __import__('os') }}",
    "{{ x|attr('_' '_cla' 'ss_' '_') }}",
    '{{ x.__ｃｌａｓｓ__ }}',
    "{{ '{0.__class__}'.format(x) }}",
  ]) assert.ok(rules(src).includes('chat-template/dunder-access:malicious'), src);
});

test('a string-built attribute name is malicious', () => {
  assert.ok(rules("{% set a = '_' ~ '_' %}{{ x[a ~ 'class' ~ a] }}").includes('chat-template/string-built-attribute:malicious'));
  assert.ok(rules("{{ x|attr(name) }}").includes('chat-template/string-built-attribute:malicious'));
  assert.ok(rules("{{ x[('_', '_', 'class')|join] }}").some((r) => r.endsWith(':malicious')));
  assert.ok(rules("{% set u = '_' %}{% set n = u ~ u ~ 'globals' ~ u ~ u %}{{ x[n] }}").includes('chat-template/string-built-attribute:malicious'));
  assert.ok(rules("{% set n = ('_' ~ '_init' ~ '_' ~ '_') %}{{ x|map(attribute=n)|list }}").includes('chat-template/string-built-attribute:malicious'));
  assert.ok(rules("{{ x|selectattr('_' ~ '_class' ~ '_' ~ '_') }}").includes('chat-template/string-built-attribute:malicious'));
});

test('ordinary message indexing, concatenation and namespace() stay clean (not flagged twins)', () => {
  assert.equal(rules("{{ messages[loop.index0 + 1]['content'] + '\\n' }}"), []);
  assert.equal(rules("{% set ns = namespace(found=false) %}{% set ns.found = true %}{{ ns.found }}"), []);
  assert.equal(rules("{{ message['role'] ~ ': ' ~ message['content'] }}"), []);
  assert.equal(rules("{% for i in range(3) %}{{ i }}{% endfor %}"), []);
  assert.equal(rules("{{ 'ab' * 3 }}"), []);
  assert.equal(rules("{% if tools %}{% for t in tools %}{% for p in t.parameters %}{{ p }}{% endfor %}{% endfor %}{% endif %}"), []);
  assert.equal(rules("{{ message.config_name }}{{ item.request_id }}"), []);
  assert.equal(rules("{{ tool.name | replace('_', ' ') | title }}{% set label = role ~ '_' %}{{ label }}"), []);
  assert.equal(rules("{{ (['a', 'b']|join('_')) + '_' }}"), []);
});

test('text outside tags and comments is never analysed', () => {
  assert.equal(rules("__class__ self config {# x.__class__ #} {{ 'ok' }}"), []);
});

test('hostile sizes are analysed in linear time', () => {
  const ms = cpuMsOf(() => {
    analyzeChatTemplate('{{ ' + '('.repeat(1_000_000) + ' }}');
    analyzeChatTemplate('{% if x %}'.repeat(200_000));
    analyzeChatTemplate('{{ x }}'.repeat(500_000));
  });
  assert.ok(ms < 2000, `took ${ms} ms of CPU`);
});

test.run();
