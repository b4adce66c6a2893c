/** What every entry of the guard command does first and last (cli/main.ts, cli/run-launch.ts). */
import { GuardError } from '../errors.js';

const SET_ASIDE = 'MODELGUARD_NODE_EXTRA_CA_CERTS';

/**
 * bin/guard moves NODE_EXTRA_CA_CERTS aside before Node starts (Node parses every root certificate
 * at start-up when it is set, ~35 ms, and guard never opens a TLS connection); this puts it back,
 * so the commands guard runs see the environment they were given.
 */
export function restoreSetAsideEnv(): void {
  const v = process.env[SET_ASIDE];
  if (v === undefined) return;
  if (v !== '') process.env.NODE_EXTRA_CA_CERTS = v;
  delete process.env[SET_ASIDE];
}

/**
 * `guard load … | head`: when the reader of stdout goes away, stop quietly as other command-line
 * tools do, instead of dying on an unhandled EPIPE.
 */
export function quietOnClosedStdout(): void {
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(typeof process.exitCode === 'number' ? process.exitCode : 0);
    throw e;
  });
}

/** The command's exit code once `result` settles: a GuardError is a one-line message and 2, anything else an internal error. */
export function finish(result: Promise<number>): void {
  result.then(
    (code) => {
      process.exitCode = code;
    },
    (e: unknown) => {
      if (e instanceof GuardError) process.stderr.write(`guard: ${e.message} [${e.code}]\n`);
      else process.stderr.write(`guard: internal error: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
      process.exitCode = 2;
    },
  );
}
