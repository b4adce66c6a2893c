/**
 * `guard entrypoint`: the model gate at start-up, then the command behind the `guard run` walls,
 * then one report. PID-1 duties live in native code: guard-exec's init half is the subreaper that
 * forwards signals, reaps orphans and stops what the command left behind; when guard itself is
 * PID 1, the addon also reaps zombies reparented to it, never one of Node's own children.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, resolve, sep } from 'node:path';
import { GuardError } from '../errors.js';
import { reaches, type FailOn, type Report } from '../report/model.js';
import { scan } from '../scan.js';
import { loadNative } from './native.js';
import { FORWARDED_SIGNALS, run, type RunEvent, type RunResult, type RunWalls } from './run.js';

export const EXIT_REFUSED = 3;

export interface EntrypointOptions {
  profile?: string;
  /** Paths or globs (`*`, `?`, `**`) to scan before the command starts. */
  scan: string[];
  failOn: FailOn;
  allowNet: string[];
  write: string[];
  signalGroup?: boolean;
  onEvent?: (e: RunEvent) => void;
  /** Called when the gate has passed and the walls are up, just before the command starts. */
  onStart?: (gate: GateResult, walls: RunWalls) => void;
}

export interface GateResult {
  failOn: FailOn;
  refused: boolean;
  /** Files at or above the fail-on level. */
  failing: { path: string; verdict: string }[];
  scanned: number;
}

export interface EntrypointReport extends Partial<RunResult> {
  command: string[];
  exitCode: number;
  gate: GateResult | null;
  scan: Report | null;
}

function globToRegExp(glob: string): RegExp {
  let re = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === '*' && glob[i + 1] === '*') {
      re += '.*';
      i++;
      if (glob[i + 1] === '/') i++;
    } else if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else re += c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

function walk(dir: string, out: string[], limit: number): void {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return;
  }
  for (const n of names.sort()) {
    if (out.length >= limit) return;
    const p = join(dir, n);
    out.push(p);
    try {
      if (statSync(p).isDirectory()) walk(p, out, limit);
    } catch {
      // vanished
    }
  }
}

/** Expands `MODELGUARD_SCAN` entries: plain paths stay as they are, globs match existing paths. */
export function expandScanTargets(entries: readonly string[]): string[] {
  const out: string[] = [];
  for (const raw of entries) {
    const e = resolve(raw);
    if (!/[*?]/.test(e)) {
      out.push(e);
      continue;
    }
    const parts = e.split(sep);
    const firstGlob = parts.findIndex((p) => /[*?]/.test(p));
    const base = parts.slice(0, firstGlob).join(sep) || sep;
    const all: string[] = [];
    walk(base, all, 100_000);
    const re = globToRegExp(e);
    const matched = all.filter((p) => re.test(p) && statSync(p).isFile());
    if (matched.length === 0) throw new GuardError('NOT_FOUND', `MODELGUARD_SCAN: \`${raw}\` matches no file`, { context: { path: raw } });
    out.push(...matched);
  }
  return [...new Set(out)];
}

/** Splits an environment list on commas, colons (paths) or whitespace. */
export function envList(value: string | undefined, separators = /[\s,]+/): string[] {
  return (value ?? '').split(separators).map((s) => s.trim()).filter(Boolean);
}

/** What the gate's entries name on disk: a path as it is, a glob by the folder before its first wildcard (never `/`). */
export function scanRoots(entries: readonly string[]): string[] {
  const out: string[] = [];
  for (const e of entries) {
    const wild = e.search(/[*?]/);
    const root = wild < 0 ? e : e.slice(0, e.lastIndexOf('/', wild));
    if (root && root !== '/') out.push(root);
  }
  return out;
}

/** Scans the targets; `refused` when any file reaches `failOn`. */
export async function gate(targets: readonly string[], failOn: FailOn): Promise<{ gate: GateResult; report: Report | null }> {
  if (targets.length === 0) return { gate: { failOn, refused: false, failing: [], scanned: 0 }, report: null };
  const report = await scan(expandScanTargets(targets));
  const failing = report.files.filter((f) => reaches(f.verdict, failOn)).map((f) => ({ path: f.path, verdict: f.verdict }));
  return { gate: { failOn, refused: failing.length > 0, failing, scanned: report.files.length }, report };
}

function childPids(): number[] {
  const out: number[] = [];
  try {
    for (const t of readdirSync('/proc/self/task')) {
      const text = readFileSync(`/proc/self/task/${t}/children`, 'utf8');
      for (const p of text.split(/\s+/)) if (p) out.push(Number(p));
    }
  } catch {
    // no /proc: nothing to protect
  }
  return out;
}

/** As PID 1: reap zombies reparented to us on every SIGCHLD and once a second. */
function startOrphanReaper(known: number[]): () => void {
  if (process.pid !== 1) return () => {};
  let native: ReturnType<typeof loadNative>;
  try {
    native = loadNative();
  } catch {
    return () => {};
  }
  const tick = (): void => {
    native.reapOrphans({ known });
  };
  const timer = setInterval(tick, 1000);
  timer.unref();
  process.on('SIGCHLD', tick);
  return () => {
    clearInterval(timer);
    process.off('SIGCHLD', tick);
  };
}

/** Runs the gate, then the command. Resolves with the report and the exit code to use. */
export async function entrypoint(command: readonly string[], o: EntrypointOptions): Promise<EntrypointReport> {
  // Until the command exists, a stop request ends guard (PID 1 ignores signals it has no handler for).
  const early: [string, () => void][] = FORWARDED_SIGNALS.filter((s) => s !== 'SIGWINCH').map((s) => {
    const h = (): void => process.exit(128 + (s === 'SIGINT' ? 2 : s === 'SIGHUP' ? 1 : s === 'SIGQUIT' ? 3 : s === 'SIGUSR1' ? 10 : s === 'SIGUSR2' ? 12 : 15));
    process.on(s, h);
    return [s, h];
  });
  let g: Awaited<ReturnType<typeof gate>>;
  try {
    g = await gate(o.scan, o.failOn);
  } finally {
    for (const [s, h] of early) process.off(s, h);
  }
  if (g.gate.refused) return { command: [...command], exitCode: EXIT_REFUSED, gate: g.gate, scan: g.report };
  const known = childPids();
  const stopReaper = startOrphanReaper(known);
  let result: RunResult;
  try {
    result = await run(command, {
      ...(o.profile ? { profile: o.profile } : {}),
      allowNet: o.allowNet,
      write: o.write,
      // A container's own settings: MODELGUARD_ENV names the variables that pass beyond the allowlist (sandbox/env.ts).
      passEnv: envList(process.env.MODELGUARD_ENV),
      // The models the gate scanned are the ones the command loads: readable (globs by their fixed folder).
      read: scanRoots(o.scan),
      forwardSignals: true,
      signalGroup: o.signalGroup === true,
      onSpawn: (pid) => known.push(pid),
      ...(o.onEvent ? { onEvent: o.onEvent } : {}),
      ...(o.onStart ? { onWalls: (w: RunWalls) => o.onStart!(g.gate, w) } : {}),
    });
  } finally {
    stopReaper();
  }
  return { ...result, gate: g.gate, scan: g.report };
}
