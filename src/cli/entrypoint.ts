/**
 * `guard entrypoint [options] -- CMD ARGS…` — for `ENTRYPOINT ["guard", "entrypoint", "--"]`.
 * Flags win over environment variables:
 *   --profile / MODELGUARD_PROFILE      sandbox profile (default inference)
 *   --scan / MODELGUARD_SCAN            paths or globs scanned before start (space/comma separated)
 *   --fail-on / MODELGUARD_FAIL_ON      suspicious (default) | invalid | malicious
 *   --report / MODELGUARD_REPORT        report file, or `-` for one JSON line on stdout
 *   --allow-net / MODELGUARD_ALLOW_NET  HOST:PORT destinations (space/comma separated)
 *   --write / MODELGUARD_WRITE          writable folders (colon/comma separated)
 *   --signal-group / MODELGUARD_SIGNAL_GROUP=1  signals go to the command's process group
 * Exit: the command's status (128 + signal when killed); 3 when the gate refused; 2 on error, and
 * when started under another guard's walls (sandbox/nested.ts).
 */
import { writeFileSync } from 'node:fs';
import { parseCommandLine } from './args.js';
import { GuardError } from '../errors.js';
import type { FailOn } from '../report/model.js';
import { renderText } from '../report/render.js';
import { entrypoint, envList, EXIT_REFUSED, type EntrypointReport } from '../sandbox/entrypoint.js';
import { renderEventLine, renderRunText, renderWallsLines } from '../sandbox/render.js';
import { RunError, type RunResult } from '../sandbox/run.js';
import { EXIT_NESTED, insideGuard, nestedMessage } from '../sandbox/nested.js';

const USAGE = `Usage: guard entrypoint [options] -- CMD ARGS…

Container entrypoint: scans the model files, refuses to start on a dangerous one (exit 3),
runs CMD behind the guard run walls as a tini-grade PID 1, and writes a report when it stops.

Options (environment variable in brackets):
  --profile NAME|FILE     [MODELGUARD_PROFILE]      sandbox profile (default inference)
  --scan PATH|GLOB        [MODELGUARD_SCAN]         scan before start; repeatable
  --fail-on LEVEL         [MODELGUARD_FAIL_ON]      suspicious | invalid | malicious (default suspicious)
  --report FILE|-         [MODELGUARD_REPORT]       exit report; - = one JSON line on stdout
  --allow-net HOST:PORT   [MODELGUARD_ALLOW_NET]    allowed destination; repeatable
  --write DIR             [MODELGUARD_WRITE]        writable folder; repeatable
  --signal-group          [MODELGUARD_SIGNAL_GROUP] forward signals to CMD's process group
  --verbose                                         stream events to stderr
`;

interface Parsed {
  profile?: string;
  scan: string[];
  failOn: FailOn;
  report?: string;
  allowNet: string[];
  write: string[];
  signalGroup: boolean;
  verbose: boolean;
  command: string[];
  help: boolean;
}

export function parseEntrypointArgs(argv: readonly string[], env: NodeJS.ProcessEnv): Parsed {
  const p: Parsed = {
    ...(env.MODELGUARD_PROFILE ? { profile: env.MODELGUARD_PROFILE } : {}),
    scan: envList(env.MODELGUARD_SCAN),
    failOn: 'suspicious',
    ...(env.MODELGUARD_REPORT ? { report: env.MODELGUARD_REPORT } : {}),
    allowNet: envList(env.MODELGUARD_ALLOW_NET),
    write: envList(env.MODELGUARD_WRITE, /[:,]+/),
    signalGroup: env.MODELGUARD_SIGNAL_GROUP === '1' || env.MODELGUARD_SIGNAL_GROUP === 'true',
    verbose: false,
    command: [],
    help: false,
  };
  let failOn = env.MODELGUARD_FAIL_ON;
  const fromFlags: Partial<Record<'scan' | 'allowNet' | 'write', string[]>> = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') {
      p.command = argv.slice(i + 1) as string[];
      break;
    }
    const eq = a.startsWith('--') ? a.indexOf('=') : -1;
    const flag = eq > 0 ? a.slice(0, eq) : a;
    const value = (): string => {
      if (eq > 0) return a.slice(eq + 1);
      const v = argv[++i];
      if (v === undefined) throw new GuardError('USAGE', `${flag} needs a value`);
      return v;
    };
    const push = (k: 'scan' | 'allowNet' | 'write'): void => void (fromFlags[k] ??= []).push(value());
    switch (flag) {
      case '--profile': p.profile = value(); break;
      case '--scan': push('scan'); break;
      case '--fail-on': failOn = value(); break;
      case '--report': p.report = value(); break;
      case '--allow-net': push('allowNet'); break;
      case '--write': push('write'); break;
      case '--signal-group': p.signalGroup = true; break;
      case '--verbose': p.verbose = true; break;
      case '--help': case '-h': p.help = true; break;
      default:
        if (a.startsWith('-')) throw new GuardError('USAGE', `unknown option \`${flag}\` (see \`guard entrypoint --help\`)`);
        p.command = argv.slice(i) as string[];
        i = argv.length;
    }
  }
  Object.assign(p, fromFlags);
  if (failOn !== undefined) {
    if (failOn !== 'suspicious' && failOn !== 'invalid' && failOn !== 'malicious') throw new GuardError('USAGE', `fail-on must be suspicious, invalid or malicious, not \`${failOn}\` (MODELGUARD_FAIL_ON / --fail-on)`);
    p.failOn = failOn;
  }
  return p;
}

function writeReport(dest: string | undefined, report: EntrypointReport | (RunResult & { gate: null; scan: null })): void {
  if (!dest) return;
  if (dest === '-') process.stdout.write(`${JSON.stringify(report)}\n`);
  else writeFileSync(dest, `${JSON.stringify(report, null, 2)}\n`);
}

export async function main(argv: string[]): Promise<number> {
  const p = parseCommandLine('entrypoint', USAGE, () => parseEntrypointArgs(argv, process.env), false);
  if (typeof p === 'number') return p;
  // Under another guard's walls (its mark, confirmed by the kernel): that guard gated and walls
  // the command already, and this one could neither scan nor start it; say what to type instead.
  const outer = insideGuard();
  if (outer !== null) {
    process.stderr.write(nestedMessage('entrypoint', outer, p.command));
    return EXIT_NESTED;
  }
  let report: EntrypointReport;
  try {
    report = await entrypoint(p.command, {
      ...(p.profile ? { profile: p.profile } : {}),
      scan: p.scan,
      failOn: p.failOn,
      allowNet: p.allowNet,
      write: p.write,
      signalGroup: p.signalGroup,
      ...(p.verbose ? { onEvent: (e) => void process.stderr.write(`guard: ${renderEventLine(e)}\n`) } : {}),
      // In the log as the server starts (a pod's log is read then, not at exit): what was gated, which walls are up, what is missing here.
      onStart: (gate, walls) => {
        const scanned = gate.scanned > 0 ? `scanned ${gate.scanned} file(s), none reached ${gate.failOn}; ` : '';
        process.stderr.write(`guard entrypoint: ${scanned}starting \`${p.command.join(' ')}\`\n${renderWallsLines(walls).join('\n')}\n`);
      },
    });
  } catch (e) {
    if (e instanceof RunError) {
      writeReport(p.report, { ...e.result, gate: null, scan: null });
      process.stderr.write(`guard entrypoint: ${e.message} [${e.code}]\n`);
      return e.context.step === 'execve' ? 127 : 2;
    }
    if (e instanceof GuardError) {
      process.stderr.write(`guard entrypoint: ${e.message} [${e.code}]\n`);
      return 2;
    }
    throw e;
  }
  if (report.gate?.refused) {
    if (report.scan) process.stderr.write(renderText(report.scan));
    process.stderr.write(`guard entrypoint: refusing to start \`${p.command.join(' ')}\`: ${report.gate.failing.map((f) => `${f.path} is ${f.verdict}`).join('; ')} (fail-on ${report.gate.failOn})\n`);
    writeReport(p.report, report);
    return EXIT_REFUSED;
  }
  if (report.gate && report.gate.scanned > 0) process.stderr.write(`guard entrypoint: scanned ${report.gate.scanned} file(s), none reached ${report.gate.failOn}\n`);
  process.stderr.write(renderRunText(report as RunResult));
  writeReport(p.report, report);
  return report.exitCode;
}
