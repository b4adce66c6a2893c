import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { scan } from '../../src/scan.js';
import { renderSarif } from '../../src/report/sarif.js';
import { fixture, manifestTests } from './manifest-cases.js';

manifestTests('repos/');

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

test('a Hugging Face folder gets one verdict per file plus a repository summary', async () => {
  const r = await scan(fixture('repos/custom-code'));
  const byName = Object.fromEntries(r.files.map((f) => [f.path.split('/').pop(), f.verdict]));
  assert.equal(byName, {
    'README.md': 'safe',
    'config.json': 'suspicious',
    'configuration_custom.py': 'safe',
    'model.safetensors': 'safe',
    'modeling_custom.py': 'safe',
    'pytorch_model.bin': 'error',
    'tokenizer_config.json': 'safe',
  });
  const repo = r.repository;
  assert.ok(repo, 'repository section present');
  assert.is(repo?.verdict, 'error');
  const custom = repo?.findings.find((f) => f.rule === 'repository/custom-code');
  assert.ok(custom?.message.includes('modeling_custom.py') && custom.message.includes('configuration_custom.py'), custom?.message);
  assert.is(custom?.verdict, 'suspicious');
  const lfs = repo?.findings.find((f) => f.rule === 'repository/lfs-unresolved');
  assert.is(lfs?.verdict, 'error');
  assert.ok(lfs?.message.includes('weights not downloaded'));
  assert.ok(repo?.findings.some((f) => f.rule === 'repository/summary'));
});

test('a clean folder has a safe repository summary and no custom-code finding (not flagged twin)', async () => {
  const r = await scan(fixture('repos/clean'));
  assert.is(r.repository?.verdict, 'safe');
  assert.not.ok(r.repository?.findings.some((f) => f.rule === 'repository/custom-code' || f.rule === 'repository/lfs-unresolved'));
});

test('SARIF over a repository folder: one run, one result per finding, file and byte offset locations', async () => {
  const r = await scan(fixture('repos/custom-code'));
  const sarif = JSON.parse(renderSarif(r, { baseDir: ROOT })) as { runs: Array<{ results: Array<{ ruleId: string; locations: Array<{ physicalLocation: { artifactLocation: { uri: string }; region?: { byteOffset: number } } }> }> }> };
  assert.is(sarif.runs.length, 1);
  const total = r.files.reduce((n, f) => n + f.findings.length, 0) + (r.repository?.findings.length ?? 0);
  assert.is(sarif.runs[0]?.results.length, total);
  const lfs = sarif.runs[0]?.results.find((x) => x.ruleId === 'lfs/unresolved-pointer');
  assert.ok(lfs?.locations[0]?.physicalLocation.artifactLocation.uri.endsWith('pytorch_model.bin'));
  assert.is(lfs?.locations[0]?.physicalLocation.region?.byteOffset, 0);
});

test('guard scan --format sarif DIR prints that SARIF and exits 1', () => {
  const p = spawnSync(process.execPath, ['dist/src/cli/main.js', 'scan', '--format', 'sarif', 'test/fixtures/formats/repos/custom-code'], { cwd: ROOT, encoding: 'utf8' });
  assert.is(p.status, 1, p.stderr);
  const sarif = JSON.parse(p.stdout) as { runs: Array<{ results: Array<{ ruleId: string }> }> };
  assert.is(sarif.runs.length, 1);
  const ids = sarif.runs[0]?.results.map((x) => x.ruleId) ?? [];
  for (const id of ['config/auto-map', 'lfs/unresolved-pointer', 'repository/custom-code', 'repository/lfs-unresolved', 'repository/summary']) assert.ok(ids.includes(id), id);
});

test.run();
