#!/usr/bin/env node
// Runs every compiled uvu suite under dist/test in its own Node process (a crashing or
// kernel-sandboxed suite cannot take the others down), several at once, then prints one closing
// line: "N passed, M failed, K skipped".
//
// Suites run in a pool sized to the machine's cores (MODELGUARD_TEST_JOBS overrides), so `npm test`
// stays fast on 2 cores; each suite's output is held and printed whole when it ends, never
// interleaved. A suite that must have the machine to itself (it measures peak memory of big
// inputs, or probes a race) runs alone after the others: it is listed in ALONE below, or its source
// carries a line `// run-tests: alone (why)`. Each suite gets its own TMPDIR, so a suite that
// checks it left no temp file is not confused by another suite's work in progress; what a suite
// leaves there is named, then removed.
import { spawn } from 'node:child_process';
import { availableParallelism, tmpdir } from 'node:os';
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const testDir = join(root, 'dist', 'test');
const filter = process.argv[2] ? new RegExp(process.argv[2]) : null;

/** Hang guard per suite: a suite still running after this is killed and counted failed. */
const SUITE_HANG_GUARD_MS = 60 * 60 * 1000; // under heavy load a big suite has taken 10 min

/** Suites (paths under dist/test) that run alone, and why. */
const ALONE = new Map([
  // Peak RSS bounds of multi-hundred-MB hostile inputs (and the 4.5 GB sparse tensor): two of
  // these beside other suites could push a small machine into swap or its OOM killer.
  ['hostile.test.js', 'measures peak memory of big hostile inputs'],
]);
/**
 * Folders (under dist/test) whose suites need something `npm test` does not make, so they run only
 * when a filter names them: container/ needs the test image `npm run test:container` builds, and
 * that script runs them with the filter '^container/'.
 */
const OWN_RUNNER = ['container/'];
const ALONE_MARK = /^\/\/ run-tests: alone\b(.*)$/m;

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

function aloneReason(file) {
  const rel = relative(testDir, file);
  if (ALONE.has(rel)) return ALONE.get(rel);
  const m = ALONE_MARK.exec(readFileSync(file, 'utf8').slice(0, 4096));
  return m ? m[1].trim() || 'marked alone' : undefined;
}

function jobs() {
  const env = Number(process.env.MODELGUARD_TEST_JOBS);
  if (Number.isInteger(env) && env > 0) return env;
  return Math.max(1, availableParallelism());
}

/** Runs one suite; resolves with its held output and counts. */
function runSuite(file) {
  const rel = relative(root, file);
  const started = Date.now();
  return new Promise((resolve) => {
    const tmp = mkdtempSync(join(tmpdir(), 'mg-suite-'));
    // Sticky and world-writable like /tmp: suites run commands as other users (nobody) that make
    // their own temp folders here.
    chmodSync(tmp, 0o1777);
    const child = spawn(process.execPath, [file], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, TMPDIR: tmp } });
    const out = [];
    const err = [];
    child.stdout.on('data', (d) => out.push(d));
    child.stderr.on('data', (d) => err.push(d));
    let timedOut = false;
    const guard = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, SUITE_HANG_GUARD_MS);
    child.on('close', (status, signal) => {
      clearTimeout(guard);
      const stdout = Buffer.concat(out).toString('utf8');
      const stderr = Buffer.concat(err).toString('utf8');
      const total = Number(/Total:\s+(\d+)/.exec(stdout)?.[1] ?? 0);
      const passed = Number(/Passed:\s+(\d+)/.exec(stdout)?.[1] ?? 0);
      const skipped = Number(/Skipped:\s+(\d+)/.exec(stdout)?.[1] ?? 0);
      const f = Math.max(0, total - passed - skipped);
      const ok = status === 0 && f === 0 && total > 0;
      let left = [];
      try {
        left = readdirSync(tmp);
      } catch {
        /* gone */
      }
      rmSync(tmp, { recursive: true, force: true });
      resolve({ rel, stdout, stderr, left, passed, skipped, failed: ok ? 0 : Math.max(f, 1), seconds: (Date.now() - started) / 1000, status, signal, timedOut });
    });
  });
}

function print(r) {
  const how = r.timedOut ? `, killed after ${SUITE_HANG_GUARD_MS / 60000} min` : r.signal ? `, ended by ${r.signal}` : '';
  process.stdout.write(`\n▶ ${r.rel} (${r.seconds.toFixed(1)} s${how})\n${r.stdout}`);
  if (r.left.length > 0) process.stdout.write(`  note: left in its TMPDIR: ${r.left.slice(0, 5).join(', ')}${r.left.length > 5 ? ', …' : ''}\n`);
  if (r.stderr) process.stderr.write(r.stderr);
}

const files = collect(testDir).filter((f) => {
  const rel = relative(testDir, f);
  return filter ? filter.test(rel) : !OWN_RUNNER.some((dir) => rel.startsWith(dir));
});
const shared = [];
const alone = [];
for (const f of files) (aloneReason(f) ? alone : shared).push(f);

const results = [];
const width = Math.min(jobs(), Math.max(1, shared.length));
let next = 0;
async function lane() {
  while (next < shared.length) {
    const r = await runSuite(shared[next++]);
    print(r);
    results.push(r);
  }
}
const t0 = Date.now();
await Promise.all(Array.from({ length: width }, lane));
for (const f of alone) {
  process.stdout.write(`\n(alone: ${aloneReason(f)})`);
  const r = await runSuite(f);
  print(r);
  results.push(r);
}

const passed = results.reduce((n, r) => n + r.passed, 0);
const skipped = results.reduce((n, r) => n + r.skipped, 0);
const failed = results.reduce((n, r) => n + r.failed, 0);
const failedFiles = results.filter((r) => r.failed > 0).map((r) => r.rel).sort();
if (failedFiles.length) process.stdout.write(`\nFailed suites:\n${failedFiles.map((f) => `  ${f}`).join('\n')}\n`);
process.stdout.write(`\n${files.length} suites, ${width} at a time (+${alone.length} alone), ${((Date.now() - t0) / 1000).toFixed(0)} s\n`);
process.stdout.write(`\n${passed} passed, ${failed} failed, ${skipped} skipped\n`);
process.exit(failed > 0 ? 1 : 0);
