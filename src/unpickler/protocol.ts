/** Messages between the pool (parent) and an unpickler worker process. */

export interface WorkerConfig {
  /** Cap on the VM's WebAssembly memory, in 64 KiB pages. */
  maxPages: number;
  /** V8 heap limit of the isolate (MiB). */
  heapMb: number;
  /** Snapshot cache folder; empty string disables the cache. */
  cacheDir: string;
}

export interface RunRequest {
  type: 'run';
  id: number;
  pickle: Uint8Array;
  /** JSON-able configuration for the Python side (`pickles`, `allow`, `graph`, `all`). */
  config: Record<string, unknown>;
  /** The call's CPU-time budget (ms); wall-clock time only backs it up as a hang guard. */
  timeoutMs: number;
}

export interface RunReply {
  type: 'result';
  id: number;
  ok: boolean;
  json?: string;
  blob?: Uint8Array;
  error?: { code: string; message: string };
  /** How the isolate that served this call was started. */
  boot?: { ms: number; snapshot: boolean; built: boolean };
  runMs?: number;
  /** CPU time the worker process used for the call (ms): what its time limit counts. */
  cpuMs?: number;
  /** Test-only: what the worker's deliberate breakout attempt achieved (PoolOptions.testBreakout). */
  breakout?: string;
}

export interface ReadyMessage {
  type: 'ready';
}

/** How far a cold boot is (sent before each slow step; the pool turns them into a stderr line). */
export interface ProgressMessage {
  type: 'progress';
  step: 'pyodide' | 'unpickler' | 'snapshot' | 'write' | 'restore';
}
