import { writeFileSync, renameSync } from 'node:fs';
import { GuardError } from '../errors.js';
import { scan } from '../scan.js';
import { reaches, type FailOn } from '../report/model.js';
import { renderJson, renderSarif, renderText } from '../report/render.js';
import { allowConflictWarnings } from '../formats/pickle/policy.js';
import { oneOf, parseArgs } from './args.js';
import { interruptible, type Interruptible } from './interrupt.js';
import { closeUnpicklerPool } from '../index.js';

const HELP = `Usage: guard scan [options] PATH…

Judges each model file: safe | suspicious | malicious | invalid | error.
Directories are scanned recursively.

Options:
  --format text|json|sarif   report format (default text)
  --output FILE              write the report to FILE instead of stdout
  --fail-on LEVEL            suspicious | invalid | malicious (default suspicious)
  --allow NAME               accept a qualified global (module.name or module.*); repeatable.
                             Never clears a dangerous name (os.system, eval, import gadgets…)
  --fast                     static pass only (skip the VM pass)
  --require-walls            fail (exit 2) rather than run the VM without the kernel walls
  --verbose                  show informational findings too
  --no-color                 plain text even on a terminal

Exit codes: 0 nothing reached --fail-on, 1 something did, 2 usage or I/O error.
`;

export async function main(argv: string[]): Promise<number> {
  const { options, positionals } = parseArgs(
    argv,
    {
      format: { value: true },
      output: { value: true, short: 'o' },
      'fail-on': { value: true },
      allow: { value: true, multiple: true },
      fast: {},
      'require-walls': {},
      verbose: { short: 'v' },
      'no-color': {},
      help: { short: 'h' },
    },
    'scan',
  );
  if (options.help) {
    process.stdout.write(HELP);
    return 0;
  }
  if (positionals.length === 0) throw new GuardError('USAGE', 'guard scan: give at least one file or directory (see `guard scan --help`)');
  const format = oneOf(options.format, ['text', 'json', 'sarif'] as const, 'format', 'text');
  const failOn = oneOf(options['fail-on'], ['suspicious', 'invalid', 'malicious'] as const, 'fail-on', 'suspicious') as FailOn;
  const allow = (options.allow as string[] | undefined) ?? [];
  // Dangerous names stay malicious whatever --allow says; a pattern that would match one is a
  // mistake (or a bypass attempt in a script) the user should see before the report.
  for (const w of allowConflictWarnings(allow)) process.stderr.write(`guard scan: warning: ${w}\n`);
  const tty = process.stderr.isTTY === true;
  let lastProgress = 0;
  // SIGINT/SIGTERM abort the scan: the report of the files finished so far is written, then 130/143.
  const stop = interruptible('scan');
  const report = await scan(positionals, {
    allow,
    fast: options.fast === true,
    requireWalls: options['require-walls'] === true,
    signal: stop.signal,
    onProgress: tty
      ? (done, total, path) => {
          const now = Date.now();
          if (now - lastProgress < 100 && done !== total) return;
          lastProgress = now;
          process.stderr.write(`\r\u001b[K[${done}/${total}] ${path.slice(-60)}${done === total ? '\r\u001b[K' : ''}`);
        }
      : undefined,
  }).finally(() => {
    if (stop.exitCode === undefined) stop.close();
  });
  const out =
    format === 'json'
      ? renderJson(report)
      : format === 'sarif'
        ? renderSarif(report)
        : renderText(report, { color: options.output === undefined && process.stdout.isTTY === true && options['no-color'] !== true, verbose: options.verbose === true });
  if (typeof options.output === 'string') {
    const tmp = `${options.output}.tmp-${process.pid}`;
    writeFileSync(tmp, out);
    renameSync(tmp, options.output);
  } else process.stdout.write(out);
  if (stop.exitCode !== undefined) stopNow(stop);
  const verdicts = report.files.map((f) => f.verdict);
  if (report.repository) verdicts.push(report.repository.verdict);
  if (verdicts.some((v) => reaches(v, failOn))) return 1;
  if (verdicts.includes('error')) return 2;
  return 0;
}

/**
 * After the partial report is written: kill the VM workers (close() signals them at once), remove
 * the temporary folder, and exit with 130/143 now, not when the file in progress would have
 * finished (its inflated temp file would keep growing on an unlinked inode meanwhile).
 */
function stopNow(stop: Interruptible): never {
  void closeUnpicklerPool();
  const code = stop.exitCode ?? 130;
  stop.close();
  process.stderr.write(`guard: scan interrupted by ${stop.stoppedBy ?? 'a signal'}; the report holds the files finished so far\n`);
  process.exit(code);
}
