import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { reaches, verdictOf, maxSeverity, summarize, type Finding } from '../../src/report/model.js';

const f = (verdict: Finding['verdict'], severity: Finding['severity'] = 'medium'): Finding => ({ rule: 'x/y', severity, verdict, message: 'm' });

test('a file verdict is the most serious verdict its findings imply', () => {
  assert.is(verdictOf([]), 'safe');
  assert.is(verdictOf([f('safe', 'info')]), 'safe');
  assert.is(verdictOf([f('suspicious'), f('invalid')]), 'invalid');
  assert.is(verdictOf([f('invalid'), f('malicious'), f('error')]), 'malicious');
});

test('execute-then-break: a malicious finding outranks the broken stream', () => {
  assert.is(verdictOf([f('malicious', 'critical'), f('invalid', 'high')]), 'malicious');
});

test('--fail-on levels', () => {
  assert.not.ok(reaches('safe', 'suspicious'));
  assert.ok(reaches('suspicious', 'suspicious'));
  assert.not.ok(reaches('suspicious', 'invalid'));
  assert.ok(reaches('invalid', 'invalid'));
  assert.ok(reaches('error', 'suspicious'));
  assert.not.ok(reaches('error', 'malicious'));
  assert.ok(reaches('malicious', 'malicious'));
});

test('severity is ordered and a report counts verdicts', () => {
  assert.is(maxSeverity([f('safe', 'low'), f('safe', 'critical'), f('safe', 'high')]), 'critical');
  const s = summarize([{ path: 'a', format: 'pickle', verdict: 'safe', findings: [] }, { path: 'b', format: 'pickle', verdict: 'malicious', findings: [f('malicious')] }], 5);
  assert.equal(s.verdicts, { safe: 1, suspicious: 0, invalid: 0, error: 0, malicious: 1 });
  assert.is(s.findings, 1);
});

test.run();
