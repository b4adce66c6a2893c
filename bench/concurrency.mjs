#!/usr/bin/env node
// bench/concurrency: throughput of N concurrent scan() and safeLoad() calls on a ~4 MiB PyTorch
// checkpoint against the same calls made one at a time, in one process and one run, rounds
// interleaved. Goal: N concurrent calls ≥ 1.7× the throughput of one at a time on 2 cores (the
// process-wide pool starts one worker per core, MODELGUARD_WORKERS overrides).
//
//   npm run bench:concurrency [-- --n 8 --calls 24 --rounds 3]
//
// The input is generated into bench/.data (git-ignored) by bench/make_checkpoint.py with Debian's
// /usr/bin/python3. Workers are warm in both sides (a first concurrent round starts them).
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : dflt;
};
const cores = availableParallelism();
const N = opt('n', Math.max(4, cores * 4));
const CALLS = opt('calls', N * 3);
const ROUNDS = opt('rounds', 3);
const GOAL = cores >= 2 ? 1.7 : 1.0;

const data = join(root, 'bench', '.data');
mkdirSync(data, { recursive: true });
const file = join(data, 'ckpt-4m.pt');
if (!existsSync(file)) execFileSync('/usr/bin/python3', [join(root, 'bench', 'make_checkpoint.py'), file, '4'], { stdio: 'inherit' });

const api = await import(pathToFileURL(join(root, 'dist', 'src', 'index.js')).href);
const { defaultPool } = await import(pathToFileURL(join(root, 'dist', 'src', 'unpickler', 'pool.js')).href);

const ops = {
  scan: async () => {
    const r = await api.scan(file);
    if (r.files[0].verdict !== 'safe' || r.walls.mode !== 'walled') throw new Error(`scan: ${r.files[0].verdict}, walls ${r.walls.mode}`);
  },
  safeLoad: async () => {
    const r = await api.safeLoad(file);
    if (r.report?.walls?.mode !== 'walled') throw new Error(`safeLoad: walls ${r.report?.walls?.mode}`);
  },
};

/** Seconds for `calls` calls with at most `width` in flight. */
async function batch(op, calls, width) {
  const t = process.hrtime.bigint();
  let next = 0;
  const lane = async () => {
    while (next < calls) {
      next++;
      await op();
    }
  };
  await Promise.all(Array.from({ length: width }, lane));
  return Number(process.hrtime.bigint() - t) / 1e9;
}

const pool = defaultPool();
// Warm: the pool starts a further worker once calls have kept waiting longer than a boot takes,
// so keep N calls in flight until every worker is up (or 60 s), then warm the page cache.
for (const t0 = Date.now(); pool.workersStarted < pool.maxWorkers && Date.now() - t0 < 60_000; ) await batch(ops.scan, N, N);
for (const op of Object.values(ops)) await batch(op, N, N);
const results = {};
for (const [name, op] of Object.entries(ops)) {
  const seq = [];
  const par = [];
  for (let r = 0; r < ROUNDS; r++) {
    // Interleaved: one-at-a-time and concurrent alternate, starting side switching each round.
    if (r % 2 === 0) {
      seq.push(CALLS / (await batch(op, CALLS, 1)));
      par.push(CALLS / (await batch(op, CALLS, N)));
    } else {
      par.push(CALLS / (await batch(op, CALLS, N)));
      seq.push(CALLS / (await batch(op, CALLS, 1)));
    }
  }
  results[name] = { seq, par };
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
console.log(`concurrency: ${cores} cores, pool of at most ${pool.maxWorkers} workers (${pool.workersStarted} started), ${CALLS} calls per batch, ${ROUNDS} interleaved rounds, medians`);
let met = true;
for (const [name, { seq, par }] of Object.entries(results)) {
  const ratio = median(par) / median(seq);
  met &&= ratio >= GOAL;
  console.log(`  ${name.padEnd(9)} one at a time ${median(seq).toFixed(1)} calls/s   ${N} concurrent ${median(par).toFixed(1)} calls/s   ratio ${ratio.toFixed(2)}× (goal ≥ ${GOAL}×${ratio >= GOAL ? ', met' : ', NOT met'})`);
}
await api.closeUnpicklerPool();
console.log(met ? 'goal met' : 'goal not met');
