/** Shared by the sandbox suites: the probe binary, a temp dir, and `guard run` under `unshare -n`. */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { HANG_GUARD_MS } from '../helpers/budget.js';

export const ROOT = resolve(fileURLToPath(new URL('../../..', import.meta.url)));
export const CLI = join(ROOT, 'dist', 'src', 'cli', 'main.js');
export const PYTHON = '/usr/bin/python3';

/** Why sandbox suites would skip; null on Linux, where nothing skips. */
export function skipReason(): string | null {
  return process.platform === 'linux' ? null : `the kernel sandbox needs Linux (this is ${process.platform})`;
}

export function tempDir(tag: string): string {
  return mkdtempSync(join(tmpdir(), `mg-${tag}-`));
}

let probePath: string | undefined;
/** Compiles test/fixtures/sandbox/probe.c once per process. */
export function probe(): string {
  if (probePath) return probePath;
  const dir = tempDir('probe');
  const out = join(dir, 'probe');
  execFileSync('cc', ['-O2', '-o', out, join(ROOT, 'test', 'fixtures', 'sandbox', 'probe.c')], { stdio: 'pipe' });
  probePath = out;
  return out;
}

export interface CliRun {
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  report: ReportJson | null;
}

export interface ReportJson {
  command: string[];
  profile: string;
  exitCode: number;
  signal: string | null;
  durationMs: number;
  walls: Record<string, unknown>;
  events: {
    time: string;
    pid: number;
    syscall: string;
    action: 'denied' | 'allowed' | 'killed';
    args: Record<string, unknown>;
    egress?: { protocol: string; address: string; port: number; dnsName?: string; dnsType?: string };
    path?: string;
    argv?: string[];
    errno?: string;
  }[];
  summary: { denied: number; allowed: number; killed: number; dnsNames: string[]; egress: string[]; blockedExecs: { argv?: string[] }[]; blockedWrites: string[]; deniedSyscalls: string[] };
}

/**
 * Runs `guard run [guardArgs] -- cmd…`. Anything that may attempt egress passes `netns: true`:
 * the whole guard then runs inside a network namespace this test creates with `unshare -n`.
 */
export function guardRun(guardArgs: string[], cmd: string[], opts: { netns?: boolean; env?: NodeJS.ProcessEnv; timeout?: number } = {}): CliRun {
  const dir = tempDir('report');
  const reportPath = join(dir, 'report.json');
  const argv = [CLI, 'run', '--report', reportPath, ...guardArgs, '--', ...cmd];
  const r = opts.netns ? spawnSync('unshare', ['-n', process.execPath, ...argv], { encoding: 'utf8', env: opts.env ?? process.env, timeout: opts.timeout ?? HANG_GUARD_MS }) : spawnSync(process.execPath, argv, { encoding: 'utf8', env: opts.env ?? process.env, timeout: opts.timeout ?? HANG_GUARD_MS });
  let report: ReportJson | null = null;
  try {
    report = JSON.parse(readFileSync(reportPath, 'utf8')) as ReportJson;
  } catch {
    report = null;
  }
  return { status: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr, report };
}

/** PIDs whose command line contains `needle` (leftover-process checks). */
export function processesMatching(needle: string): number[] {
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const cmd = readFileSync(`/proc/${d}/cmdline`, 'utf8').replace(/\0/g, ' ');
      if (cmd.includes(needle)) out.push(Number(d));
    } catch {
      // gone
    }
  }
  return out;
}

export function hasUnshare(): boolean {
  return spawnSync('unshare', ['-n', 'true']).status === 0;
}
