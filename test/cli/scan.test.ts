import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, createWriteStream, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { once } from 'node:events';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import Ajv04Module from 'ajv-draft-04';
import { CLI, ROOT, SCAN_FIXTURES } from '../helpers/fixtures.js';
import { HANG_GUARD_MS } from '../helpers/budget.js';
import { DEFAULT_WASM_MAX_PAGES } from '../../src/unpickler/assets.js';
import { snapshotIntact } from '../../src/unpickler/snapshot.js';
import { expectedSnapshotPath } from '../../src/unpickler/walls.js';

function guard(...args: string[]) {
  return spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', cwd: ROOT });
}

const SAFE = join(SCAN_FIXTURES, 'real/torch_state_dict.pt');
const MAL = join(SCAN_FIXTURES, 'bypass/gadget_runpy_run_code.pkl');
const SUS = join(SCAN_FIXTURES, 'bypass/unknown_class.pkl');

test('exits 0 on a clean file and says what safe rests on', () => {
  const r = guard('scan', SAFE);
  assert.is(r.status, 0, r.stderr);
  assert.match(r.stdout, /SAFE .*safe: only allowlisted globals/);
});

test('exits 1 when a file reaches --fail-on (default suspicious)', () => {
  assert.is(guard('scan', MAL).status, 1);
  assert.is(guard('scan', SUS).status, 1);
  assert.is(guard('scan', '--fail-on', 'malicious', SUS).status, 0);
  assert.is(guard('scan', '--fail-on', 'malicious', MAL).status, 1);
});

test('exits 2 on usage and I/O errors with a message that suggests the fix', () => {
  const bad = guard('scan', '--fial-on', 'malicious', SAFE);
  assert.is(bad.status, 2);
  assert.match(bad.stderr, /unknown option `--fial-on`; did you mean `--fail-on`\?/);
  const missing = guard('scan', join(SCAN_FIXTURES, 'nope.pt'));
  assert.is(missing.status, 2);
  assert.match(missing.stderr, /NOT_FOUND|ENOENT/);
  assert.is(guard('scan', '--format', 'xml', SAFE).status, 2);
});

test('exits 2 for an unreadable archive even with --fail-on malicious', () => {
  const r = guard('scan', '--fail-on', 'malicious', join(ROOT, '..', 'shared', 'corpus', 'picklescan', 'benign_password_protected.zip'));
  if (!existsSync(join(ROOT, '..', 'shared', 'corpus', 'picklescan'))) return;
  assert.is(r.status, 2);
});

test('--format json follows the documented contract', () => {
  const r = guard('scan', '--format', 'json', MAL, SAFE);
  const j = JSON.parse(r.stdout) as {
    tool: { name: string; version: string };
    files: Array<{ path: string; format: string; verdict: string; findings: Array<{ rule: string; severity: string; message: string; location?: { member?: string; offset?: number }; evidence?: string }> }>;
    summary: Record<string, unknown>;
  };
  assert.is(j.tool.name, 'modelguard');
  assert.type(j.tool.version, 'string');
  assert.equal(j.files.map((f) => f.path), [MAL, SAFE]);
  assert.equal(j.files.map((f) => f.verdict), ['malicious', 'safe']);
  const f = j.files[0]?.findings[0];
  assert.ok(f);
  assert.is(f.rule, 'pickle/dangerous-global');
  assert.ok(['info', 'low', 'medium', 'high', 'critical'].includes(f.severity));
  assert.type(f.location?.offset, 'number');
  assert.match(f.evidence ?? '', /runpy\._run_code\('echo modelguard-fixture'\)/);
  assert.type(j.summary, 'object');
});

type Validator = ((d: unknown) => boolean) & { errors?: unknown[] | null };

function sarifValidator(): Validator {
  const schema = JSON.parse(readFileSync(join(ROOT, 'node_modules/@microsoft/jest-sarif/lib/schemas/sarif-2.1.0-rtm.5.json'), 'utf8')) as object;
  const Ajv04 = ((Ajv04Module as unknown as { default?: unknown }).default ?? Ajv04Module) as new (o: object) => { compile(s: object): Validator };
  // The official schema is draft-04 and its language-tag pattern is not valid with the `u` flag.
  const ajv = new Ajv04({ strict: false, validateFormats: false, unicodeRegExp: false });
  return ajv.compile(schema);
}

test('--format sarif validates against the SARIF 2.1.0 schema, one result per finding', () => {
  const dir = join(SCAN_FIXTURES, 'attack');
  const r = guard('scan', '--format', 'sarif', dir);
  const sarif = JSON.parse(r.stdout) as { version: string; runs: Array<{ results: Array<{ ruleId: string; locations: Array<{ physicalLocation: { artifactLocation: { uri: string } } }> }> }> };
  const validate = sarifValidator();
  assert.ok(validate(sarif), JSON.stringify(validate.errors?.slice(0, 3)));
  assert.is(sarif.version, '2.1.0');
  assert.is(sarif.runs.length, 1);
  const json = JSON.parse(guard('scan', '--format', 'json', dir).stdout) as { files: Array<{ findings: unknown[] }>; repository?: { findings: unknown[] } };
  const count = json.files.reduce((n, f) => n + f.findings.length, 0) + (json.repository?.findings.length ?? 0);
  assert.is(sarif.runs[0]?.results.length, count);
  assert.ok(sarif.runs[0]?.results.every((x) => x.locations[0]?.physicalLocation.artifactLocation.uri.startsWith('test/fixtures/scan/attack')));
});

test('--output writes the report atomically', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mg-'));
  try {
    const out = join(dir, 'r.json');
    const r = guard('scan', '--format', 'json', '--output', out, SAFE);
    assert.is(r.status, 0);
    assert.is(r.stdout, '');
    assert.is((JSON.parse(readFileSync(out, 'utf8')) as { files: unknown[] }).files.length, 1);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('guard with no command prints usage and exits 2; unknown commands exit 2', () => {
  assert.is(guard().status, 2);
  const r = guard('scna');
  assert.is(r.status, 2);
  assert.match(r.stderr, /unknown command/);
});

/* ---- issue 13 point 4: faults are environment errors, not verdicts ---------------------------- */

const SEVEN_PICKLE = Buffer.from([0x80, 2, 0x4b, 7, 0x2e]);

function guardEnv(env: Record<string, string>, ...args: string[]) {
  return spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', cwd: ROOT, env: { ...process.env, ...env }, timeout: HANG_GUARD_MS });
}

/** Every path under `dir` (files and folders), relative. */
function tree(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    out.push(e.name);
    if (e.isDirectory()) out.push(...tree(join(dir, e.name)).map((n) => `${e.name}/${n}`));
  }
  return out;
}

test('an unusable cache folder falls back to a private temporary one, said once, and the verdict stays safe', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mg-cache-fault-'));
  try {
    // A regular file where a folder should be: mkdir fails (ENOTDIR) even for root.
    writeFileSync(join(dir, 'not-a-folder'), '');
    const tmp = join(dir, 'tmp');
    mkdirSync(tmp);
    const r = guardEnv({ MODELGUARD_CACHE_DIR: join(dir, 'not-a-folder', 'modelguard'), TMPDIR: tmp }, 'scan', SAFE);
    assert.is(r.error, undefined, 'hang guard');
    assert.is(r.status, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /SAFE .*safe: only allowlisted globals/);
    assert.is(r.stderr.match(/is not usable/g)?.length, 1, r.stderr);
    assert.match(r.stderr, /not-a-folder\/modelguard is not usable \(ENOTDIR[^)]*\); using a private temporary one/);
    assert.equal(tree(tmp), [], 'the private cache folder is removed at exit');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a damaged snapshot is rebuilt by the command that finds it, before use (not by a builder that dies with it)', () => {
  const cache = mkdtempSync(join(tmpdir(), 'mg-snap-fault-'));
  try {
    const snap = expectedSnapshotPath(cache, DEFAULT_WASM_MAX_PAGES);
    assert.ok(snap);
    writeFileSync(snap, Buffer.concat([Buffer.from('MGSNAP2\0', 'latin1'), Buffer.alloc(4096, 0xa5)]));
    assert.not.ok(snapshotIntact(snap));
    const r = guardEnv({ MODELGUARD_CACHE_DIR: cache }, 'scan', SAFE);
    assert.is(r.error, undefined, 'hang guard');
    assert.is(r.status, 0, r.stdout + r.stderr);
    assert.ok(snapshotIntact(snap), 'the snapshot left by the run is intact');
    // Issue 15: the seconds this takes are said on stderr, step by step; stdout is the report alone.
    assert.match(r.stderr, /modelguard: the unpickler's Pyodide snapshot in the cache is damaged: building it again/);
    assert.match(r.stderr, /modelguard: {3}\[\d+\.\d s\] taking the memory snapshot/);
    assert.match(r.stderr, /modelguard: the unpickler's snapshot is ready \(\d+\.\d s\)/);
    assert.not.match(r.stdout, /first use/);
    assert.equal(readdirSync(cache).filter((f) => f.endsWith('.tmp')), []);
  } finally {
    rmSync(cache, { recursive: true, force: true });
  }
});

test('an unreadable subfolder is an error finding and the rest of the tree is still scanned', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mg-walk-fault-'));
  try {
    chmodSync(dir, 0o755);
    mkdirSync(join(dir, 'ok'));
    mkdirSync(join(dir, 'locked'));
    for (const f of ['ok/a.pkl', 'locked/b.pkl', 'z.pkl']) writeFileSync(join(dir, f), SEVEN_PICKLE, { mode: 0o644 });
    chmodSync(join(dir, 'locked'), 0);
    // Root reads any folder: drop to an unprivileged user for the scan (setpriv, util-linux).
    const asUser = process.getuid?.() === 0 ? ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups'] : [];
    const argv = [...asUser, process.execPath, CLI, 'scan', '--fast', '--format', 'json', dir];
    const r = spawnSync(argv[0] as string, argv.slice(1), { encoding: 'utf8', cwd: ROOT, timeout: HANG_GUARD_MS });
    assert.is(r.error, undefined, String(r.error));
    const j = JSON.parse(r.stdout) as { files: Array<{ path: string; verdict: string; findings: Array<{ rule: string; message: string }> }> };
    const byPath = new Map(j.files.map((f) => [f.path.slice(dir.length + 1), f]));
    assert.equal([...byPath.keys()], ['locked', 'ok/a.pkl', 'z.pkl']);
    assert.is(byPath.get('locked')?.verdict, 'error');
    assert.equal(byPath.get('locked')?.findings.map((f) => f.rule), ['walk/unreadable']);
    assert.match(byPath.get('locked')?.findings[0]?.message ?? '', /EACCES/);
    assert.is(byPath.get('ok/a.pkl')?.verdict, 'safe');
    assert.is(byPath.get('z.pkl')?.verdict, 'safe');
    assert.is(r.status, 1, 'an error verdict reaches --fail-on suspicious');
  } finally {
    chmodSync(join(dir, 'locked'), 0o700);
    rmSync(dir, { recursive: true, force: true });
  }
});

/** A gzip'd pickle whose one BINBYTES holds `mib` MiB of zeros: inflated to a temp file before it is judged. */
async function writeGzipPickle(path: string, mib: number): Promise<void> {
  const gz = createGzip({ level: 1 });
  const done = pipeline(gz, createWriteStream(path));
  const head = Buffer.alloc(11);
  head.set([0x80, 4, 0x8e]);
  head.writeBigUInt64LE(BigInt(mib) << 20n, 3);
  gz.write(head);
  const chunk = Buffer.alloc(1 << 20);
  for (let i = 0; i < mib; i++) if (!gz.write(chunk)) await once(gz, 'drain');
  gz.end(Buffer.from('.'));
  await done;
}

/** Starts a folder scan, waits until it is inflating a stream into its temp folder, sends `sig`. */
async function interruptedScan(sig: 'SIGINT' | 'SIGTERM', format: string, output?: string) {
  const dir = mkdtempSync(join(tmpdir(), 'mg-interrupt-'));
  const models = join(dir, 'models');
  const tmp = join(dir, 'tmp');
  mkdirSync(models);
  mkdirSync(tmp);
  writeFileSync(join(models, 'a.pkl'), SEVEN_PICKLE);
  await writeGzipPickle(join(models, 'b0.pkl.gz'), 200);
  for (let i = 1; i < 6; i++) copyFileSync(join(models, 'b0.pkl.gz'), join(models, `b${i}.pkl.gz`));
  const args = [CLI, 'scan', '--fast', '--format', format, ...(output ? ['--output', join(dir, output)] : []), models];
  const child = spawn(process.execPath, args, { cwd: ROOT, env: { ...process.env, TMPDIR: tmp }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((res) => child.once('exit', (code, signal) => res({ code, signal })));
  let inflating = false;
  let exitedEarly = false;
  void exited.then(() => (exitedEarly = !inflating));
  // Poll (bounded by the hang guard) until an inflated stream of > 1 MiB exists in the temp folder.
  const deadline = Date.now() + HANG_GUARD_MS;
  while (!inflating && !exitedEarly && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 20));
    inflating = tree(tmp).some((p) => {
      try {
        return statSync(join(tmp, p)).isFile() && statSync(join(tmp, p)).size > 1 << 20;
      } catch {
        return false;
      }
    });
  }
  if (inflating) child.kill(sig);
  const guard = setTimeout(() => child.kill('SIGKILL'), HANG_GUARD_MS);
  const result = await exited;
  clearTimeout(guard);
  const report = output && existsSync(join(dir, output)) ? readFileSync(join(dir, output), 'utf8') : stdout;
  const left = tree(tmp);
  rmSync(dir, { recursive: true, force: true });
  return { ...result, inflating, report, stderr, left, models };
}

test('SIGINT during a folder scan: partial JSON report (interrupted: true) to --output, temp files removed, exit 130', async () => {
  const r = await interruptedScan('SIGINT', 'json', 'report.json');
  assert.ok(r.inflating, `the scan never reached an inflated stream: ${r.stderr}`);
  assert.is(r.code, 130, r.stderr);
  const j = JSON.parse(r.report) as { interrupted?: boolean; files: Array<{ path: string; verdict: string }>; summary: { files: number } };
  assert.is(j.interrupted, true);
  assert.ok(j.files.length >= 1 && j.files.length < 7, `${j.files.length} files`);
  assert.equal(j.files[0], { ...j.files[0], path: join(r.models, 'a.pkl'), verdict: 'safe' });
  assert.is(j.summary.files, j.files.length);
  assert.equal(r.left, [], 'no temp file or folder left behind');
  assert.match(r.stderr, /interrupted by SIGINT/);
});

test('SIGTERM during a folder scan: partial SARIF report on stdout (valid, not successful), temp files removed, exit 143', async () => {
  const r = await interruptedScan('SIGTERM', 'sarif');
  assert.ok(r.inflating, `the scan never reached an inflated stream: ${r.stderr}`);
  assert.is(r.code, 143, r.stderr);
  const sarif = JSON.parse(r.report) as { runs: Array<{ invocations: Array<{ executionSuccessful: boolean }>; properties: { interrupted?: boolean } }> };
  const validate = sarifValidator();
  assert.ok(validate(sarif), JSON.stringify(validate.errors?.slice(0, 3)));
  assert.is(sarif.runs[0]?.invocations[0]?.executionSuccessful, false);
  assert.is(sarif.runs[0]?.properties.interrupted, true);
  assert.equal(r.left, []);
});

// ----- issue 12 -----

/** A protocol-2 pickle that calls os.system (harmless payload; never run by the scanner). */
const OS_SYSTEM = Buffer.from("\x80\x02cos\nsystem\n(S'echo modelguard-fixture'\ntR.", 'latin1');

test('--allow cannot clear a dangerous capability, and warns that it would match one', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mg-allow-'));
  try {
    const file = join(dir, 'payload.pkl');
    writeFileSync(file, OS_SYSTEM);
    for (const pattern of ['os.*', 'os.system', 'posix.*']) {
      const r = guard('scan', '--format', 'json', '--allow', pattern, file);
      assert.is(r.status, 1, `${pattern}: ${r.stderr}`);
      const j = JSON.parse(r.stdout) as { files: Array<{ verdict: string; findings: Array<{ message: string; verdict: string }> }> };
      assert.is(j.files[0]?.verdict, 'malicious', pattern);
      assert.ok(j.files[0]?.findings.some((f) => f.verdict === 'malicious' && f.message.includes(`--allow ${pattern} does not clear a dangerous capability`)), `${pattern}: the report says so`);
      if (pattern !== 'posix.*') assert.match(r.stderr, new RegExp(`warning: --allow ${pattern.replace(/[.*]/g, '\\$&')} matches dangerous names`), pattern);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('not flagged: --allow of a harmless class clears it, with no warning', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mg-allow-'));
  try {
    const file = join(dir, 'cfg.pkl');
    writeFileSync(file, Buffer.from("\x80\x02cmypkg.config\nConfig\n)\x81}b.", 'latin1'));
    assert.is(guard('scan', file).status, 1, 'unknown without --allow');
    const r = guard('scan', '--allow', 'mypkg.*', file);
    assert.is(r.status, 0, r.stdout + r.stderr);
    assert.not.match(r.stderr, /warning/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** Real files from real PyTorch (python3-torch), written at test time. */
const TORCH_WRITER = `
import sys, torch
d = sys.argv[1]
torch.manual_seed(0)
m = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2), torch.nn.ReLU(), torch.nn.Linear(2, 2))
opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
s = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=10)
opt.step(); s.step()
torch.save(s.state_dict(), d + '/onecycle.pt')
torch.save({'model': m.state_dict(), 'optimizer': opt.state_dict(), 'scheduler': s.state_dict(), 'epoch': 3}, d + '/checkpoint.pt')
torch.save(m, d + '/whole_module.pt')
`;

test('real PyTorch: OneCycleLR.state_dict() (a bound method through getattr) is not malicious; the whole module names each class once', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mg-torch-'));
  try {
    const w = spawnSync('/usr/bin/python3', ['-c', TORCH_WRITER, dir], { encoding: 'utf8' });
    assert.is(w.status, 0, w.stderr);
    const r = guard('scan', '--format', 'json', join(dir, 'onecycle.pt'), join(dir, 'checkpoint.pt'), join(dir, 'whole_module.pt'));
    const j = JSON.parse(r.stdout) as { files: Array<{ path: string; verdict: string; findings: Array<{ rule: string; message: string; verdict: string }> }> };
    const [onecycle, ckpt, whole] = j.files;
    assert.is(onecycle?.verdict, 'safe', JSON.stringify(onecycle?.findings));
    assert.is(ckpt?.verdict, 'safe', JSON.stringify(ckpt?.findings));
    assert.is(whole?.verdict, 'suspicious', 'a whole module runs library code: suspicious, never malicious');
    for (const cls of ['torch.nn.modules.container.Sequential', 'torch.nn.modules.linear.Linear', 'torch.nn.modules.activation.ReLU']) {
      const n = whole?.findings.filter((f) => f.message.includes(`\`${cls}`)).length;
      assert.is(n, 1, `${cls} reported once: ${JSON.stringify(whole?.findings.map((f) => f.message.slice(0, 100)))}`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('flagged twin: a getattr that is not a recognised bound method stays malicious', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mg-bound-'));
  try {
    const file = join(dir, 'sched.pkl');
    // getattr(<OneCycleLR instance>, 'load_state_dict'): not a listed method.
    writeFileSync(file, Buffer.from("\x80\x02cbuiltins\ngetattr\n(ctorch.optim.lr_scheduler\nOneCycleLR\n)\x81}bS'load_state_dict'\ntR.", 'latin1'));
    const r = guard('scan', '--format', 'json', file);
    assert.is((JSON.parse(r.stdout) as { files: Array<{ verdict: string }> }).files[0]?.verdict, 'malicious');
    // getattr memoized, used once for a real bound method, then handed to _rebuild_from_type_v2
    // (allowlisted, and it calls its first argument): getattr(object, '__subclasses__') would run.
    const bound = "(ctorch.optim.lr_scheduler\nOneCycleLR\n)\x81}bS'_annealing_cos'\ntR";
    const smuggled = join(dir, 'smuggled.pkl');
    writeFileSync(smuggled, Buffer.from(`\x80\x02(cbuiltins\ngetattr\nq\x00${bound}ctorch._tensor\n_rebuild_from_type_v2\n(h\x00ctorch\nTensor\n(cbuiltins\nobject\nS'__subclasses__'\nt}tRt.`, 'latin1'));
    const rs = guard('scan', '--format', 'json', smuggled);
    assert.is((JSON.parse(rs.stdout) as { files: Array<{ verdict: string }> }).files[0]?.verdict, 'malicious', rs.stdout);
    // Not flagged: the same memoized getattr reused for a second real bound method.
    const ok = join(dir, 'ok.pkl');
    writeFileSync(ok, Buffer.from(`\x80\x02(cbuiltins\ngetattr\nq\x00${bound}h\x00${bound.replace('_annealing_cos', '_annealing_linear')}t.`, 'latin1'));
    const rok = guard('scan', ok);
    assert.is(rok.status, 0, rok.stdout);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
