#!/usr/bin/env node
// bench/scan: whole-process `guard scan` against picklescan, side by side in one run, interleaved
// (each round runs every case on both tools in turn, so machine noise hits both alike):
//
//   folder   200 small models (100 torch state dicts + 100 joblib files), default scan (VM + walls)
//   single   one ~4 MiB PyTorch checkpoint, default scan
//   fast     one ~1 KB pickle, `guard scan --fast`
//
//   npm run bench:scan [-- --runs 7]
//
// picklescan runs from its source, ../shared/anchors/picklescan/src (beside the repository, or
// beside the main worktree when this is a `git worktree`; PICKLESCAN_SRC overrides), with
// Debian's /usr/bin/python3. Inputs are generated into bench/.data (git-ignored) by
// bench/make_folder.py and bench/make_checkpoint.py. guard is started as users start it: bin/guard.
// The walls are up in every guard number: the bench checks the report says `walled`.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
};
const RUNS = Number(opt('runs', process.env.RUNS ?? '7'));
const PYTHON = '/usr/bin/python3';
const GOALS = { folder: 1.0, single: 1.5, fast: 1.0 };

function picklescanSrc() {
  const candidates = [];
  if (process.env.PICKLESCAN_SRC) candidates.push(process.env.PICKLESCAN_SRC);
  candidates.push(join(root, '..', 'shared', 'anchors', 'picklescan', 'src'));
  try {
    const common = execFileSync('git', ['-C', root, 'rev-parse', '--path-format=absolute', '--git-common-dir'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    candidates.push(join(dirname(dirname(common)), 'shared', 'anchors', 'picklescan', 'src'));
  } catch {
    /* not a git checkout */
  }
  return { found: candidates.find((c) => existsSync(join(c, 'picklescan', '__main__.py'))), candidates };
}

const ps = picklescanSrc();
if (!ps.found) {
  console.error(`bench/scan: picklescan's source was not found (looked in ${ps.candidates.join(', ')}); set PICKLESCAN_SRC to its src folder`);
  process.exit(2);
}
if (spawnSync(PYTHON, ['-c', 'import torch, joblib, sklearn'], { stdio: 'ignore' }).status !== 0) {
  console.error(`bench/scan: ${PYTHON} cannot import torch, joblib and sklearn (Debian: python3-torch python3-joblib python3-sklearn), needed to generate the inputs`);
  process.exit(2);
}

// ---- inputs ---------------------------------------------------------------------------------
const data = join(root, 'bench', '.data');
mkdirSync(data, { recursive: true });
const folder = join(data, 'folder-200');
const single = join(data, 'ckpt-4m.pt');
const small = join(data, 'small-1k.pkl');
if (!existsSync(join(folder, 'sk-099.joblib'))) execFileSync(PYTHON, [join(root, 'bench', 'make_folder.py'), folder, '200'], { stdio: 'inherit' });
if (!existsSync(single)) execFileSync(PYTHON, [join(root, 'bench', 'make_checkpoint.py'), single, '4'], { stdio: 'inherit' });
if (!existsSync(small)) {
  const py = "import pickle, sys; d = {'name': 'tiny', 'weights': [float(i) / 7 for i in range(100)], 'labels': ['l%d' % i for i in range(20)]}; open(sys.argv[1], 'wb').write(pickle.dumps(d, protocol=4))";
  execFileSync(PYTHON, ['-c', py, small]);
}

// ---- runners --------------------------------------------------------------------------------
const guardBin = join(root, 'bin', 'guard');
const cases = [
  { name: 'folder', label: 'folder of 200 small models, default scan', guard: ['scan', folder], ps: folder },
  { name: 'single', label: 'one 4 MiB checkpoint, default scan', guard: ['scan', single], ps: single },
  { name: 'fast', label: '1 KB pickle, guard --fast', guard: ['scan', '--fast', small], ps: small },
];

function time(cmd, argv, env) {
  const t = process.hrtime.bigint();
  const r = spawnSync(cmd, argv, { encoding: 'utf8', env: { ...process.env, ...env }, maxBuffer: 64 * 1024 * 1024 });
  const ms = Number(process.hrtime.bigint() - t) / 1e6;
  if (r.status !== 0 && r.status !== 1) throw new Error(`${cmd} ${argv.join(' ')} exited ${r.status}: ${(r.stdout + r.stderr).slice(-2000)}`);
  return ms;
}
const runGuard = (c) => time(guardBin, c.guard);
const runPs = (c) => time(PYTHON, ['-m', 'picklescan', '-p', c.ps], { PYTHONPATH: ps.found });

// The walls are up: the JSON report of each VM case says so.
for (const c of cases.filter((x) => x.name !== 'fast')) {
  const r = spawnSync(guardBin, [...c.guard, '--format', 'json'], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  const walls = JSON.parse(r.stdout).walls;
  if (walls?.mode !== 'walled') {
    console.error(`bench/scan: ${c.name}: the VM ran without the kernel walls (${JSON.stringify(walls)}); numbers without them do not count`);
    process.exit(2);
  }
}

// Warm-up (page cache, snapshot), then interleaved rounds.
for (const c of cases) {
  runGuard(c);
  runPs(c);
}
const t = Object.fromEntries(cases.map((c) => [c.name, { guard: [], ps: [] }]));
for (let i = 0; i < RUNS; i++) {
  for (const c of cases) {
    // Alternate who goes first so neither side always follows the other's cache effects.
    if (i % 2 === 0) {
      t[c.name].guard.push(runGuard(c));
      t[c.name].ps.push(runPs(c));
    } else {
      t[c.name].ps.push(runPs(c));
      t[c.name].guard.push(runGuard(c));
    }
  }
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
};
const s = (ms) => `${(ms / 1000).toFixed(2)} s`;
console.log(`guard scan vs picklescan (${ps.found}), ${RUNS} interleaved runs each, medians, walls up`);
let allMet = true;
for (const c of cases) {
  const g = median(t[c.name].guard);
  const p = median(t[c.name].ps);
  const ratio = g / p;
  const met = ratio <= GOALS[c.name];
  allMet &&= met;
  console.log(`  ${c.label.padEnd(44)} guard ${s(g)} (min ${s(Math.min(...t[c.name].guard))})  picklescan ${s(p)}  ratio ${ratio.toFixed(2)}× (goal ≤ ${GOALS[c.name].toFixed(1)}×${met ? ', met' : ', NOT met'})`);
}
if (process.env.BENCH_JSON) writeFileSync(process.env.BENCH_JSON, JSON.stringify(t));
console.log(allMet ? 'all goals met' : 'some goals not met (see above)');
