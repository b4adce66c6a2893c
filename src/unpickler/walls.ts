/**
 * Walls around our own parser: how an unpickler worker process is started (behind the `loader`
 * profile through guard-exec and the seccomp supervisor, or plainly when the kernel layer is not
 * available here), and the journal that carries what the walls saw into the Report of the scan or
 * load that caused it.
 *
 * The worker may read exactly: the Node binary and the shared objects this very Node process has
 * mapped (read from /proc/self/maps: the worker is the same binary), the compiled unpickler and the
 * modules it imports, isolated-vm and Pyodide, the unpickler's Python source, the snapshot cache,
 * and the few system files Node reads at start-up (ld.so.cache, openssl.cnf, its own /proc entry,
 * /proc/meminfo, the CPU list and its cgroup's memory limit). It may write nothing but the usual
 * devices. The snapshot, when missing, is built by a one-shot walled worker that may also write the
 * cache folder and that never sees an untrusted byte; serving workers never hold write access.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { fork, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, realpathSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ensureDir } from '../cache.js';
import { GuardError } from '../errors.js';
import type { Walls } from '../report/model.js';
import type { RunEvent } from '../sandbox/events.js';
import { spawnWalled, walledAvailable, type WalledChild } from '../sandbox/worker-launch.js';
import { allowlistedEnv, CREDENTIAL_LIKE } from '../sandbox/env.js';
import { pythonSourcePath } from './assets.js';
import { isolatedVmDirs } from './isolated-vm.js';
import { PRELUDE } from './prelude.js';
import type { ProgressMessage } from './protocol.js';
import { pruneStaleSnapshots } from './snapshot.js';

/** `on`: walls or fail; `auto`: walls where available, else isolate-only; `off`: never. */
export type WallsMode = 'on' | 'auto' | 'off';

/** Profile the workers run under. */
export const WORKER_PROFILE = 'loader';

/** A worker as the pool sees it: the process, and (when walled) its launcher state. */
export interface LaunchedWorker {
  child: ChildProcess;
  walled: WalledChild | undefined;
  /** Why the worker is not walled (isolate-only), when it is not. */
  unwalledReason?: string;
}

export interface LaunchOptions {
  entry: string;
  execArgv: string[];
  env: Record<string, string | undefined>;
  cacheDir: string;
  maxPages: number;
  walls: WallsMode;
  onEvent: (event: RunEvent) => void;
}

const here = dirname(fileURLToPath(import.meta.url));

function packageRoot(): string {
  for (const up of ['../../..', '../..']) {
    const root = resolve(here, up);
    if (existsSync(join(root, 'package.json'))) return root;
  }
  return resolve(here, '../..');
}

function real(p: string): string {
  try {
    return realpathSync(p);
  } catch {
    return p;
  }
}

/** The shared objects (and the binary) this Node process has mapped. */
function mappedFiles(): string[] {
  const out = new Set<string>([real(process.execPath)]);
  try {
    for (const line of readFileSync('/proc/self/maps', 'utf8').split('\n')) {
      const i = line.indexOf('/');
      if (i < 0) continue;
      const p = line.slice(i);
      if (p.endsWith(' (deleted)') || p.startsWith('/memfd:') || p.startsWith('/dev/') || p.startsWith('/proc/')) continue;
      if (/\.so(\.[\d.]+)?$/.test(p) || p === real(process.execPath)) out.add(p);
    }
  } catch {
    /* not Linux: the walled path is not taken anyway */
  }
  return [...out];
}

/** This process's cgroup folders (Node reads its memory limit there to size the heap). */
function cgroupDirs(): string[] {
  const out: string[] = [];
  try {
    for (const line of readFileSync('/proc/self/cgroup', 'utf8').split('\n')) {
      const m = /^\d+:([^:]*):(\/.*)$/.exec(line);
      if (!m) continue;
      const [, controllers = '', path = '/'] = m;
      if (controllers !== '' && !controllers.split(',').includes('memory')) continue;
      const dirs = controllers === '' ? [join('/sys/fs/cgroup', path)] : controllers.split(',').map((c) => join('/sys/fs/cgroup', c.replace(/^name=/, ''), path));
      for (const d of dirs) if (existsSync(d)) out.push(d);
    }
  } catch {
    /* no cgroups: nothing to read */
  }
  return out;
}

function moduleDir(name: string): string | undefined {
  try {
    return real(dirname(createRequire(import.meta.url).resolve(`${name}/package.json`)));
  } catch {
    return undefined;
  }
}

/** Exactly what a worker may read. */
export function workerReadList(entry: string, cacheDir: string): string[] {
  const root = packageRoot();
  const read = [
    ...mappedFiles(),
    '/etc/ld.so.cache',
    '/etc/ssl/openssl.cnf',
    '/proc/self',
    '/proc/meminfo',
    '/sys/devices/system/cpu',
    ...cgroupDirs(),
    '/dev/urandom',
    // its own code: the compiled unpickler and what it imports (errors.js, cache.js, cpu-time.js), the package manifest
    real(dirname(entry)),
    real(join(dirname(entry), '..', 'errors.js')),
    real(join(dirname(entry), '..', 'cache.js')),
    real(join(dirname(entry), '..', 'cpu-time.js')),
    real(join(root, 'package.json')),
    real(dirname(pythonSourcePath())),
    cacheDir,
  ];
  const pyodide = moduleDir('pyodide');
  if (pyodide) read.push(pyodide);
  // every installed isolated-vm line: the worker loads the newest that fits its Node
  read.push(...isolatedVmDirs());
  return [...new Set(read)];
}

/** Where the worker will look for its snapshot (mirrors snapshot.ts / assets.ts keying). */
export function expectedSnapshotPath(cacheDir: string, maxPages: number): string | undefined {
  const dir = moduleDir('pyodide');
  if (!dir) return undefined;
  try {
    const version = (JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { version: string }).version;
    const python = readFileSync(pythonSourcePath(), 'utf8');
    const key = createHash('sha256').update(`pyodide ${version}\0pages ${maxPages}\0`).update(PRELUDE).update('\0').update(python).digest('hex').slice(0, 24);
    return join(cacheDir, `pyodide-${version}-${key}.snap`);
  } catch {
    return undefined;
  }
}

let unavailable: string | undefined;
let checked = false;

/** Why walls cannot be raised here, or undefined when they can. */
export function wallsUnavailableReason(): string | undefined {
  if (!checked) {
    checked = true;
    try {
      walledAvailable();
    } catch (e) {
      unavailable = e instanceof Error ? e.message.split('\n')[0] : String(e);
    }
  }
  return unavailable;
}

/** What a worker needs besides the common allowlist (sandbox/env.ts): its home and cache folders. */
const WORKER_ENV_EXTRA = ['HOME', 'TMPDIR', 'XDG_CACHE_HOME'];
/** From the common allowlist, what a worker must not get: its Node loads exactly the libraries this process mapped. */
const WORKER_ENV_DROP = ['LD_LIBRARY_PATH'];

/**
 * Environment every worker gets: the same allowlist as `guard run` (so an escaped worker finds no
 * secrets to read: HF_TOKEN, AWS_*, …), its own MODELGUARD_* settings, plus libuv told not to try
 * io_uring (the profile denies it).
 */
function workerEnv(env: Record<string, string | undefined>): Record<string, string | undefined> {
  const out: Record<string, string | undefined> = allowlistedEnv(env, WORKER_ENV_EXTRA.filter((k) => env[k] !== undefined));
  for (const k of WORKER_ENV_DROP) delete out[k];
  for (const [k, v] of Object.entries(env)) if (k.startsWith('MODELGUARD_') && !CREDENTIAL_LIKE.test(k)) out[k] = v;
  out.UV_USE_IO_URING = '0';
  return out;
}

/** Starts one worker process, walled when `walls` allows and the kernel layer is here. */
export function launchWorker(o: LaunchOptions, extraEnv: Record<string, string> = {}, write: string[] = []): LaunchedWorker {
  const reason = o.walls === 'off' ? 'walls turned off (walls: "off" / MODELGUARD_WALLS=off)' : wallsUnavailableReason();
  if (reason !== undefined) {
    if (o.walls === 'on') throw new GuardError('SANDBOX_UNAVAILABLE', `requireWalls: the unpickler worker cannot run behind the kernel walls: ${reason}`, { context: { step: 'walls' } });
    const child = fork(o.entry, [], { serialization: 'advanced', stdio: ['ignore', 'ignore', 'pipe', 'ipc'], execArgv: o.execArgv, env: workerEnv({ ...o.env, ...extraEnv }) });
    return { child, walled: undefined, unwalledReason: reason };
  }
  if (o.cacheDir) ensureDir(o.cacheDir);
  const walled = spawnWalled([real(process.execPath), ...o.execArgv, o.entry], {
    profile: WORKER_PROFILE,
    read: workerReadList(o.entry, o.cacheDir),
    write,
    env: workerEnv({ ...o.env, ...(write.length === 0 ? { MODELGUARD_WORKER_CACHE_RO: '1' } : {}), ...extraEnv }),
    onEvent: o.onEvent,
  });
  return { child: walled.child, walled };
}

/**
 * Builds the snapshot in a one-shot walled worker that may write the cache folder, when walls are
 * used and the snapshot is missing (or, with `force`, when a serving worker found it unusable: the
 * builder's own boot discards a corrupt file and writes a fresh one). Resolves true when it built
 * one; a failed build leaves workers to boot cold. `background`: the builder does not keep the
 * caller alive.
 */
export async function buildSnapshotWalled(o: LaunchOptions, opts: { force?: boolean; background?: boolean; onProgress?: ((m: ProgressMessage) => void) | undefined } = {}): Promise<boolean> {
  if (!o.cacheDir || o.walls === 'off' || wallsUnavailableReason() !== undefined) return false;
  const snap = expectedSnapshotPath(o.cacheDir, o.maxPages);
  if (!snap || (existsSync(snap) && !opts.force)) return false;
  let w: LaunchedWorker;
  try {
    w = launchWorker(o, { MODELGUARD_WORKER_SNAPSHOT_ONLY: '1', MODELGUARD_WORKER_PREWARM: '0' }, [o.cacheDir]);
  } catch {
    return false;
  }
  w.child.stderr?.resume();
  const onProgress = opts.onProgress;
  if (onProgress) w.child.on('message', (m: { type?: string }) => m?.type === 'progress' && onProgress(m as ProgressMessage));
  if (opts.background) {
    w.walled?.unref();
    w.child.unref();
    (w.child.stderr as { unref?: () => void } | null)?.unref?.();
    (w.child.channel as { unref?: () => void } | undefined)?.unref?.();
  }
  await new Promise<void>((r) => w.child.once('exit', () => r()));
  if (!existsSync(snap)) return false;
  pruneStaleSnapshots(o.cacheDir, snap);
  return true;
}

/** The report's `walls` for work served by this worker. */
export function wallsOf(w: LaunchedWorker): Walls {
  if (!w.walled) return { isolate: true, seccomp: null, network: null, landlock: null, rlimits: null, mode: 'isolate-only', ...(w.unwalledReason ? { reason: w.unwalledReason } : {}) };
  const s = w.walled.state;
  return { isolate: true, seccomp: s.seccomp, network: s.network, landlock: s.landlock || null, rlimits: { ...s.rlimits } as Record<string, number>, mode: 'walled' };
}

/* ---- the journal: what the walls saw during one scan / load ---------------------------------- */

export interface WallsJournal {
  requireWalls: boolean;
  /** Walls of every VM call, merged: `walled` only if every call was walled. */
  walls: Walls | undefined;
  /** Events the walls reported during this work (denied attempts make the work fail). */
  events: RunEvent[];
}

const store = new AsyncLocalStorage<WallsJournal>();

/** Runs `fn` with a journal (reusing the caller's when there is one). */
export function withWallsJournal<T>(options: { requireWalls?: boolean }, fn: (j: WallsJournal) => Promise<T>): Promise<T> {
  const outer = store.getStore();
  if (outer) {
    if (options.requireWalls) outer.requireWalls = true;
    return fn(outer);
  }
  const j: WallsJournal = { requireWalls: options.requireWalls === true, walls: undefined, events: [] };
  return store.run(j, () => fn(j));
}

export function currentJournal(): WallsJournal | undefined {
  return store.getStore();
}

/** Records the walls (and events) of one VM call into a journal. */
export function journalNote(j: WallsJournal | undefined, walls: Walls, events: readonly RunEvent[] = []): void {
  if (!j) return;
  j.events.push(...events);
  if (!j.walls || (j.walls.mode === 'walled' && walls.mode !== 'walled')) j.walls = { ...walls };
}

/** The `walls` section for a report: the journal's, or `static` when no VM call ran. */
export function reportWalls(j: WallsJournal | undefined): Walls {
  const base: Walls = j?.walls ? { ...j.walls } : { isolate: false, mode: 'static' };
  if (j && j.events.length > 0) base.events = [...j.events];
  return base;
}

/** Throws SANDBOX_UNAVAILABLE when walls were required and the VM ran without them. */
export function enforceRequireWalls(j: WallsJournal | undefined, required: boolean | undefined): void {
  if (!required || !j?.walls || j.walls.mode === 'walled') return;
  throw new GuardError('SANDBOX_UNAVAILABLE', `requireWalls: the unpickler ran isolate-only (${j.walls.reason ?? 'kernel walls unavailable'})`, { context: { step: 'walls' } });
}

/**
 * Events that mean the worker tried something the walls refused. A runtime's own probe (libuv on
 * Node 22+ tries io_uring when its loop starts) is denied with ENOSYS so the runtime falls back, and
 * stays in the report, but is not an attack: the model runs as Python inside the isolate and cannot
 * reach a system call except by escaping it, and an escape that only manages an io_uring probe got
 * ENOSYS and nothing else.
 */
export function violations(events: readonly RunEvent[]): RunEvent[] {
  return events.filter((e) => e.action !== 'allowed' && !(e.runtimeProbe && e.action === 'denied'));
}

/** One line per violation, for error messages and findings. */
export function describeEvent(e: RunEvent): string {
  const what = e.argv ? `${e.syscall}(${JSON.stringify(e.argv)})` : e.egress ? `${e.syscall} ${e.egress.protocol} ${e.egress.address}:${e.egress.port}` : e.path ? `${e.syscall}(${e.path})` : e.syscall;
  return `${what} ${e.action}${e.errno ? ` (${e.errno})` : ''}${e.reason ? `: ${e.reason}` : ''}`;
}
