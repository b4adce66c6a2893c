/** modelguard public API. */
export { scan, type ScanOptions, type ScanResult } from './scan.js';
export { GuardError, isGuardError, type GuardErrorCode, type GuardErrorContext } from './errors.js';
export type { Finding, FileReport, Report, Severity, Verdict, Location, Walls, FailOn } from './report/model.js';
export { DEFAULT_LIMITS, type Limits } from './limits.js';
export { renderText, renderJson, renderSarif } from './report/render.js';
export { VERSION } from './version.js';
