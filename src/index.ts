/** modelguard public API. */
export { scan, type ScanOptions, type ScanResult } from './scan.js';
export { GuardError, isGuardError, type GuardErrorCode, type GuardErrorContext } from './errors.js';
export type { Finding, FileReport, Report, Severity, Verdict, Location, Walls, WallEvent, FailOn } from './report/model.js';
export { DEFAULT_LIMITS, type Limits } from './limits.js';
export { renderText, renderJson, renderSarif } from './report/render.js';
export { VERSION } from './version.js';
export { run, RunError, type RunOptions, type RunResult, type RunEvent, type RunSummary, type RunWalls, type Egress, type EventAction } from './sandbox/run.js';
export { loadProfile, parseProfile, BUILTIN_PROFILES, type BuiltinProfile, type SandboxProfile } from './sandbox/profile.js';
export { safeLoad, DEFAULT_MAX_LOAD_BYTES, type SafeLoadOptions, type LoadResult, type Tensor, type TensorData } from './load/safeload.js';
export { closeDefaultPool as closeUnpicklerPool } from './unpickler/pool.js';
export { UnpicklerPool, prepareUnpickler, type PoolOptions } from './unpickler/index.js';
export type { WallsMode } from './unpickler/walls.js';
