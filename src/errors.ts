/**
 * Every error modelguard throws is a GuardError with a stable `code`.
 * An error means modelguard could not finish; a finding means it finished and saw something.
 */
import type { Report } from './report/model.js';

export type GuardErrorCode =
  | 'USAGE'
  | 'IO'
  | 'NOT_FOUND'
  | 'UNSAFE_MODEL'
  | 'INVALID_MODEL'
  | 'LIMIT_EXCEEDED'
  | 'UNSUPPORTED'
  | 'TIMEOUT'
  | 'WORKER_CRASHED'
  | 'SANDBOX_UNAVAILABLE'
  | 'SANDBOX_SETUP'
  /** A walled process (the unpickler worker) attempted what its walls deny. */
  | 'SANDBOX_VIOLATION'
  | 'PROFILE_INVALID'
  | 'NATIVE'
  | 'INTERNAL';

export interface GuardErrorContext {
  path?: string;
  format?: string;
  step?: string;
  member?: string;
  offset?: number;
  [key: string]: unknown;
}

/** Marks a GuardError from any copy of this module (`guard run` loads a bundled copy). */
const BRAND = Symbol.for('modelguard.GuardError');

export class GuardError extends Error {
  readonly code: GuardErrorCode;
  readonly context: GuardErrorContext;
  /** Set when a load was refused or failed after its scan (`UNSAFE_MODEL`, `INVALID_MODEL` and
   * errors in safeLoad's later steps): the scan report the refusal rests on. */
  declare report?: Report;

  /** `x instanceof GuardError` holds for a GuardError made by another copy of this class too;
   * subclasses keep the ordinary prototype check. */
  static override [Symbol.hasInstance](value: unknown): boolean {
    if (this !== GuardError) return Function.prototype[Symbol.hasInstance].call(this, value);
    return typeof value === 'object' && value !== null && (value as { [BRAND]?: unknown })[BRAND] === true;
  }

  constructor(code: GuardErrorCode, message: string, options: { cause?: unknown; context?: GuardErrorContext } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'GuardError';
    this.code = code;
    this.context = options.context ?? {};
    Object.defineProperty(this, BRAND, { value: true });
  }
}

export function isGuardError(value: unknown): value is GuardError {
  return value instanceof GuardError;
}

/** Wraps an unknown thrown value so callers always see a GuardError. */
export function toGuardError(value: unknown, fallback: GuardErrorCode, context: GuardErrorContext = {}): GuardError {
  if (value instanceof GuardError) return value;
  const err = value as NodeJS.ErrnoException | undefined;
  if (err && typeof err === 'object' && typeof err.code === 'string') {
    const code: GuardErrorCode = err.code === 'ENOENT' ? 'NOT_FOUND' : 'IO';
    return new GuardError(code, `${err.syscall ?? 'io'}${context.path ? ` ${context.path}` : ''}: ${err.code}${err.message ? ` (${err.message})` : ''}`, { cause: value, context });
  }
  const message = value instanceof Error ? value.message : String(value);
  return new GuardError(fallback, message, { cause: value, context });
}
