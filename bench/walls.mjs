#!/usr/bin/env node
// bench/walls: what the kernel walls around the unpickler worker cost.
//
//   node bench/walls.mjs [--runs 7] [--mib 100]     (after `npm run build`)
//   node bench/walls.mjs --audit                      (how sandbox-profiles/loader.json was derived)
//
// 1. Cold start-up, side by side and interleaved: a fresh pool's first call (spawn the worker, boot
//    the VM from the snapshot cache, answer a 4-byte pickle), walled (guard-exec + loader profile +
//    supervisor) vs unwalled (plain fork).
// 2. Warm safeLoad of a generated checkpoint (Debian's /usr/bin/python3 + python3-torch, temp
//    folder, deleted afterwards) through a walled and an unwalled pool: the walls must not cost
//    the warm path (tensor bytes never cross the worker; one IPC round trip per pickle).
// --audit runs every fixture under test/fixtures/scan through a walled worker. The loader profile
// denies by default with notification, so every syscall outside its list is reported by name and
// fails the call: an empty list means the profile covers what Node + isolated-vm + Pyodide need.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';

const root = new URL('..', import.meta.url).pathname;
const { UnpicklerPool, prepareUnpickler, vmUnpickle } = await import(join(root, 'dist/src/unpickler/index.js'));
const { safeLoad } = await import(join(root, 'dist/src/load/safeload.js'));
const { wallsUnavailableReason } = await import(join(root, 'dist/src/unpickler/walls.js'));

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
};
const RUNS = Number(opt('runs', '7'));
const MIB = Number(opt('mib', '100'));
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const range = (xs) => `${Math.min(...xs).toFixed(0)}–${Math.max(...xs).toFixed(0)}`;

const why = wallsUnavailableReason();
if (why) {
  console.log(`walls unavailable here (${why}); nothing to compare`);
  process.exit(0);
}

if (args.includes('--audit')) {
  const files = [];
  const walk = (d) => {
    for (const n of readdirSync(d)) {
      const p = join(d, n);
      if (statSync(p).isDirectory()) walk(p);
      else files.push(p);
    }
  };
  walk(join(root, 'test/fixtures/scan'));
  const { scan } = await import(join(root, 'dist/src/scan.js'));
  const seen = new Map();
  for (const f of files) {
    const r = await scan(f);
    for (const e of r.walls?.events ?? []) seen.set(`${e.syscall} (${e.reason ?? e.action})`, f);
  }
  console.log(`${files.length} fixtures scanned behind the loader profile`);
  console.log(seen.size === 0 ? 'no call outside the profile was attempted' : [...seen].map(([k, f]) => `  ${k}   e.g. ${f}`).join('\n'));
  const { closeDefaultPool } = await import(join(root, 'dist/src/unpickler/index.js'));
  await closeDefaultPool();
  process.exit(0);
}

// ---- 1. cold start-up ------------------------------------------------------------------------
const cold = { on: [], off: [], onBoot: [], offBoot: [] };
await prepareUnpickler(new UnpicklerPool({ walls: 'on' })).catch(() => {}); // snapshot present
for (let i = 0; i < RUNS; i++) {
  for (const mode of i % 2 ? ['off', 'on'] : ['on', 'off']) {
    const pool = new UnpicklerPool({ walls: mode });
    const t = performance.now();
    const r = await prepareUnpickler(pool);
    cold[mode].push(performance.now() - t);
    cold[`${mode}Boot`].push(r.boot?.ms ?? 0);
    await pool.close();
  }
}
console.log(`cold start-up (spawn + VM boot from snapshot + first answer), median of ${RUNS}, interleaved:`);
console.log(`  unwalled (fork)              ${median(cold.off).toFixed(0)} ms  [${range(cold.off)}]  VM boot ${median(cold.offBoot)} ms`);
console.log(`  walled (guard-exec, loader)  ${median(cold.on).toFixed(0)} ms  [${range(cold.on)}]  VM boot ${median(cold.onBoot)} ms`);
console.log(`  cost of the walls            ${(median(cold.on) - median(cold.off)).toFixed(0)} ms`);

// ---- 2. warm safeLoad ------------------------------------------------------------------------
const dir = mkdtempSync(join(tmpdir(), 'mg-bench-walls-'));
try {
  const file = join(dir, 'checkpoint.pt');
  const gen = `
import torch, sys
torch.manual_seed(0)
n = int(sys.argv[2]) * 1024 * 1024 // 4 // 64
torch.save({'model': {f'layer.{i}.weight': torch.randn(n) for i in range(64)}, 'step': 1000}, sys.argv[1])
`;
  const g = spawnSync('/usr/bin/python3', ['-c', gen, file, String(MIB)], { encoding: 'utf8' });
  if (g.status !== 0) throw new Error(`generator failed: ${g.stderr}`);
  const pools = { on: new UnpicklerPool({ walls: 'on' }), off: new UnpicklerPool({ walls: 'off' }) };
  const warm = { on: [], off: [] };
  const vm = { on: [], off: [] };
  for (const m of ['on', 'off']) {
    await safeLoad(file, { pool: pools[m] });
    await vmUnpickle(Uint8Array.of(0x80, 2, 0x4e, 0x2e), { pool: pools[m] });
  }
  for (let i = 0; i < RUNS; i++) {
    for (const m of i % 2 ? ['off', 'on'] : ['on', 'off']) {
      globalThis.gc?.();
      let t = performance.now();
      const r = await safeLoad(file, { pool: pools[m] });
      warm[m].push(performance.now() - t);
      if (r.tensors.size !== 64) throw new Error('unexpected load');
      t = performance.now();
      await vmUnpickle(Uint8Array.of(0x80, 2, 0x4e, 0x2e), { pool: pools[m] });
      vm[m].push(performance.now() - t);
    }
  }
  await pools.on.close();
  await pools.off.close();
  console.log(`\nwarm safeLoad of a ${MIB} MiB checkpoint (64 tensors), median of ${RUNS}, interleaved:`);
  console.log(`  VM worker unwalled   ${median(warm.off).toFixed(1)} ms  [${range(warm.off)}]   one VM round trip ${median(vm.off).toFixed(2)} ms`);
  console.log(`  VM worker walled     ${median(warm.on).toFixed(1)} ms  [${range(warm.on)}]   one VM round trip ${median(vm.on).toFixed(2)} ms`);
  console.log(`  ratio walled/unwalled ${(median(warm.on) / median(warm.off)).toFixed(3)}`);
  console.log('  (the scan inside safeLoad uses the process-wide pool, walled by default in both rows)');
} finally {
  rmSync(dir, { recursive: true, force: true });
  const { closeDefaultPool } = await import(join(root, 'dist/src/unpickler/index.js'));
  await closeDefaultPool();
}
