/**
 * How a long command stops on SIGINT / SIGTERM: cleanly, with what it has. The first signal aborts
 * the work (an AbortSignal the work checks between files) so the command can write a partial
 * report; a second one stops at once. Either way the command's private temporary folder is
 * removed, and the exit code is the shell's 128 + signal number (130, 143).
 *
 * Every temporary file of the work (an inflated gzip/xz stream of up to the inflate cap, an HDF5
 * member copied out of an archive) is made under the command's own folder: the command points
 * TMPDIR at it, so the parsers' own `os.tmpdir()` lands there, and one recursive removal at the
 * end leaves nothing behind, even for a file whose parser was cut off mid-write.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** 128 + the signal number, as shells report a process ended by a signal. */
export const SIGNAL_EXIT: Readonly<Record<'SIGINT' | 'SIGTERM', number>> = { SIGINT: 130, SIGTERM: 143 };

export interface Interruptible {
  /** Aborted by the first SIGINT / SIGTERM. */
  signal: AbortSignal;
  /** The signal that stopped the work, if one did. */
  readonly stoppedBy: 'SIGINT' | 'SIGTERM' | undefined;
  /** The exit code for the signal (130 / 143), when stopped. */
  readonly exitCode: number | undefined;
  /** Removes the temporary folder, restores TMPDIR and the default signal handling. Idempotent. */
  close(): void;
}

/** Installs the handlers and the private temporary folder until close(). */
export function interruptible(name: string): Interruptible {
  const controller = new AbortController();
  let stoppedBy: 'SIGINT' | 'SIGTERM' | undefined;
  const savedTmp = process.env.TMPDIR;
  let tempRoot: string | undefined;
  try {
    tempRoot = mkdtempSync(join(tmpdir(), `modelguard-${name}-`));
    process.env.TMPDIR = tempRoot;
  } catch {
    // No private folder (a full or read-only TMPDIR): the parsers report their own failures.
  }
  let closed = false;
  const close = (): void => {
    if (closed) return;
    closed = true;
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    process.off('exit', close);
    if (savedTmp === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = savedTmp;
    if (tempRoot) rmSync(tempRoot, { recursive: true, force: true });
  };
  function onSignal(sig: NodeJS.Signals): void {
    const s = sig === 'SIGTERM' ? 'SIGTERM' : 'SIGINT';
    if (stoppedBy) {
      // A second signal: the user does not want the partial report; stop now, still tidy.
      close();
      process.exit(SIGNAL_EXIT[stoppedBy]);
    }
    stoppedBy = s;
    controller.abort(new Error(`stopped by ${s}`));
  }
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('exit', close);
  return {
    signal: controller.signal,
    get stoppedBy() {
      return stoppedBy;
    },
    get exitCode() {
      return stoppedBy ? SIGNAL_EXIT[stoppedBy] : undefined;
    },
    close,
  };
}
