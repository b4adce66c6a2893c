#!/usr/bin/env node
// Runs every compiled uvu suite under dist/test in its own Node process (a crashing or
// kernel-sandboxed suite cannot take the others down), then prints one closing line:
// "N passed, M failed, K skipped".
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const testDir = join(root, 'dist', 'test');
const filter = process.argv[2] ? new RegExp(process.argv[2]) : null;

function collect(dir) {
  const out = [];
  for (const name of readdirSync(dir).sort()) {
    const full = join(dir, name);
    if (statSync(full).isDirectory()) {
      if (name !== 'fixtures') out.push(...collect(full));
    } else if (name.endsWith('.test.js')) out.push(full);
  }
  return out;
}

const files = collect(testDir).filter((f) => !filter || filter.test(relative(testDir, f)));
let passed = 0;
let failed = 0;
let skipped = 0;
const failedFiles = [];
for (const file of files) {
  const rel = relative(root, file);
  process.stdout.write(`\n▶ ${rel}\n`);
  const r = spawnSync(process.execPath, [file], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 15 * 60 * 1000 });
  process.stdout.write(r.stdout ?? '');
  process.stderr.write(r.stderr ?? '');
  const total = Number(/Total:\s+(\d+)/.exec(r.stdout ?? '')?.[1] ?? 0);
  const p = Number(/Passed:\s+(\d+)/.exec(r.stdout ?? '')?.[1] ?? 0);
  const s = Number(/Skipped:\s+(\d+)/.exec(r.stdout ?? '')?.[1] ?? 0);
  passed += p;
  skipped += s;
  const f = Math.max(0, total - p - s);
  if (r.status !== 0 || f > 0 || total === 0) {
    failed += Math.max(f, 1);
    failedFiles.push(rel);
  }
}
if (failedFiles.length) process.stdout.write(`\nFailed suites:\n${failedFiles.map((f) => `  ${f}`).join('\n')}\n`);
process.stdout.write(`\n${passed} passed, ${failed} failed, ${skipped} skipped\n`);
process.exit(failed > 0 ? 1 : 0);
