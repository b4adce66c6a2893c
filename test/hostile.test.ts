import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { CLI, SCAN_FIXTURES, scanCases } from './helpers/fixtures.js';

// Each hostile input gets a verdict within a CPU budget and 200 MB RSS, measured on a fresh
// `guard scan` process (so the whole CLI start-up is included). CPU time, not wall-clock: a busy
// machine stretches wall time (hostile/many_items.pkl took 2,960 ms of it on a quiet 2-core
// machine, mostly the VM worker's boot), while the work done stays put. The budget is what a
// trivial pickle costs in the same run (start-up, worker boot) plus MAX_EXTRA_CPU_MS of real work.
// CPU time still swells on a saturated machine (shared caches, SMT siblings: bz2_bomb's ~1.5 s grew
// to 2.4 s at load 29 on 2 cores), so the margin is generous; what it catches is a runaway (a hang,
// quadratic work), which costs minutes, not seconds.
const MAX_EXTRA_CPU_MS = 6000;
const MAX_RSS_KB = 200 * 1024;

const probe = `
process.argv = [process.argv[0], ${JSON.stringify(CLI)}, 'scan', '--format', 'json', ...process.argv.slice(1).filter(Boolean)];
const w = process.stdout.write.bind(process.stdout);
let out = '';
process.stdout.write = (s) => { out += s; return true; };
await import(${JSON.stringify(CLI)});
await new Promise((r) => setTimeout(r, 0));
const { readdirSync, readFileSync } = await import('node:fs');
// The VM worker is a child process that is still alive (idle) at exit: read its peak RSS too.
// Every live descendant (the VM worker may sit below a launcher process).
function childPids(of = 'self') {
  const pids = [];
  let tasks = [];
  try { tasks = readdirSync('/proc/' + of + '/task'); } catch { return pids; }
  for (const t of tasks) {
    let kids = [];
    try { kids = readFileSync('/proc/' + of + '/task/' + t + '/children', 'utf8').split(/\\s+/).filter(Boolean); } catch {}
    for (const k of kids) pids.push(k, ...childPids(k));
  }
  return pids;
}
function childCpuMs() {
  let ms = 0;
  for (const pid of childPids()) {
    try {
      const st = readFileSync('/proc/' + pid + '/stat', 'utf8');
      const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
      ms += (Number(f[11]) + Number(f[12])) * 10; // USER_HZ ticks
    } catch {}
  }
  return ms;
}
function childPeakKb() {
  let peak = 0;
  for (const pid of childPids()) {
    try { peak = Math.max(peak, Number(/VmHWM:\\s+(\\d+)/.exec(readFileSync('/proc/' + pid + '/status', 'utf8'))?.[1] ?? 0)); } catch {}
  }
  return peak;
}
process.on('exit', () => { const c = process.cpuUsage(); w(JSON.stringify({ cpuMs: (c.user + c.system) / 1000 + childCpuMs(), rss: process.resourceUsage().maxRSS, childRss: childPeakKb(), verdict: JSON.parse(out).files[0].verdict }) + '\\n'); });
`;

interface Measure {
  cpuMs: number;
  rss: number;
  childRss: number;
  verdict: string;
}

function measure(file: string, fast: boolean): Measure {
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', probe, file, fast ? '--fast' : ''], { encoding: 'utf8' });
  const line = r.stdout.trim().split('\n').pop() ?? '';
  try {
    return JSON.parse(line) as Measure;
  } catch {
    throw new Error(`no result: ${r.stdout} ${r.stderr}`);
  }
}

// The VM worker (Pyodide in an isolate) has a fixed footprint of its own; what hostile input must
// not do is grow it. Its baseline is measured on a trivial pickle in the same run.
const WORKER_GROWTH_KB = 64 * 1024;
let workerBaseline = 0;
let cpuBudget = { fast: 0, vm: 0 };
test('baseline: the VM worker footprint on a trivial pickle', () => {
  const m = measure(join(SCAN_FIXTURES, 'benign/memo_reuse.pkl'), false);
  assert.is(m.verdict, 'safe');
  assert.ok(m.childRss > 0, 'the VM worker was measured');
  workerBaseline = m.childRss;
  cpuBudget = { fast: measure(join(SCAN_FIXTURES, 'benign/memo_reuse.pkl'), true).cpuMs + MAX_EXTRA_CPU_MS, vm: m.cpuMs + MAX_EXTRA_CPU_MS };
  process.stdout.write(`  [VM worker baseline ${Math.round(m.childRss / 1024)} MB; CPU budget ${Math.round(cpuBudget.fast)} ms --fast, ${Math.round(cpuBudget.vm)} ms with the VM]\n`);
});

for (const c of scanCases().filter((x) => x.file.startsWith('hostile/'))) {
  const path = join(SCAN_FIXTURES, c.file);
  test(`${c.file} (static pass, --fast): a verdict within ${MAX_EXTRA_CPU_MS} ms of CPU beyond a trivial scan and ${MAX_RSS_KB / 1024} MB`, () => {
    const m = measure(path, true);
    assert.ok(['invalid', 'safe', 'malicious', 'suspicious', 'error'].includes(m.verdict));
    if (c.verdict !== 'suspicious') assert.is(m.verdict, c.verdict);
    assert.ok(m.cpuMs < cpuBudget.fast, `${c.file} took ${m.cpuMs} ms of CPU (budget ${cpuBudget.fast})`);
    assert.ok(m.rss < MAX_RSS_KB, `${c.file} peaked at ${Math.round(m.rss / 1024)} MB`);
  });
  test(`${c.file} (with the VM pass): verdict ${c.verdict} within ${MAX_EXTRA_CPU_MS} ms of CPU beyond a trivial scan, scanner under ${MAX_RSS_KB / 1024} MB, VM worker not grown`, () => {
    const m = measure(path, false);
    assert.is(m.verdict, c.verdict);
    assert.ok(m.cpuMs < cpuBudget.vm, `${c.file} took ${m.cpuMs} ms of CPU (budget ${cpuBudget.vm})`);
    assert.ok(m.rss < MAX_RSS_KB, `${c.file} peaked at ${Math.round(m.rss / 1024)} MB`);
    if (m.childRss > 0) assert.ok(m.childRss < workerBaseline + WORKER_GROWTH_KB, `${c.file}: the VM worker grew to ${Math.round(m.childRss / 1024)} MB (baseline ${Math.round(workerBaseline / 1024)} MB)`);
  });
}

test.run();
