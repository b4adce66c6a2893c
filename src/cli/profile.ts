/** `guard profile check FILE|NAME…` validates and explains sandbox profiles; `guard profile list`. */
import { GuardError } from '../errors.js';
import { explainProfile } from '../sandbox/explain.js';
import { loadNative, type NativeAddon } from '../sandbox/native.js';
import { BUILTIN_PROFILES, loadProfile } from '../sandbox/profile.js';

const USAGE = `Usage: guard profile check FILE|NAME…   validate and explain a profile (exit 0 valid, 1 invalid)
       guard profile list                  the built-in profiles
`;

export async function main(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === 'list') {
    for (const name of BUILTIN_PROFILES) {
      const p = loadProfile(name);
      process.stdout.write(`${name.padEnd(14)} ${p.modelguard.description}\n`);
    }
    return 0;
  }
  if (sub !== 'check' || rest.length === 0) {
    process.stderr.write(USAGE);
    return sub === '--help' || sub === '-h' ? 0 : 2;
  }
  let native: NativeAddon | null = null;
  try {
    native = loadNative();
  } catch {
    native = null;
  }
  let bad = 0;
  for (const target of rest) {
    try {
      const ex = explainProfile(loadProfile(target), native);
      process.stdout.write(`valid: ${ex.lines.join('\n')}\n`);
      for (const w of ex.warnings) process.stdout.write(`  warning: ${w}\n`);
    } catch (e) {
      if (!(e instanceof GuardError)) throw e;
      bad++;
      process.stdout.write(`invalid: ${e.message}\n`);
    }
  }
  return bad ? 1 : 0;
}
