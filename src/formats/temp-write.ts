/**
 * Writing a temporary copy failed (ENOSPC on a full TMPDIR, EDQUOT, EIO): an environment problem,
 * not a property of the file being read. Carries the errno code and the path being written, so
 * the scan reports an `error` (not `invalid`) and safeLoad a GuardError `IO` naming both.
 */
export class TempWriteError extends Error {
  readonly code: string;
  readonly syscall = 'write';
  constructor(
    readonly path: string,
    readonly what: string,
    cause: unknown,
  ) {
    const code = (cause as NodeJS.ErrnoException | undefined)?.code ?? 'EIO';
    super(`writing ${what} to ${path}: ${code} (${cause instanceof Error ? cause.message : String(cause)})`, { cause });
    this.name = 'TempWriteError';
    this.code = code;
  }
}
