#!/usr/bin/env node
import { fileURLToPath } from 'node:url';
import { VERSION } from '../version.js';
import { finish, quietOnClosedStdout, restoreSetAsideEnv } from './finish.js';

restoreSetAsideEnv();
quietOnClosedStdout();

/** Each subcommand lives in its own file and exports `main(argv) → exit code`. */
const COMMANDS: Record<string, string> = {
  scan: 'scan to judge model files (safe | suspicious | malicious | invalid | error)',
  load: 'load FILE: print the tensors and values a checkpoint holds, nothing executed',
  convert: 'convert IN OUT.safetensors: write an untrusted checkpoint as safetensors',
  run: 'run [options] -- CMD…: run a command behind seccomp, network denial and Landlock',
  entrypoint: 'entrypoint [options] -- CMD…: container PID 1 with a model gate and exit report',
  profile: 'profile check FILE: validate and explain a sandbox profile',
};

function usage(): string {
  const lines = Object.entries(COMMANDS).map(([k, v]) => `  guard ${k.padEnd(11)} ${v}`);
  return `modelguard ${VERSION}\n\nUsage:\n${lines.join('\n')}\n\nRun \`guard COMMAND --help\` for a command's options.\n`;
}

/** `guard run` from the bundle when the build made a current one (scripts/bundle.mjs says why);
 * bin/guard goes there directly through cli/run-launch.ts. */
async function runCommand(argv: string[]): Promise<number> {
  const { currentRunBundle, runFromBundle } = await import('./run-bundle.js');
  const bundle = currentRunBundle(fileURLToPath(new URL('../..', import.meta.url)));
  if (!bundle) return ((await import('./run.js')) as { main: (argv: string[]) => Promise<number> }).main(argv);
  return runFromBundle(bundle, argv);
}

/** Extensions whose formats never reach the VM (unless their bytes are a pickle: then the worker just starts later). */
const NO_VM_EXTENSIONS = /\.(safetensors|gguf|onnx|json|txt|md)$/i;

/**
 * Whether `guard scan ARGV` will probably run the VM: not with --fast or --help, and not when every
 * argument is a file of a format without pickles. A guess only decides when the worker starts.
 */
function scanMayNeedVm(argv: readonly string[]): boolean {
  if (argv.some((a) => a === '--fast' || a === '--help' || a === '-h')) return false;
  const paths = argv.filter((a) => !a.startsWith('-'));
  return paths.length === 0 || !paths.every((a) => NO_VM_EXTENSIONS.test(a));
}

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd === undefined || cmd === '--help' || cmd === '-h' || cmd === 'help') {
    process.stdout.write(usage());
    return cmd === undefined ? 2 : 0;
  }
  if (cmd === '--version' || cmd === '-V') {
    process.stdout.write(`${VERSION}\n`);
    return 0;
  }
  if (!(cmd in COMMANDS)) {
    process.stderr.write(`guard: unknown command \`${cmd}\`\n\n${usage()}`);
    return 2;
  }
  let mod: { main: (argv: string[]) => Promise<number> };
  try {
    if (cmd === 'run') return await runCommand(rest);
    // One worker for a command-line scan unless MODELGUARD_WORKERS says otherwise: a one-shot
    // process rarely has enough VM work to repay a second boot (~1 s of a core). Measured on the
    // shared 2-core machine, folder of 200 small models, interleaved: one worker 3.3–3.7 s, two
    // 5.2–5.8 s, before this branch 4.2–4.7 s. Library callers keep the core-sized pool.
    if (cmd === 'scan') process.env.MODELGUARD_WORKERS ??= '1';
    if (cmd === 'scan' && scanMayNeedVm(rest)) {
      // Start the unpickler worker now: its boot (~1 s of CPU, on another core) overlaps loading
      // the scanner's modules and the static passes instead of following them.
      const { defaultPool } = await import('../unpickler/pool.js');
      defaultPool().warm();
    }
    mod = (await import(`./${cmd}.js`)) as typeof mod;
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'ERR_MODULE_NOT_FOUND' && String(err.message).includes(`/cli/${cmd}.js`)) {
      process.stderr.write(`guard: \`${cmd}\` is not available in this build\n`);
      return 2;
    }
    throw e;
  }
  return mod.main(rest);
}

finish(main(process.argv.slice(2)));
