#!/usr/bin/env node
// bench/scan: whole-process `guard scan` time on a ~400 MiB checkpoint against a ~4 MiB one with
// the same pickle, side by side in one run. Goal: ratio ≤ 1.3 (tensor bytes are never read).
// Inputs are generated into bench/.data (git-ignored) with Debian's python3-torch.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const data = join(root, 'bench', '.data');
mkdirSync(data, { recursive: true });
const big = join(data, 'ckpt-400m.pt');
const small = join(data, 'ckpt-4m.pt');
for (const [f, mib] of [[big, 400], [small, 4]]) {
  if (!existsSync(f)) execFileSync('/usr/bin/python3', [join(root, 'bench', 'make_checkpoint.py'), f, String(mib)], { stdio: 'inherit' });
}
const cli = join(root, 'dist', 'src', 'cli', 'main.js');
const runs = Number(process.env.RUNS ?? 11);
const args = process.argv.includes('--fast') ? ['--fast'] : [];

function once(file) {
  const t = process.hrtime.bigint();
  const r = spawnSync(process.execPath, [cli, 'scan', ...args, file], { encoding: 'utf8' });
  const ms = Number(process.hrtime.bigint() - t) / 1e6;
  if (r.status !== 0) throw new Error(`guard scan ${file} exited ${r.status}: ${r.stdout}${r.stderr}`);
  return ms;
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
once(small);
once(big);
const tb = [];
const ts = [];
// Interleaved so machine noise hits both sides alike.
for (let i = 0; i < runs; i++) {
  ts.push(once(small));
  tb.push(once(big));
}
const mb = median(tb);
const msm = median(ts);
console.log(`guard scan${args.length ? ' ' + args.join(' ') : ''}, ${runs} runs each, page cache warm`);
console.log(`  ${(statSync(small).size / 2 ** 20).toFixed(1)} MiB checkpoint: median ${msm.toFixed(1)} ms (min ${Math.min(...ts).toFixed(1)}, max ${Math.max(...ts).toFixed(1)})`);
console.log(`  ${(statSync(big).size / 2 ** 20).toFixed(1)} MiB checkpoint: median ${mb.toFixed(1)} ms (min ${Math.min(...tb).toFixed(1)}, max ${Math.max(...tb).toFixed(1)})`);
console.log(`  ratio big/small: ${(mb / msm).toFixed(3)} (goal ≤ 1.3)`);
