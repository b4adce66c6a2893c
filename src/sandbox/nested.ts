/**
 * Guard inside guard. `run()` marks the command's environment with WALLED_ENV (env.ts); a guard
 * started under those walls sees the mark and stops with one line saying what to type instead.
 *
 * It stops rather than running the command itself because it cannot: the outer profile's
 * `exec: first` spent the one execve on `guard` itself, so neither Node nor the command can be
 * started (before this check, the inner `readlink` and `node` were refused and it exited 126 with
 * no word). The model gate cannot run either: its scanner workers need walls of their own, which
 * cannot be raised under the outer ones. The outer guard already gated and walls the command.
 *
 * The mark cannot weaken anything: it only ever makes guard refuse to start, and only when the
 * kernel shows a seccomp filter and no_new_privs on guard itself (/proc/self/status); a mark
 * without them (set by hand, or leaked into a shell) is ignored and guard walls as usual.
 * bin/guard does the same check in shell, before it needs any exec.
 */
import { readFileSync } from 'node:fs';
import { WALLED_ENV } from './env.js';

/** Exit status of a guard that refused to nest (guard could not run the command: 2, as for setup errors). */
export const EXIT_NESTED = 2;

/** The kernel's view of this process: a seccomp filter (mode 2) and no_new_privs set. */
export function kernelWalled(status: string): boolean {
  return /^Seccomp:\s*2\s*$/m.test(status) && /^NoNewPrivs:\s*1\s*$/m.test(status);
}

/** The outer guard's profile when this process runs under guard's walls, else null. */
export function insideGuard(env: NodeJS.ProcessEnv = process.env, status?: string): string | null {
  const mark = env[WALLED_ENV];
  if (!mark) return null;
  let text = status;
  if (text === undefined) {
    try {
      text = readFileSync('/proc/self/status', 'utf8');
    } catch {
      return null;
    }
  }
  return kernelWalled(text) ? mark : null;
}

function shellWord(s: string): string {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

/** The one line a nested guard prints. */
export function nestedMessage(verb: 'run' | 'entrypoint', profile: string, command: readonly string[]): string {
  const cmd = command.map(shellWord).join(' ');
  const instead = verb === 'entrypoint'
    ? `give the image only the command (\`podman run IMAGE ${cmd || 'CMD'}\`: its ENTRYPOINT already is \`guard entrypoint --\`), and put --scan/--allow-net/--write on the outer guard (MODELGUARD_* variables)`
    : `run \`${cmd || 'CMD'}\` without the inner \`guard run\`, with its options on the outer one`;
  return `guard ${verb}: already inside guard's walls (profile ${profile}), where guard cannot start again: ${instead}\n`;
}
