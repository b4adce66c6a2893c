/**
 * Runs a fuzz target in a child process and checks the contracts from outside: an input that
 * takes longer than its budget is a hang (the child is killed, the input kept, a fresh child goes
 * on from the next input); a child that dies is a crash (same); RSS that grows past a named bound
 * over the run is a leak. Breaches the child reports (a non-GuardError, a parser that threw) come
 * back with their inputs. `npm run fuzz -- TARGET --time N` is the command-line face of this.
 */
import { fork } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ChildMessage, ChildStart } from './protocol.js';

/** An input that runs longer than this is a hang (it is a budget, not a speed goal). */
export const FUZZ_INPUT_BUDGET_MS = 30_000;
/**
 * Longest a child may take to start (load the parsers, read the seeds, generate the first batch)
 * before its first input: on a loaded machine this is far more than one input's budget.
 */
export const FUZZ_CHILD_START_BUDGET_MS = 180_000;
/** RSS growth allowed from the first report (after warm-up) to the largest later one. */
export const FUZZ_MAX_RSS_GROWTH_BYTES = 512 * 1024 * 1024;
/** Inputs before the RSS baseline is taken (caches, the h5wasm worker, JIT). */
const RSS_WARMUP_INPUTS = 200;
/** Children started at most in one run (each hang or crash costs one). */
const MAX_RESTARTS = 20;

export interface FuzzFailure {
  kind: string;
  message: string;
  index: number;
  input: Buffer;
}

export interface FuzzSummary {
  target: string;
  seed: number;
  inputs: number;
  failures: FuzzFailure[];
  /** Breaches counted (only the first ones carry inputs). */
  failureCount: number;
  hangs: number;
  crashes: number;
  rssBaseline: number | null;
  rssPeak: number | null;
}

export interface FuzzOptions {
  target: string;
  /** Number of inputs (default: unbounded when timeMs is set). */
  runs?: number;
  timeMs?: number;
  seed?: number;
  fixtures: string;
  inputBudgetMs?: number;
  /** Replay these files (in order) instead of generating inputs. */
  replay?: string[];
}

const CHILD = join(dirname(fileURLToPath(import.meta.url)), 'child.js');

export async function runFuzz(o: FuzzOptions): Promise<FuzzSummary> {
  const seed = o.seed ?? 1;
  const runs = o.replay ? o.replay.length : (o.runs ?? (o.timeMs ? Number.MAX_SAFE_INTEGER : 100));
  const budget = o.inputBudgetMs ?? FUZZ_INPUT_BUDGET_MS;
  const workdir = mkdtempSync(join(tmpdir(), 'mg-fuzz-'));
  const s: FuzzSummary = { target: o.target, seed, inputs: 0, failures: [], failureCount: 0, hangs: 0, crashes: 0, rssBaseline: null, rssPeak: null };
  const stopAt = o.timeMs ? Date.now() + o.timeMs : Infinity;
  let next = 0;
  try {
    for (let restarts = 0; next < runs && Date.now() < stopAt && restarts <= MAX_RESTARTS; restarts++) {
      const start: ChildStart = { target: o.target, fixtures: o.fixtures, workdir, seed, first: next, runs: runs - next, timeMs: o.timeMs ? Math.max(1, stopAt - Date.now()) : 0, ...(o.replay ? { replay: o.replay } : {}) };
      const outcome = await new Promise<{ kind: 'done' | 'hang' | 'crash'; last: number; detail: string }>((resolve) => {
        const child = fork(CHILD, [JSON.stringify(start)], { stdio: ['ignore', 'ignore', 'pipe', 'ipc'], execArgv: [] });
        let last = next - 1;
        let stderr = '';
        child.stderr?.on('data', (d: Buffer) => {
          stderr = (stderr + d.toString()).slice(-2000);
        });
        let timer = setTimeout(() => hang(), FUZZ_CHILD_START_BUDGET_MS);
        const hang = () => {
          child.kill('SIGKILL');
          resolve({ kind: 'hang', last, detail: last < start.first ? `the child did not start within ${FUZZ_CHILD_START_BUDGET_MS} ms` : `an input ran past ${budget} ms` });
        };
        let done = false;
        child.on('message', (m: ChildMessage) => {
          if (m.t === 'start') {
            last = m.i;
            clearTimeout(timer);
            timer = setTimeout(hang, budget);
          } else if (m.t === 'rss') {
            if (m.i >= RSS_WARMUP_INPUTS && s.rssBaseline === null) s.rssBaseline = m.rss;
            if (s.rssBaseline !== null) s.rssPeak = Math.max(s.rssPeak ?? 0, m.rss);
          } else if (m.t === 'fail') {
            s.failureCount++;
            s.failures.push({ kind: m.kind, message: m.message, index: m.i, input: Buffer.from(m.input, 'base64') });
          } else if (m.t === 'done') {
            done = true;
            clearTimeout(timer);
            s.failureCount += Math.max(0, m.failures - s.failures.filter((f) => f.index >= start.first).length);
            resolve({ kind: 'done', last: m.next - 1, detail: '' });
          }
        });
        child.on('exit', (code, signal) => {
          clearTimeout(timer);
          if (!done) resolve({ kind: signal === 'SIGKILL' ? 'hang' : 'crash', last, detail: `child exited ${code ?? signal}: ${stderr.slice(-500)}` });
        });
      });
      s.inputs = outcome.last + 1;
      next = outcome.last + 1;
      if (outcome.kind === 'done') break;
      // The input the child was on when it stopped answering, or died.
      let input: Buffer = Buffer.alloc(0);
      try {
        input = readFileSync(join(workdir, 'current.bin'));
        // The child reports its position only now and then; the index file is exact.
        outcome.last = readFileSync(join(workdir, 'current.idx')).readDoubleLE(0);
      } catch {
        /* died before the first input */
      }
      // A child that never reached its first input is the machine's problem, not an input's.
      if (outcome.last < start.first) {
        s.failureCount++;
        s.failures.push({ kind: 'no-start', message: outcome.detail, index: start.first, input: Buffer.alloc(0) });
        continue;
      }
      if (outcome.kind === 'hang') s.hangs++;
      else s.crashes++;
      s.failureCount++;
      s.failures.push({ kind: outcome.kind, message: outcome.detail, index: outcome.last, input });
      next = outcome.last + 1;
      s.inputs = next;
    }
  } finally {
    rmSync(workdir, { recursive: true, force: true });
  }
  if (s.rssBaseline !== null && s.rssPeak !== null && s.rssPeak - s.rssBaseline > FUZZ_MAX_RSS_GROWTH_BYTES) {
    s.failureCount++;
    s.failures.push({ kind: 'rss-growth', message: `RSS grew from ${s.rssBaseline} to ${s.rssPeak} bytes (bound ${FUZZ_MAX_RSS_GROWTH_BYTES})`, index: s.inputs, input: Buffer.alloc(0) });
  }
  return s;
}

/** Writes each failure's input as a fixture: DIR/TARGET/<sha256 prefix>.bin with a .json note. */
export function saveFailures(s: FuzzSummary, dir: string): string[] {
  const out: string[] = [];
  for (const f of s.failures) {
    if (f.input.length === 0 && (f.kind === 'rss-growth' || f.kind === 'no-start')) continue;
    const id = createHash('sha256').update(f.input).digest('hex').slice(0, 16);
    const base = join(dir, s.target, id);
    mkdirSync(dirname(base), { recursive: true });
    writeFileSync(`${base}.bin`, f.input);
    writeFileSync(`${base}.json`, `${JSON.stringify({ target: s.target, kind: f.kind, message: f.message, seed: s.seed, index: f.index }, null, 2)}\n`);
    out.push(`${base}.bin`);
  }
  return out;
}
