/**
 * `guard run [--profile NAME|FILE] [--report FILE] [--format text|json] [--allow-net HOST:PORT]…
 *            [--write DIR]… [--read PATH]… [--env NAME[=VALUE]]… [--memory SIZE] [--disk SIZE]
 *            [--audit] [--verbose] -- CMD ARGS…`
 * Exit code: the command's own (128 + signal when it was killed); 2 when guard could not run it.
 */
import { writeFileSync } from 'node:fs';
import { GuardError } from '../errors.js';
import { parseCommandLine } from './args.js';
import { parseSize, run, RunError, type RunEvent, type RunResult } from '../sandbox/run.js';
import { parseEnvSpec } from '../sandbox/env.js';
import { renderRunText, renderEventLine } from '../sandbox/render.js';
import { EXIT_NESTED, insideGuard, nestedMessage } from '../sandbox/nested.js';

export const RUN_USAGE = `Usage: guard run [options] -- CMD ARGS…

Runs CMD behind seccomp, network denial, Landlock and rlimits, and reports every attempt it made.

Options:
  --profile NAME|FILE   loader | inference (default) | inference-gpu | audit, or a profile JSON file
  --report FILE         write the run report (JSON, or text with --format text) to FILE at exit
  --format text|json    report format for --report (default json)
  --allow-net HOST:PORT allow connections to this destination (repeatable; IP literal or *)
  --write DIR           also allow writes under DIR (repeatable)
  --read PATH           also allow reads of PATH (repeatable). Reads are confined to system folders,
                        the command, its interpreter and the paths on its command line; not $HOME
  --env NAME[=VALUE]    pass NAME from this environment, or set it (repeatable). Only locale, PATH,
                        TZ, TERM, Python, thread and device variables pass otherwise; never tokens
  --memory SIZE         memory ceiling, e.g. 4G (default 3/4 of this machine's; 0 for none)
  --disk SIZE           size of the private /tmp and /dev/shm, and of the largest file (default 4G)
  --audit               allow everything except the always-denied calls, report it all
  --verbose             stream events to stderr as they happen
  --signal-group        forward signals to CMD's process group
  --no-netns            deny the network with seccomp + Landlock only (no network namespace)
  -h, --help            this text
`;

export interface RunCliOptions {
  profile?: string;
  report?: string;
  format: 'text' | 'json';
  allowNet: string[];
  write: string[];
  read: string[];
  env: string[];
  memory?: number;
  disk?: number;
  audit: boolean;
  verbose: boolean;
  signalGroup: boolean;
  netns: boolean;
  command: string[];
  help: boolean;
}

const KNOWN = ['--profile', '--report', '--format', '--allow-net', '--write', '--read', '--env', '--memory', '--disk', '--audit', '--verbose', '--signal-group', '--no-netns', '--help'];

export function parseRunArgs(argv: readonly string[]): RunCliOptions {
  const o: RunCliOptions = { format: 'json', allowNet: [], write: [], read: [], env: [], audit: false, verbose: false, signalGroup: false, netns: true, command: [], help: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const eq = a.startsWith('--') ? a.indexOf('=') : -1;
    const flag = eq > 0 ? a.slice(0, eq) : a;
    const value = (): string => {
      if (eq > 0) return a.slice(eq + 1);
      const v = argv[++i];
      if (v === undefined) throw new GuardError('USAGE', `${flag} needs a value`);
      return v;
    };
    if (a === '--') {
      o.command = argv.slice(i + 1) as string[];
      break;
    }
    switch (flag) {
      case '--profile': o.profile = value(); break;
      case '--report': o.report = value(); break;
      case '--format': {
        const f = value();
        if (f !== 'text' && f !== 'json') throw new GuardError('USAGE', `--format must be text or json, not \`${f}\``);
        o.format = f;
        break;
      }
      case '--allow-net': o.allowNet.push(value()); break;
      case '--write': o.write.push(value()); break;
      case '--read': o.read.push(value()); break;
      case '--env': {
        const v = value();
        parseEnvSpec(v);
        o.env.push(v);
        break;
      }
      case '--memory': o.memory = parseSize(value(), '--memory'); break;
      case '--disk': o.disk = parseSize(value(), '--disk'); break;
      case '--audit': o.audit = true; break;
      case '--verbose': case '-v': o.verbose = true; break;
      case '--signal-group': o.signalGroup = true; break;
      case '--no-netns': o.netns = false; break;
      case '--help': case '-h': o.help = true; break;
      default:
        if (a.startsWith('-')) {
          const near = KNOWN.find((k) => k.startsWith(flag.slice(0, 5)));
          throw new GuardError('USAGE', `unknown option \`${flag}\`${near ? `; did you mean \`${near}\`?` : ''}`);
        }
        o.command = argv.slice(i) as string[];
        i = argv.length;
    }
  }
  return o;
}

export function writeReport(path: string, result: RunResult, format: 'text' | 'json'): void {
  const text = format === 'json' ? `${JSON.stringify(result, null, 2)}\n` : renderRunText(result);
  if (path === '-') process.stdout.write(format === 'json' ? `${JSON.stringify(result)}\n` : text);
  else writeFileSync(path, text);
}

export async function main(argv: string[]): Promise<number> {
  const o = parseCommandLine('run', RUN_USAGE, () => parseRunArgs(argv), true);
  if (typeof o === 'number') return o;
  // Under another guard's walls (its mark, confirmed by the kernel): say what to type instead.
  const outer = insideGuard();
  if (outer !== null) {
    process.stderr.write(nestedMessage('run', outer, o.command));
    return EXIT_NESTED;
  }
  const onEvent = o.verbose ? (e: RunEvent): void => void process.stderr.write(`guard: ${renderEventLine(e)}\n`) : undefined;
  let result: RunResult;
  try {
    result = await run(o.command, {
      ...(o.profile ? { profile: o.profile } : {}),
      allowNet: o.allowNet,
      write: o.write,
      read: o.read,
      passEnv: o.env,
      ...(o.memory !== undefined ? { memory: o.memory } : {}),
      ...(o.disk !== undefined ? { disk: o.disk } : {}),
      audit: o.audit,
      forwardSignals: true,
      signalGroup: o.signalGroup,
      netns: o.netns,
      ...(onEvent ? { onEvent } : {}),
    });
  } catch (e) {
    if (e instanceof RunError) {
      if (o.report) writeReport(o.report, e.result, o.format);
      process.stderr.write(`guard run: ${e.message} [${e.code}]\n`);
      return e.context.step === 'execve' ? 127 : 2;
    }
    if (e instanceof GuardError) {
      process.stderr.write(`guard run: ${e.message} [${e.code}]\n`);
      return 2;
    }
    throw e;
  }
  process.stderr.write(renderRunText(result));
  if (o.report) writeReport(o.report, result, o.format);
  return result.exitCode;
}
