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

// Issue 12: names built at render time by any string operation reach a dunder; judged on the syntax tree.
const builtNames: Array<[string, string]> = [
  ['str.format with {:c} of 95', "{{ x['{:c}'.format(95) * 2 ~ 'class' ~ '{:c}'.format(95) * 2] }}"],
  ['{:c} in a variable, ~ in {% set %}, x[name]', "{% set u = '{:c}'.format(95) %}{% set n = u ~ u ~ 'globals' ~ u ~ u %}{{ x[n] }}"],
  ['pieces in separate variables', "{% set a = 'cla' %}{% set b = 'ss' %}{% set u = '_' %}{% set n = u ~ u ~ a ~ b ~ u ~ u %}{{ messages[n] }}"],
  ['a list of characters joined', "{{ x[['_','_','class','_','_']|join] }}"],
  ['string repetition', "{{ x[('_' * 2) ~ 'class' ~ ('_' * 2)] }}"],
  ['the replace filter', "{{ x['XXclassXX'|replace('X', '_')] }}"],
  ['str.replace', "{{ x['XXclassXX'.replace('X', '_')] }}"],
  ['printf %c', "{{ x['%c%cclass%c%c' % (95, 95, 95, 95)] }}"],
  ['the format filter into attr()', "{{ x|attr('%s%sclass%s%s'|format('_','_','_','_')) }}"],
  ['the reverse filter', "{{ x['__ssalc__'|reverse] }}"],
  ['%c of a run-time number', "{{ x['%c'|format(n) ~ 'x'] }}"],
  ['attr() named by message content', '{{ x|attr(messages[0].content) }}'],
  ['a block set', "{% set u %}_{% endset %}{{ x[u ~ u ~ 'class' ~ u ~ u] }}"],
  ['a macro parameter', "{% macro g(o, n) %}{{ o[n] }}{% endmacro %}{{ g(messages, '__class__') }}"],
  ['a namespace accumulated in a loop', "{% set ns = namespace(p='') %}{% for c in '__' %}{% set ns.p = ns.p ~ c %}{% endfor %}{{ x[ns.p ~ 'class' ~ ns.p] }}"],
  ['a str.format field built at run time', "{{ ('{0.' ~ '_' * 2 ~ 'class' ~ '_' * 2 ~ '}').format(x) }}"],
  ["map('attr', built)", "{{ x|map('attr', '_' ~ '_class_' ~ '_')|list }}"],
  ['the string filter of a list', "{{ x[(['_','_']|string)[2] * 2 ~ 'class__'] }}"],
  ['str.format of unpacked characters', "{{ x['{}{}class{}{}'.format(*'____')] }}"],
  ['selectattr with a built name', "{{ x|selectattr('_' ~ '_class_' ~ '_') }}"],
  ['a filter the analysis does not model', "{{ x[('_'|center(2)) ~ 'class__'] }}"],
  ['a tuple item', "{% set x = ('_',) %}{{ y[x[0] ~ x[0] ~ 'class__'] }}"],
];
for (const [what, src] of builtNames) {
  test(`a name built with ${what} is malicious`, () => {
    assert.ok(analyzeChatTemplate(src).some((f) => f.verdict === 'malicious'), JSON.stringify(analyzeChatTemplate(src)));
  });
}

test('their not-flagged twins: the same operations on data, or names that are not dunders', () => {
  for (const src of [
    "{{ message['content']|replace('__', '_') }}",
    "{{ message.content.replace('__', ' ') }}",
    "{{ '{:c}'.format(65) }}{{ '%c' % 65 }}",
    "{% set u = '_' %}{{ role ~ u ~ 'x' }}",
    "{{ message['tool' ~ '_calls'] }}",
    '{% for k in tool.parameters.keys() %}{{ tool.parameters[k] }}{% endfor %}',
    "{{ messages|map(attribute='content')|join('\\n') }}",
    "{{ tools|selectattr('type', 'equalto', 'function')|list }}",
    "{% set ns = namespace(sys='') %}{% for m in messages %}{% if m.role == 'system' %}{% set ns.sys = m.content %}{% endif %}{% endfor %}{{ ns.sys }}",
    // transformers' {% generation %} markers (assistant masks for training) are not Jinja syntax.
    "{% for m in messages %}{% if m.role == 'assistant' %}{% generation %}{{ m.content }}{% endgeneration %}{% else %}{{ m.content }}{% endif %}{% endfor %}",
    // DeepSeek-R1-style idioms: split on a marker, namespaces, tojson, unicode markers.
    "{%- set ns = namespace(is_first=false, is_tool=false, system_prompt='') %}{%- for message in messages %}{%- set content = message['content'] %}{%- if '</think>' in content %}{%- set content = content.split('</think>')[-1] %}{%- endif %}{%- if message['role'] == 'assistant' and message['tool_calls'] is defined %}{{ '<｜tool▁calls▁begin｜>' + message['tool_calls'][0]['function']['name'] + '\\n' + message['tool_calls'][0]['function']['arguments']|tojson }}{%- endif %}{{ content }}{%- endfor %}",
  ]) assert.equal(rules(src), [], src);
});

test('a template the parser rejects but Jinja accepts is suspicious, never safe', () => {
  for (const src of ['{% with a = 1 %}{{ a }}{% endwith %}', '{{ 1_000 }}', '{% for x in y recursive %}{{ loop(x) }}{% endfor %}']) {
    const v = analyzeChatTemplate(src).map((f) => f.verdict);
    assert.ok(v.length > 0 && v.every((x) => x === 'suspicious' || x === 'malicious'), `${src}: ${v}`);
  }
  // The token-pattern fallback still finds payloads the parser cannot read.
  assert.ok(rules("{% with a = x['\\137\\137class\\137\\137'] %}{% endwith %}").includes('chat-template/dunder-access:malicious'));
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
