import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { renderText } from '../../src/report/text.js';
import { renderJson } from '../../src/report/json.js';
import { renderSarif } from '../../src/report/sarif.js';
import type { Report } from '../../src/report/model.js';

const report: Report = {
  tool: { name: 'modelguard', version: '0' },
  files: [
    { path: 'a.pt', format: 'pytorch-zip', verdict: 'safe', basis: 'only allowlisted globals (3), 2 tensors', findings: [] },
    {
      path: 'b.pkl',
      format: 'pickle',
      verdict: 'malicious',
      findings: [
        { rule: 'pickle/dangerous-global', severity: 'critical', verdict: 'malicious', message: 'imports `os.system`', location: { member: 'archive/data.pkl', offset: 29 }, evidence: "would call os.system('id')" },
        { rule: 'pickle/persistent-id', severity: 'info', verdict: 'safe', message: 'note' },
      ],
    },
  ],
  summary: { files: 2, verdicts: { safe: 1, suspicious: 0, invalid: 0, error: 0, malicious: 1 }, findings: 2, durationMs: 3 },
  walls: { isolate: true, seccomp: 'loader', network: 'netns', landlock: 7, mode: 'walled' },
};

test('safe says what it rests on; findings show member, offset and evidence', () => {
  const t = renderText(report);
  assert.match(t, /SAFE\s+a\.pt \(pytorch-zip\) — safe: only allowlisted globals \(3\), 2 tensors/);
  assert.match(t, /critical pickle\/dangerous-global \[archive\/data\.pkl @29\]: imports `os\.system`/);
  assert.match(t, /would call os\.system\('id'\)/);
  assert.match(t, /2 files scanned: 1 safe, 1 malicious; 2 findings/);
  assert.match(t, /walls: mode=walled isolate=yes seccomp=loader network=netns landlock=ABI 7/);
});

test('info findings are hidden unless verbose; colour only when asked', () => {
  assert.not.match(renderText(report), /persistent-id/);
  assert.match(renderText(report, { verbose: true }), /persistent-id/);
  assert.not.match(renderText(report), /\u001b\[/);
  assert.match(renderText(report, { color: true }), /\u001b\[31mMALICIOUS/);
});

test('an interrupted scan says so after the summary; a finished one does not', () => {
  assert.not.match(renderText(report), /INTERRUPTED/);
  const t = renderText({ ...report, interrupted: true });
  assert.match(t, /2 files scanned: .*\n.*\nINTERRUPTED the scan was stopped before it finished: only the files listed above were scanned\n$/);
});

test('an interrupted SARIF run is not successful and says why; JSON carries interrupted: true', () => {
  const run = (JSON.parse(renderSarif({ ...report, interrupted: true })) as { runs: Array<{ invocations: Array<{ executionSuccessful: boolean; toolExecutionNotifications?: Array<{ message: { text: string } }> }>; properties: Record<string, unknown> }> }).runs[0]!;
  assert.is(run.invocations[0]!.executionSuccessful, false);
  assert.match(run.invocations[0]!.toolExecutionNotifications?.[0]?.message.text ?? '', /interrupted/);
  assert.is(run.properties.interrupted, true);
  const plain = (JSON.parse(renderSarif(report)) as { runs: Array<{ invocations: Array<{ executionSuccessful: boolean }>; properties: Record<string, unknown> }> }).runs[0]!;
  assert.is(plain.invocations[0]!.executionSuccessful, true);
  assert.is(plain.properties.interrupted, undefined);
  assert.is((JSON.parse(renderJson({ ...report, interrupted: true })) as { interrupted?: boolean }).interrupted, true);
  assert.is((JSON.parse(renderJson(report)) as { interrupted?: boolean }).interrupted, undefined);
});

test.run();
