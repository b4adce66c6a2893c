import { randomBytes } from 'node:crypto';
import { GuardError } from '../errors.js';
import type { PyodideAssets } from './assets.js';
import { loadIsolatedVm, type IvmContext, type IvmIsolate, type IvmReference } from './isolated-vm.js';
import { PRELUDE } from './prelude.js';
import { cpuMsSince, hangGuardMs } from '../cpu-time.js';

/** V8 heap limit of an unpickler isolate (MiB). WebAssembly memory is capped separately. */
export const DEFAULT_ISOLATE_HEAP_MB = 256;
/**
 * CPU time (ms, this worker process's user + system) a boot may use before the isolate is
 * abandoned. A cold boot that builds the snapshot has taken 77 s of wall time on a busy 2-core
 * machine, so the limit is CPU, which another process on the same cores barely moves.
 */
export const BOOT_TIMEOUT_MS = 60_000;
/** How often a running call's CPU time is sampled (ms); a call overruns its budget by about this much CPU. */
export const CPU_SAMPLE_MS = 20;

export interface BootOptions {
  /** A memory snapshot made by `makeSnapshot()` with the same assets. */
  snapshot?: Uint8Array;
  /**
   * The snapshot's ArrayBuffer is moved into the isolate instead of copied (it is detached here
   * afterwards). Saves two copies of 30 MiB (into an ExternalCopy, then into the isolate): ~230 ms
   * of CPU per boot measured on the loaded 2-core machine.
   */
  transferSnapshot?: boolean;
  /** Called as the boot reaches each slow step (for the cold start's progress line). */
  onStep?: (step: 'pyodide' | 'unpickler') => void;
  /** Boot so that `makeSnapshot()` can be called afterwards. */
  forSnapshot?: boolean;
  heapMb?: number;
}

/** What the Python side returns: the result JSON and one blob of raw bytes it references. */
export interface RawVmOutput {
  json: string;
  blob: Uint8Array;
}

/**
 * One isolate holding one Pyodide interpreter with the restricted unpickler loaded. Its only
 * bindings are the byte channel (`run`) and a random-bytes callback. Synchronous by design: it
 * lives in a worker process that does nothing else.
 */
export class VmIsolate {
  private disposed = false;
  /** `__mgCall(input, cfg) => [json, blob, retire]` inside the isolate. */
  private readonly call: IvmReference;

  private constructor(
    private readonly isolate: IvmIsolate,
    private readonly context: IvmContext,
    readonly bootMs: number,
    readonly fromSnapshot: boolean,
  ) {
    this.call = context.global.getSync('__mgCall', { reference: true }) as IvmReference;
  }

  static boot(assets: PyodideAssets, options: BootOptions = {}): VmIsolate {
    const started = Date.now();
    const { ivm } = loadIsolatedVm();
    const isolate = new ivm.Isolate({ memoryLimit: options.heapMb ?? DEFAULT_ISOLATE_HEAP_MB });
    try {
      const context = isolate.createContextSync();
      const g = context.global;
      g.setSync('globalThis', g.derefInto());
      g.setSync('__mgWasm', new ivm.ExternalCopy(assets.module).copyInto());
      g.setSync('__mgStdlib', new ivm.ExternalCopy(assets.stdlib).copyInto());
      g.setSync('__mgLock', assets.lockFile);
      g.setSync('__mgRandom', new ivm.Callback((n: number) => new Uint8Array(randomBytes(Math.max(0, Math.min(65536, n | 0))))));
      if (options.snapshot) {
        const snap = options.snapshot;
        if (options.transferSnapshot && snap.byteOffset % 4 === 0) {
          // Read the view's place before the transfer detaches it (a detached view reads as 0, 0).
          const { byteOffset, byteLength } = snap;
          g.setSync('__mgSnapBuf', new ivm.ExternalCopy(snap.buffer, { transferOut: true }).copyInto({ release: true, transferIn: true }));
          context.evalSync(`globalThis.__mgSnap = new Uint8Array(__mgSnapBuf, ${byteOffset}, ${byteLength}); delete globalThis.__mgSnapBuf;`);
        } else g.setSync('__mgSnap', new ivm.ExternalCopy(snap).copyInto());
      }
      // The budget is CPU time (checked between steps and on every pump); each step's wall-clock
      // `timeout` is only a hang guard. The boot runs nothing from the file being scanned.
      const cpuStart = process.cpuUsage();
      const deadline = started + hangGuardMs(BOOT_TIMEOUT_MS);
      const left = () => Math.max(1, deadline - Date.now());
      const overBudget = () => cpuMsSince(cpuStart) > BOOT_TIMEOUT_MS || Date.now() > deadline;
      context.evalSync(PRELUDE, { filename: 'modelguard-prelude.js', timeout: left() });
      isolate.compileScriptSync(assets.asmScript, { filename: 'pyodide.asm.js' }).runSync(context, { timeout: left() });
      isolate.compileScriptSync(assets.loaderScript, { filename: 'pyodide.js' }).runSync(context, { timeout: left() });
      const config = [
        "indexURL: '/pyodide/'",
        'lockFileContents: JSON.parse(__mgLock)',
        'createPyodideModule: _createPyodideModule',
        'stdout: (s) => __mgOut.push(s)',
        'stderr: (s) => __mgOut.push(s)',
        `_makeSnapshot: ${options.forSnapshot === true}`,
        options.snapshot ? '_loadSnapshot: __mgSnap' : '',
      ].filter(Boolean).join(', ');
      options.onStep?.('pyodide');
      context.evalSync(
        `globalThis.__mgState = 'pending'; loadPyodide({ ${config} }).then((p) => { globalThis.pyodide = p; __mgState = 'ready'; }, (e) => { __mgState = 'error: ' + String(e && e.stack || e); });`,
        { timeout: left() },
      );
      let state = 'pending';
      while (state === 'pending') {
        if (overBudget()) throw new GuardError('TIMEOUT', `Pyodide did not boot within ${BOOT_TIMEOUT_MS} ms of CPU time (timed out)`, { context: { step: 'vm-boot' } });
        state = context.evalSync('__mgPump(); __mgState', { timeout: left() }) as string;
      }
      if (state !== 'ready') {
        const out = context.evalSync('__mgOut.join("\\n")') as string;
        throw new GuardError('INTERNAL', `Pyodide failed to boot: ${state.slice(0, 2000)}${out ? `\n${out.slice(-2000)}` : ''}`, { context: { step: 'vm-boot' } });
      }
      if (!options.snapshot) {
        options.onStep?.('unpickler');
        g.setSync('__mgPy', assets.python);
        context.evalSync("pyodide.runPython(__mgPy, { filename: 'modelguard_unpickler.py' }); delete globalThis.__mgPy;", { timeout: left() });
      }
      context.evalSync(
        `(function () {
          const run = pyodide.globals.get('_mg_run');
          if (typeof run !== 'function') throw new Error('_mg_run missing after boot');
          globalThis.__mgCall = function (input, cfg) {
            const r = run(input, cfg);
            try {
              const out = r.toJs();
              return [String(out[0]), out[1], out[2] === true];
            } finally {
              r.destroy();
            }
          };
          delete globalThis.__mgSnap;
          delete globalThis.__mgStdlib;
        })()`,
        { timeout: left() },
      );
      return new VmIsolate(isolate, context, Date.now() - started, options.snapshot !== undefined);
    } catch (e) {
      if (!isolate.isDisposed) isolate.dispose();
      throw e;
    }
  }

  /**
   * Unpickles `pickle` with the restricted unpickler. `cpuMs` is a CPU-time budget, not a
   * wall-clock one: a verdict must not depend on how busy the machine is. The call runs on
   * isolated-vm's thread while this (otherwise idle) process samples its own CPU time and disposes
   * of the isolate once the call has used more than the budget (the worker process serves one call
   * at a time, so its CPU time is the call's: the interpreter's thread plus V8's helpers for it).
   * isolated-vm's own `cpuTime` cannot be used here: on Linux it adds the running call's wall time
   * until the call returns. Throws `TIMEOUT` (the isolate is then unusable).
   */
  async run(pickle: Uint8Array, config: Record<string, unknown>, cpuMs: number): Promise<RawVmOutput & { cpuMs: number }> {
    if (this.disposed) throw new GuardError('INTERNAL', 'isolate already disposed', { context: { step: 'vm-run' } });
    const cpuStart = process.cpuUsage();
    let overrun: number | undefined;
    const watch = setInterval(() => {
      const used = cpuMsSince(cpuStart);
      if (used <= cpuMs || overrun !== undefined) return;
      overrun = used;
      this.dispose();
    }, CPU_SAMPLE_MS);
    try {
      const { ivm } = loadIsolatedVm();
      const input = new ivm.ExternalCopy(pickle).copyInto({ release: true });
      const out = (await this.call.apply(undefined, [input, JSON.stringify(config)], { timeout: hangGuardMs(cpuMs), result: { copy: true } })) as [string, Uint8Array, boolean];
      // The VM parked objects it could not free safely (too deep for the native stack): this
      // interpreter is retired and the next call boots a fresh one.
      if (out[2] === true) this.dispose();
      return { json: out[0], blob: out[1] instanceof Uint8Array ? out[1] : new Uint8Array(0), cpuMs: cpuMsSince(cpuStart) };
    } catch (e) {
      const msg = e instanceof Error ? e.message : String(e);
      if (overrun !== undefined) {
        throw new GuardError('TIMEOUT', `the unpickler VM timed out: it used ${Math.round(overrun)} ms of CPU time, past its budget of ${cpuMs} ms, and was stopped`, { cause: e, context: { step: 'vm-run' } });
      }
      if (/timed out/i.test(msg)) {
        this.dispose();
        throw new GuardError('TIMEOUT', `the unpickler VM timed out: no answer after ${hangGuardMs(cpuMs)} ms of wall-clock time (its hang guard)`, { cause: e, context: { step: 'vm-run' } });
      }
      if (this.isolate.isDisposed || /memory limit|disposed/i.test(msg)) {
        this.dispose();
        throw new GuardError('LIMIT_EXCEEDED', `the unpickler VM ran out of memory: ${msg}`, { cause: e, context: { step: 'vm-run' } });
      }
      // A Python-level failure is reported inside the JSON; anything reaching here broke the VM.
      this.dispose();
      throw new GuardError('INTERNAL', `the unpickler VM failed: ${msg}`, { cause: e, context: { step: 'vm-run' } });
    } finally {
      clearInterval(watch);
    }
  }

  /** A memory snapshot of this interpreter (boot with `forSnapshot`, before any `run`). */
  makeSnapshot(): Uint8Array {
    // A hang guard only (the snapshot is made from our own boot, no file is involved).
    return this.context.evalSync('pyodide.makeMemorySnapshot()', { copy: true, timeout: hangGuardMs(BOOT_TIMEOUT_MS) }) as Uint8Array;
  }

  get usable(): boolean {
    return !this.disposed && !this.isolate.isDisposed;
  }

  heapBytes(): number {
    return this.isolate.getHeapStatisticsSync().total_heap_size;
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    try {
      this.call.release();
    } catch {
      /* already gone */
    }
    if (!this.isolate.isDisposed) this.isolate.dispose();
  }
}
