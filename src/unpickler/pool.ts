import { type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { availableParallelism, freemem } from 'node:os';
import { fileURLToPath } from 'node:url';
import { GuardError } from '../errors.js';
import type { RunEvent } from '../sandbox/events.js';
import { buildSnapshotWalled, currentJournal, expectedSnapshotPath, describeEvent, journalNote, launchWorker, violations, wallsOf, type LaunchedWorker, type LaunchOptions, type WallsJournal, type WallsMode } from './walls.js';
import { DEFAULT_WASM_MAX_PAGES } from './assets.js';
import { DEFAULT_ISOLATE_HEAP_MB, BOOT_TIMEOUT_MS } from './isolate.js';
import { hangGuardMs } from '../cpu-time.js';
import type { ProgressMessage, RunReply, RunRequest, WorkerConfig } from './protocol.js';
import { cacheDir, verifySnapshot } from './snapshot.js';
import { usableCacheDir } from '../cache.js';

/**
 * Default per-call time limit of the VM (ms of CPU time, not wall-clock: the same file gets the
 * same verdict on an idle and on a busy machine; isolate.ts enforces it).
 */
export const DEFAULT_VM_TIMEOUT_MS = 30_000;

/** A worker's boot from the snapshot until the pool has measured one (ms). */
const DEFAULT_BOOT_ESTIMATE_MS = 1000;

/** Most workers the process-wide pool starts, whatever the core count. */
export const MAX_DEFAULT_WORKERS = 4;
/** What one worker holds once booted (measured: ~210–225 MB RSS), rounded up for sizing. */
export const WORKER_MEMORY_BYTES = 256 * 1024 * 1024;

/**
 * Workers for the process-wide pool: one per core, at most MAX_DEFAULT_WORKERS, and no more than
 * half the free memory holds; MODELGUARD_WORKERS overrides (1 = the old single worker). Workers are
 * started only when calls are waiting for one, so a single file still starts one.
 */
export function defaultPoolSize(env: Record<string, string | undefined> = process.env): number {
  const forced = Number(env.MODELGUARD_WORKERS);
  if (Number.isInteger(forced) && forced >= 1) return Math.min(forced, 64);
  const byMemory = Math.floor(freemem() / 2 / WORKER_MEMORY_BYTES);
  return Math.max(1, Math.min(availableParallelism(), MAX_DEFAULT_WORKERS, byMemory));
}

export interface PoolOptions {
  /**
   * Most worker processes (default 1; the process-wide pool: defaultPoolSize()). The first starts
   * with the first call; each further one only when the calls waiting would keep the others busy
   * longer than a boot takes (see backlogWorthAWorker).
   */
  size?: number;
  /**
   * Told, line by line, how a first use is going while the snapshot is built (seconds, once per
   * unpickler version). The process-wide pool writes them to stderr.
   */
  onProgress?: (line: string) => void;
  /** Cap on the VM's WebAssembly memory in bytes (default 1 GiB). */
  wasmMemoryBytes?: number;
  /** V8 heap limit of each isolate in MiB. */
  heapMb?: number;
  /** Snapshot cache folder, or `false` to boot cold every time. */
  cacheDir?: string | false;
  /** V8 old-space limit of each worker process (MiB). */
  workerHeapMb?: number;
  /**
   * Kernel walls around the workers (src/unpickler/walls.ts): `auto` (default; env
   * MODELGUARD_WALLS overrides) raises them where the native layer is present, `on` fails without
   * them, `off` runs isolate-only.
   */
  walls?: WallsMode;
  /** @internal Test-only: the worker breaks out of the VM on every call (see worker.ts). */
  testBreakout?: 'exec' | 'connect' | 'read' | 'write';
}

export interface VmCall {
  pickle: Uint8Array;
  config: Record<string, unknown>;
  timeoutMs?: number;
}

export interface VmReply {
  json: string;
  blob: Uint8Array;
  boot?: RunReply['boot'];
  runMs: number;
  /** CPU time the worker used for the call (ms): what the time limit counts. */
  cpuMs: number;
  /** Test-only (testBreakout): what the breakout attempt achieved. */
  breakout?: string;
}

interface Pending {
  /** When it was sent to a worker (for the pool's estimate of a call's cost). */
  sentAt?: number;
  journal: WallsJournal | undefined;
  req: RunRequest;
  resolve: (r: VmReply) => void;
  reject: (e: GuardError) => void;
}

interface Worker {
  launched: LaunchedWorker;
  /** Wall events not yet charged to a call (any denied one fails the next answer). */
  events: RunEvent[];
  child: ChildProcess;
  busy: Pending | undefined;
  timer: NodeJS.Timeout | undefined;
  exited: Promise<void>;
  /**
   * The worker's `ready` arrived. A death before it is most likely its runtime's (the message says
   * so); the verdict is `error` either way (unpickler/index.ts), and denied wall events still win.
   */
  ready: boolean;
}

/**
 * A pool of unpickler worker processes. Each call gets a time limit; a worker that overruns it by
 * the boot allowance, or dies, is killed and replaced, and the call fails with a GuardError
 * (`TIMEOUT` / `WORKER_CRASHED`). Idle workers are unref'd so they never keep the caller alive.
 */
export class UnpicklerPool {
  private readonly workers: Worker[] = [];
  private readonly queue: Pending[] = [];
  private nextId = 1;
  private closed = false;
  private readonly size: number;
  private readonly config: WorkerConfig;
  private readonly execArgv: string[];
  private readonly walls: WallsMode;
  private readonly breakout: string | undefined;
  /** Set once the snapshot is known to exist or a walled one-shot build has finished. */
  private snapshotReady: Promise<void> | true | undefined;
  /** This pool's walled one-shot build made the snapshot: the first answer says `built`. */
  private builtHere = false;
  /** A repair after a serving worker booted cold was tried once by this pool (never in a loop). */
  private repairTried = false;
  /** The snapshot's identity as checked here (snapshot.ts verifySnapshot), handed to the workers. */
  private snapshotKey: string | undefined;
  private readonly onProgress: ((line: string) => void) | undefined;
  /** Started since this pool was made (for tests and diagnostics: fan-out, replacements). */
  private started = 0;

  constructor(options: PoolOptions = {}) {
    this.size = Math.max(1, Math.floor(options.size ?? 1));
    const bytes = options.wasmMemoryBytes ?? DEFAULT_WASM_MAX_PAGES * 65536;
    this.config = {
      maxPages: Math.max(512, Math.min(65535, Math.floor(bytes / 65536))),
      heapMb: options.heapMb ?? DEFAULT_ISOLATE_HEAP_MB,
      cacheDir: options.cacheDir === false ? '' : usableCacheDir(options.cacheDir ?? cacheDir()),
    };
    this.execArgv = [`--max-old-space-size=${options.workerHeapMb ?? 512}`];
    const envWalls = process.env.MODELGUARD_WALLS;
    this.walls = options.walls ?? (envWalls === 'on' || envWalls === 'off' ? envWalls : 'auto');
    this.breakout = options.testBreakout;
    this.onProgress = options.onProgress;
  }

  /** Most workers this pool runs at once. */
  get maxWorkers(): number {
    return this.size;
  }

  /** Worker processes started so far (a replaced one counts again). */
  get workersStarted(): number {
    return this.started;
  }

  /**
   * Starts the first worker (and its boot) before any call: the CLI calls this while it loads the
   * scanner's modules and parses its arguments, so the boot overlaps them. Idle workers are
   * unref'd, so a warm pool never keeps the process alive.
   */
  warm(): void {
    if (this.closed || this.workers.length > 0) return;
    this.wantWarm = true;
    this.dispatch();
  }
  private wantWarm = false;

  /** Runs the restricted unpickler on `pickle`. */
  run(call: VmCall): Promise<VmReply> {
    if (this.closed) return Promise.reject(new GuardError('USAGE', 'the unpickler pool is closed; create a new one', { context: { step: 'vm' } }));
    const req: RunRequest = { type: 'run', id: this.nextId++, pickle: call.pickle, config: call.config, timeoutMs: call.timeoutMs ?? DEFAULT_VM_TIMEOUT_MS };
    const journal = currentJournal();
    return new Promise<VmReply>((resolve, reject) => {
      this.queue.push({ journal, req, resolve, reject });
      this.dispatch();
    });
  }

  /** Number of live worker processes (for tests and diagnostics). */
  get liveWorkers(): number {
    return this.workers.length;
  }

  /** Process ids of the live workers. */
  get pids(): number[] {
    return this.workers.map((w) => w.child.pid ?? -1);
  }

  /** Kills every worker and waits for them to exit. Pending calls fail with `WORKER_CRASHED`. */
  async close(): Promise<void> {
    this.closed = true;
    for (const p of this.queue.splice(0)) p.reject(new GuardError('WORKER_CRASHED', 'the unpickler pool was closed', { context: { step: 'vm' } }));
    const exits = this.workers.map((w) => {
      // Keep the loop alive until the exit is observed, so close() really waits for it.
      this.activate(w);
      w.child.kill('SIGKILL');
      return w.exited;
    });
    await Promise.all(exits);
  }

  private launchOptions(onEvent: (e: RunEvent) => void): LaunchOptions {
    const entry = fileURLToPath(new URL('./worker.js', import.meta.url));
    const env: Record<string, string | undefined> = { ...process.env, MODELGUARD_WORKER_CONFIG: JSON.stringify(this.config), MODELGUARD_WORKER_PREWARM: '1' };
    delete env.MODELGUARD_TEST_BREAKOUT;
    delete env.MODELGUARD_WORKER_SNAPSHOT_KEY;
    if (this.snapshotKey) env.MODELGUARD_WORKER_SNAPSHOT_KEY = this.snapshotKey;
    if (this.breakout) env.MODELGUARD_TEST_BREAKOUT = this.breakout;
    return { entry, execArgv: this.execArgv, env, cacheDir: this.config.cacheDir, maxPages: this.config.maxPages, walls: this.walls, onEvent };
  }

  /**
   * Before the first worker: the snapshot is checked here, in the host, and a missing or damaged
   * one is built by a one-shot walled builder that the calls wait for. Resolves true when this
   * pool built it. Without walls the workers write the cache themselves (their boot discards a
   * damaged file and writes a fresh one).
   */
  private async prepareSnapshot(): Promise<boolean> {
    const path = this.config.cacheDir ? expectedSnapshotPath(this.config.cacheDir, this.config.maxPages) : undefined;
    if (path === undefined) return false;
    const present = existsSync(path);
    const checked = present ? verifySnapshot(path) : { intact: false };
    this.snapshotKey = checked.key;
    if (checked.intact) return false;
    const started = Date.now();
    const progress = this.progressReporter(started, present);
    const built = await buildSnapshotWalled(this.launchOptions(() => {}), { force: present, onProgress: progress });
    if (built) {
      this.snapshotKey = verifySnapshot(path).key;
      this.onProgress?.(`modelguard: the unpickler's snapshot is ready (${((Date.now() - started) / 1000).toFixed(1)} s); later runs start from it`);
    }
    return built;
  }

  /** Turns a building worker's progress messages into lines for onProgress. */
  private progressReporter(started: number, repair = false): ((m: ProgressMessage) => void) | undefined {
    const say = this.onProgress;
    if (!say) return undefined;
    let first = true;
    return (m) => {
      if (first) {
        first = false;
        say(
          repair
            ? `modelguard: the unpickler's Pyodide snapshot in the cache is damaged: building it again (a few seconds)`
            : `modelguard: first use of this unpickler version: building its Pyodide snapshot once (a few seconds; later runs start from it)`,
        );
      }
      say(`modelguard:   [${((Date.now() - started) / 1000).toFixed(1)} s] ${PROGRESS_LABEL[m.step]}`);
    };
  }

  private spawn(): Worker {
    const events: RunEvent[] = [];
    const launched = launchWorker(this.launchOptions((e) => events.push(e)));
    this.started++;
    const child = launched.child;
    const progress = this.progressReporter(Date.now());
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => {
      stderr = (stderr + d.toString('utf8')).slice(-4000);
    });
    const worker: Worker = {
      launched,
      events,
      child,
      busy: undefined,
      timer: undefined,
      exited: new Promise<void>((resolve) => child.once('exit', () => resolve())),
      ready: false,
    };
    const onMessage = (msg: RunReply | ProgressMessage | { type: 'ready' }): void => {
      if (msg.type === 'ready') worker.ready = true;
      if (msg.type === 'progress') progress?.(msg);
      if (msg.type !== 'result') return;
      const p = worker.busy;
      if (!p || p.req.id !== msg.id) return;
      // Every wall event of this call is queued before the worker could answer (the supervisor
      // queues, then answers the kernel); they are delivered by now or in this loop turn.
      const denied = violations(worker.events.splice(0));
      journalNote(p.journal, wallsOf(launched), denied);
      if (denied.length > 0) {
        // The worker tried something the walls refused: its answer is not trusted, it is not reused.
        worker.busy = undefined;
        this.finish(worker);
        worker.child.kill('SIGKILL');
        const err = new GuardError('SANDBOX_VIOLATION', `the unpickler worker tried what its walls deny (it was killed; its answer is discarded): ${denied.map(describeEvent).join('; ')}`, {
          context: { step: 'vm', events: denied },
        });
        p.reject(err);
        return;
      }
      this.finish(worker);
      if (msg.ok) {
        const reply: VmReply = { json: msg.json ?? '', blob: msg.blob ?? new Uint8Array(0), runMs: msg.runMs ?? 0, cpuMs: msg.cpuMs ?? 0 };
        if (msg.boot) {
          reply.boot = msg.boot;
          if (this.builtHere) reply.boot = { ...msg.boot, built: true };
          this.builtHere = false;
          // A walled worker cannot repair the cache: it booted without a usable snapshot although
          // the file passed its checks (prepareSnapshot), so a one-shot walled builder (which may
          // write the cache) replaces it. Not in the background: a builder unref'd there dies with
          // a short-lived process (the CLI), and every later run would boot cold again.
          if (launched.walled && msg.boot.built && !this.repairTried) {
            this.repairTried = true;
            void buildSnapshotWalled(this.launchOptions(() => {}), { force: true });
          }
        }
        if (msg.breakout !== undefined) reply.breakout = msg.breakout;
        if (msg.boot) this.bootMs = Math.max(this.bootMs === undefined ? 0 : this.bootMs, msg.boot.ms);
        else if (p.sentAt !== undefined) this.callMs = this.callMs === undefined ? Date.now() - p.sentAt : 0.7 * this.callMs + 0.3 * (Date.now() - p.sentAt);
        p.resolve(reply);
      } else {
        const code = (msg.error?.code ?? 'INTERNAL') as GuardError['code'];
        p.reject(new GuardError(code, msg.error?.message ?? 'unpickler worker failed', { context: { step: 'vm' } }));
      }
      this.dispatch();
    };
    // Walled: take the answer one turn later, after any event the same poll phase delivered.
    child.on('message', launched.walled ? (msg: RunReply | ProgressMessage) => setImmediate(() => onMessage(msg)) : onMessage);
    child.once('exit', (code, signal) => {
      const i = this.workers.indexOf(worker);
      if (i >= 0) this.workers.splice(i, 1);
      const p = worker.busy;
      this.finish(worker);
      if (p) {
        const denied = violations(worker.events.splice(0));
        // guard-exec exits 128 + 31 when the filter killed the worker (a foreign-architecture call).
        if (launched.walled && (code === 159 || signal === 'SIGSYS')) {
          denied.push({ time: new Date().toISOString(), pid: 0, syscall: 'unknown', action: 'killed', args: { note: 'killed by the seccomp filter (foreign-architecture or x32 call, or a kill rule)' } });
        }
        journalNote(p.journal, wallsOf(launched), denied);
        const why = signal ? `signal ${signal}` : `exit code ${code}`;
        const setup = launched.walled?.setupError;
        p.reject(
          denied.length > 0
            ? new GuardError('SANDBOX_VIOLATION', `the unpickler worker tried what its walls deny and died (${why}): ${denied.map(describeEvent).join('; ')}`, { context: { step: 'vm', events: denied } })
            : setup
              ? setup
              : new GuardError('WORKER_CRASHED', `the unpickler worker died (${why})${worker.ready ? '' : ' before it reported ready (its runtime failed to start, most likely not the file)'}${stderr ? `: ${stderr.trim().split('\n').slice(-3).join(' | ')}` : ''}`, {
                  context: { step: worker.ready ? 'vm' : 'worker-start', pid: child.pid },
                }),
        );
      }
      if (!this.closed) this.dispatch();
    });
    child.on('error', () => {
      /* 'exit' follows and reports */
    });
    this.workers.push(worker);
    this.idle(worker);
    return worker;
  }

  /**
   * Whether the calls waiting would take the busy workers longer than starting one more takes:
   * a worker costs a boot (~1 s of a core, measured: Node, the wasm, the 30 MiB snapshot), so a
   * backlog of light calls (a folder of small models: ~2 ms each) is left to the workers there
   * are, and heavy or sustained work (big pickles, a server's concurrent loads) gets more. Both
   * figures are this pool's own measurements; until a call has finished, the cost is unknown and
   * no second worker is started.
   */
  private backlogWorthAWorker(): boolean {
    if (this.callMs === undefined) return false;
    const boot = this.bootMs ?? DEFAULT_BOOT_ESTIMATE_MS;
    const now = Date.now();
    this.backlogSince ??= now;
    // Either the calls waiting now outweigh a boot, or calls have kept waiting for longer than a
    // boot takes (a steady stream of concurrent loads, each light).
    return (this.queue.length * this.callMs) / this.workers.length > boot || now - this.backlogSince > boot;
  }
  /** Since when calls have been waiting with every worker busy (reset when the queue drains). */
  private backlogSince: number | undefined;
  /** Longest boot seen (ms) and a running average of a call's time from send to answer (ms). */
  private bootMs: number | undefined;
  private callMs: number | undefined;

  private startSnapshotPrep(): void {
    this.snapshotReady = this.prepareSnapshot()
      .then((built) => {
        this.builtHere = built;
      })
      .catch(() => {
        /* workers boot cold and say so */
      })
      .finally(() => {
        this.snapshotReady = true;
        this.dispatch();
      });
  }

  private finish(worker: Worker): void {
    if (worker.timer) clearTimeout(worker.timer);
    worker.timer = undefined;
    worker.busy = undefined;
    this.idle(worker);
  }

  private idle(worker: Worker): void {
    worker.launched.walled?.unref();
    worker.child.unref();
    (worker.child.channel as { unref?: () => void } | undefined)?.unref?.();
    (worker.child.stderr as { unref?: () => void } | null)?.unref?.();
  }

  private activate(worker: Worker): void {
    worker.launched.walled?.ref();
    worker.child.ref();
    (worker.child.channel as { ref?: () => void } | undefined)?.ref?.();
  }

  private dispatch(): void {
    if (this.wantWarm && this.queue.length === 0 && !this.closed) {
      if (this.workers.length > 0) this.wantWarm = false;
      else if (this.snapshotReady === true) {
        this.wantWarm = false;
        try {
          this.spawn();
        } catch {
          /* the first call starts one and reports why it cannot */
        }
      } else if (!this.snapshotReady) this.startSnapshotPrep();
      return;
    }
    if (this.queue.length === 0) this.backlogSince = undefined;
    while (this.queue.length > 0 && !this.closed) {
      let worker = this.workers.find((w) => !w.busy);
      if (!worker) {
        if (this.workers.length >= this.size) return;
        if (this.workers.length > 0 && !this.backlogWorthAWorker()) return;
        if (this.snapshotReady !== true) {
          // Walled workers never write: a missing snapshot is built first by a one-shot worker.
          if (!this.snapshotReady) this.startSnapshotPrep();
          return;
        }
        try {
          worker = this.spawn();
        } catch (e) {
          const p = this.queue.shift() as Pending;
          p.reject(e instanceof GuardError ? e : new GuardError('SANDBOX_SETUP', String(e), { cause: e, context: { step: 'walls' } }));
          continue;
        }
      }
      const p = this.queue.shift() as Pending;
      if (p.journal?.requireWalls && !worker.launched.walled) {
        journalNote(p.journal, wallsOf(worker.launched));
        p.reject(new GuardError('SANDBOX_UNAVAILABLE', `requireWalls: the unpickler worker runs isolate-only (${worker.launched.unwalledReason ?? 'kernel walls unavailable'})`, { context: { step: 'walls' } }));
        continue;
      }
      worker.busy = p;
      p.sentAt = Date.now();
      this.activate(worker);
      // The worker enforces timeoutMs itself, as CPU time (isolate.ts). This watchdog is wall-clock
      // and only a hang guard for a worker that could not stop (a wedged isolate, a runaway boot):
      // the hang guard of the call's and a boot's CPU budgets, plus a minute so the worker's own guard
      // (isolate.ts) reports first, which load alone does not reach.
      const w = worker;
      const hangGuard = hangGuardMs(p.req.timeoutMs + BOOT_TIMEOUT_MS) + 60_000;
      w.timer = setTimeout(() => {
        if (w.busy !== p) return;
        w.busy = undefined;
        w.child.kill('SIGKILL');
        p.reject(new GuardError('TIMEOUT', `the unpickler worker timed out: no answer within ${hangGuard} ms of wall-clock time (its hang guard); it was killed`, { context: { step: 'vm' } }));
      }, hangGuard);
      try {
        w.child.send(p.req);
      } catch (e) {
        w.busy = undefined;
        w.child.kill('SIGKILL');
        p.reject(new GuardError('WORKER_CRASHED', `could not reach the unpickler worker: ${e instanceof Error ? e.message : String(e)}`, { cause: e, context: { step: 'vm' } }));
      }
    }
  }
}

let shared: UnpicklerPool | undefined;

/** The process-wide pool used by `safeLoad()` and `scan()`. */
export function defaultPool(): UnpicklerPool {
  if (!shared) shared = new UnpicklerPool({ size: defaultPoolSize(), onProgress: (line) => process.stderr.write(`${line}\n`) });
  return shared;
}

const PROGRESS_LABEL: Record<ProgressMessage['step'], string> = {
  pyodide: 'booting Pyodide from its files',
  unpickler: 'loading the restricted unpickler',
  snapshot: 'taking the memory snapshot',
  write: 'writing it to the cache folder',
  restore: 'starting from it',
};

/** Shuts the process-wide pool down (a later call starts a new one). */
export async function closeDefaultPool(): Promise<void> {
  const p = shared;
  shared = undefined;
  if (p) await p.close();
}
