import { Worker } from 'node:worker_threads';
import { hangGuardMs, threadCpuMsOf } from '../cpu-time.js';

/**
 * Runs synchronous third-party parsers (h5wasm, 7-Zip in WebAssembly) on a worker thread with a
 * deadline. They are C libraries compiled to WebAssembly: on a hostile file one can loop forever
 * inside a single call, and on the main thread that blocks the event loop so no timer can fire.
 * On a worker, the main thread keeps its event loop, and when the deadline passes it terminates
 * the worker, which interrupts WebAssembly mid-loop; the caller gets a DeadlineError and decides
 * what the file's verdict is. The worker holds no state the main thread needs: temporary files
 * are created and removed by the caller, so a killed worker leaves nothing behind.
 *
 * A deadline is CPU time of the worker's thread (the worker tells its kernel thread id first;
 * the main thread reads /proc/self/task/TID/stat), so a busy machine does not turn a benign file
 * into a timeout: when the wall-clock timer fires, the worker is stopped only if its thread has
 * used the budget; otherwise the timer is set again for what is left. Wall-clock time stops it
 * only as a hang guard (hangGuardMs: ten times the budget, ten minutes at least). Where the thread's CPU time cannot
 * be read (not Linux), the deadline is wall-clock.
 */

/** A call did not finish by its deadline; the worker was terminated. */
export class DeadlineError extends Error {
  constructor(readonly op: string, readonly ms: number) {
    super(`${op} timed out after ${ms} ms of CPU time`);
    this.name = 'DeadlineError';
  }
}

/** The worker died (crashed, ran out of memory) while a call was running. */
export class WorkerDiedError extends Error {
  constructor(readonly op: string, detail: string) {
    super(`${op}: the parser worker died (${detail})`);
    this.name = 'WorkerDiedError';
  }
}

/** An error thrown inside the worker, rebuilt with its name on this side. */
export class RemoteError extends Error {
  constructor(
    name: string,
    message: string,
    /** The errno code (`ENOSPC`) when the remote error had one. */
    readonly code?: string,
  ) {
    super(message);
    this.name = name;
  }
}

/** What the worker posts back for each request. */
export type WorkerReply = { id: number; ok: true; value: unknown } | { id: number; ok: false; name: string; message: string; code?: string };
/** The worker's first message: its kernel thread id, whose CPU time the deadlines count. */
export interface WorkerHello {
  tid: number | undefined;
}

export interface WorkerRequest {
  id: number;
  op: string;
  args: unknown;
}

interface Pending {
  op: string;
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

/** One worker thread and the calls in flight to it. */
export class DeadlineWorker {
  private readonly worker: Worker;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private dead: Error | undefined;
  /** The worker thread's kernel id, once it has said (its first message). */
  private tid: number | undefined;

  constructor(script: URL) {
    this.worker = new Worker(script);
    this.worker.on('message', (m: WorkerReply | WorkerHello) => {
      if (!('id' in m)) {
        this.tid = m.tid;
        return;
      }
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      clearTimeout(p.timer);
      if (m.ok) p.resolve(m.value);
      else p.reject(new RemoteError(m.name, m.message, m.code));
    });
    this.worker.on('error', (e: Error) => this.fail((op) => new WorkerDiedError(op, e.message)));
    this.worker.on('exit', (code) => this.fail((op) => new WorkerDiedError(op, `exit ${code}`)));
    // A parser worker never keeps the process alive: a scan that finished has no use for it. After
    // the listeners: adding a 'message' listener refs the worker's port again, and a finished
    // scan (the keras suite) then never exited.
    this.worker.unref();
  }

  private fail(make: (op: string) => Error): void {
    this.dead ??= make('worker');
    for (const [id, p] of this.pending) {
      this.pending.delete(id);
      clearTimeout(p.timer);
      p.reject(make(p.op));
    }
  }

  /** CPU ms of the worker's thread, or undefined when it cannot be read (then wall-clock counts). */
  private workerCpuMs(): number | undefined {
    return this.tid === undefined ? undefined : threadCpuMsOf(this.tid);
  }

  /**
   * Runs `op` in the worker; once it has used `ms` milliseconds of CPU time (or hangGuardMs(ms)
   * of wall-clock time) the worker is terminated and DeadlineError thrown.
   */
  call<T>(op: string, args: unknown, ms: number, transfer: ArrayBuffer[] = []): Promise<T> {
    if (this.dead) return Promise.reject(this.dead);
    const id = this.nextId++;
    // Before the worker has said its thread id (its first call), its start-up counts too: stricter.
    const cpuStart = this.workerCpuMs() ?? 0;
    const wallStart = Date.now();
    const guard = hangGuardMs(ms);
    return new Promise<T>((resolve, reject) => {
      const expire = (): void => {
        this.pending.delete(id);
        this.dead = new DeadlineError(op, ms);
        reject(this.dead);
        void this.worker.terminate();
      };
      const check = (): void => {
        const p = this.pending.get(id);
        if (!p) return;
        const wall = Date.now() - wallStart;
        const cpu = this.workerCpuMs();
        const used = cpu === undefined ? wall : cpu - cpuStart;
        if (used >= ms || wall >= guard) return expire();
        // Starved by other work on the machine: wait for the CPU time still left (10 ms at least,
        // the clock's resolution), never past the hang guard.
        p.timer = setTimeout(check, Math.max(10, Math.min(ms - used, guard - wall)));
      };
      const timer = setTimeout(check, ms);
      this.pending.set(id, { op, resolve: resolve as (v: unknown) => void, reject, timer });
      const req: WorkerRequest = { id, op, args };
      this.worker.postMessage(req, transfer);
    });
  }

  /** Ends the worker (idempotent). */
  async close(): Promise<void> {
    this.dead ??= new Error('the parser worker was closed');
    await this.worker.terminate();
  }
}

/** Starts a worker on `script`, runs `fn` with it, and always terminates it afterwards. */
export async function withDeadlineWorker<T>(script: URL, fn: (w: DeadlineWorker) => Promise<T>): Promise<T> {
  const w = new DeadlineWorker(script);
  try {
    return await fn(w);
  } finally {
    await w.close();
  }
}

/**
 * One long-lived worker for a parser whose start-up is costly (h5wasm compiles its WebAssembly
 * in each new worker: seconds on a busy machine). Calls run one at a time, so each deadline
 * measures only its own call. A worker that timed out, died, or whose library aborted (an aborted
 * Emscripten module stays unusable) is dropped, and the next call starts a fresh one.
 */
export class SharedDeadlineWorker {
  private worker: DeadlineWorker | undefined;
  private tail: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly script: URL,
    /** Whether an error thrown by a call leaves the library unusable. */
    private readonly poisons: (e: unknown) => boolean = () => false,
    /** Run once on each new worker, under its own deadline, so no call's deadline pays for start-up. */
    private readonly warmup?: { op: string; ms: number },
  ) {}

  call<T>(op: string, args: unknown, ms: number): Promise<T> {
    const run = async (): Promise<T> => {
      let w = this.worker;
      if (!w) {
        w = new DeadlineWorker(this.script);
        this.worker = w;
        if (this.warmup) {
          try {
            await w.call(this.warmup.op, {}, this.warmup.ms);
          } catch (e) {
            this.worker = undefined;
            await w.close();
            throw e;
          }
        }
      }
      try {
        return await w.call<T>(op, args, ms);
      } catch (e) {
        if (e instanceof DeadlineError || e instanceof WorkerDiedError || this.poisons(e)) {
          if (this.worker === w) this.worker = undefined;
          await w.close();
        }
        throw e;
      }
    };
    const p = this.tail.then(run, run);
    this.tail = p.catch(() => undefined);
    return p;
  }

  /** Ends the worker, if one is running. */
  async close(): Promise<void> {
    const w = this.worker;
    this.worker = undefined;
    if (w) await w.close();
  }
}
