#!/usr/bin/env node
// bench/run: wall time of a PyTorch CPU inference and of /bin/true, bare against `guard run`,
// interleaved in one process so both sides see the same machine state. Prints medians, min and
// the ratio (of medians, and of minima, which a busy machine disturbs less); `--reps N`
// (default 9), `--json` for machine-readable output.
//   guard CLI   `bin/guard run -- CMD`, the installed command (includes Node start-up)
//   run() API   `run(CMD)` from an already-running Node process (library use)
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';

const root = new URL('..', import.meta.url).pathname;
const cli = join(root, 'bin', 'guard');
const { run } = await import(join(root, 'dist', 'src', 'index.js'));
const reps = Number(process.argv[process.argv.indexOf('--reps') + 1] || 9) || 9;
const asJson = process.argv.includes('--json');
const PY = '/usr/bin/python3';

const dir = mkdtempSync(join(tmpdir(), 'mg-bench-run-'));
const script = join(dir, 'infer.py');
writeFileSync(script, `import torch
torch.manual_seed(0)
m = torch.nn.Sequential(torch.nn.Linear(512, 2048), torch.nn.ReLU(), torch.nn.Linear(2048, 2048), torch.nn.ReLU(), torch.nn.Linear(2048, 10))
x = torch.randn(256, 512)
with torch.no_grad():
    for _ in range(20):
        y = m(x)
print("sum=%.4f" % y.sum().item())
`);

function timeSpawn(cmd, args) {
  const t = performance.now();
  const r = spawnSync(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const ms = performance.now() - t;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  return ms;
}
async function timeApi(cmd) {
  const t = performance.now();
  const r = await run(cmd, { profile: 'inference', stdio: 'pipe' });
  const ms = performance.now() - t;
  if (r.exitCode !== 0) throw new Error(`run(${cmd.join(' ')}) exited ${r.exitCode}: ${r.stderr}`);
  if (r.summary.denied !== 0) throw new Error(`denials during the benchmark: ${JSON.stringify(r.summary)}`);
  return ms;
}
const median = (a) => [...a].sort((x, y) => x - y)[a.length >> 1];
const min = (a) => Math.min(...a);

async function bench(name, cmd) {
  const bare = [], guardCli = [], guardApi = [];
  // warm-up: page cache, Python bytecode, libtorch
  timeSpawn(cmd[0], cmd.slice(1));
  timeSpawn(cli, ['run', '--profile', 'inference', '--', ...cmd]);
  await timeApi(cmd);
  for (let i = 0; i < reps; i++) {
    bare.push(timeSpawn(cmd[0], cmd.slice(1)));
    guardCli.push(timeSpawn(cli, ['run', '--profile', 'inference', '--', ...cmd]));
    guardApi.push(await timeApi(cmd));
  }
  return {
    name,
    reps,
    bareMs: { median: median(bare), min: min(bare) },
    guardCliMs: { median: median(guardCli), min: min(guardCli) },
    guardApiMs: { median: median(guardApi), min: min(guardApi) },
    ratioCli: median(guardCli) / median(bare),
    ratioApi: median(guardApi) / median(bare),
    ratioCliMin: min(guardCli) / min(bare),
    // Each rep's guard run against the bare run just before it, so slow drifts of the machine cancel.
    ratioCliPaired: median(guardCli.map((g, i) => g / bare[i])),
    ratioApiPaired: median(guardApi.map((g, i) => g / bare[i])),
    ratioApiMin: min(guardApi) / min(bare),
    spreadBarePct: ((Math.max(...bare) - min(bare)) / median(bare)) * 100,
  };
}

const results = [await bench('torch CPU inference', [PY, script]), await bench('/bin/true', ['/bin/true'])];
if (asJson) {
  process.stdout.write(`${JSON.stringify(results, null, 2)}\n`);
} else {
  const f = (x) => x.toFixed(1).padStart(8);
  process.stdout.write(`bench/run (${reps} interleaved reps, medians in ms; min in brackets)\n`);
  for (const r of results) {
    process.stdout.write(`${r.name.padEnd(22)} bare ${f(r.bareMs.median)} [${r.bareMs.min.toFixed(1)}]  guard CLI ${f(r.guardCliMs.median)} [${r.guardCliMs.min.toFixed(1)}] ×${r.ratioCli.toFixed(3)}  run() API ${f(r.guardApiMs.median)} [${r.guardApiMs.min.toFixed(1)}] ×${r.ratioApi.toFixed(3)}  (bare spread ${r.spreadBarePct.toFixed(0)}%; ratios of minima: CLI ×${r.ratioCliMin.toFixed(3)}, API ×${r.ratioApiMin.toFixed(3)}; paired medians: CLI ×${r.ratioCliPaired.toFixed(3)}, API ×${r.ratioApiPaired.toFixed(3)})\n`);
  }
}
