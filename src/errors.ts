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

/**
 * Errors the parsers throw for damaged input, by class name (a name, not an import: this module
 * sits below every parser). At the public boundary they become INVALID_MODEL.
 */
const FORMAT_ERRORS: ReadonlySet<string> = new Set([
  'NpyFormatError',
  'ZipFormatError',
  'SafetensorsFormatError',
  'GgufFormatError',
  'PickleError',
  'JsonSyntaxError',
  'TarFormatError',
  'OnnxFormatError',
  'SyntaxError',
]);
/** Errors that mean a cap was reached: LIMIT_EXCEEDED. */
const LIMIT_ERRORS: ReadonlySet<string> = new Set(['ZipBombError', 'InflateLimitError', 'SevenZipCapError']);

function errorNames(value: Error): string[] {
  const ctor = (value as { constructor?: { name?: unknown } }).constructor?.name;
  return typeof ctor === 'string' ? [value.name, ctor] : [value.name];
}

/** The stable code an unknown thrown value maps to, or undefined when nothing specific is known. */
export function codeOf(value: unknown): GuardErrorCode | undefined {
  if (value instanceof GuardError) return value.code;
  if (!(value instanceof Error)) return undefined;
  const errno = (value as NodeJS.ErrnoException).code;
  if (typeof errno === 'string' && /^E[A-Z0-9]+$/.test(errno)) return errno === 'ENOENT' ? 'NOT_FOUND' : 'IO';
  const names = errorNames(value);
  if (names.some((n) => LIMIT_ERRORS.has(n))) return 'LIMIT_EXCEEDED';
  if (names.some((n) => FORMAT_ERRORS.has(n))) return 'INVALID_MODEL';
  // V8's RangeErrors here are sizes: an allocation that failed, a typed array too long, a stack
  // blown by nesting. All are a resource limit reached by the input.
  if (value instanceof RangeError) return 'LIMIT_EXCEEDED';
  return undefined;
}

/** Wraps an unknown thrown value so callers always see a GuardError. */
export function toGuardError(value: unknown, fallback: GuardErrorCode, context: GuardErrorContext = {}): GuardError {
  if (value instanceof GuardError) return value;
  const err = value as NodeJS.ErrnoException | undefined;
  const code = codeOf(value) ?? fallback;
  if (err && typeof err === 'object' && typeof err.code === 'string' && (code === 'IO' || code === 'NOT_FOUND')) {
    return new GuardError(code, `${err.syscall ?? 'io'}${context.path ? ` ${context.path}` : ''}: ${err.code}${err.message ? ` (${err.message})` : ''}`, { cause: value, context: { ...context, errno: err.code } });
  }
  const message = value instanceof Error ? value.message : String(value);
  return new GuardError(code, message, { cause: value, context });
}
