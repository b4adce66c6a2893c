// Type-checked by scripts/consumer-check.mjs in a fresh consumer project under each module
// resolution a TypeScript user may have (node16 and nodenext as CommonJS and as ESM, bundler),
// with skipLibCheck off: the package's declarations must resolve and hold up in all of them.
import { BUILTIN_PROFILES, isGuardError, run, safeLoad, scan, type BuiltinProfile, type Report, type RunResult } from 'modelguard';

const profile: BuiltinProfile = 'inference-gpu';
export const names: readonly BuiltinProfile[] = BUILTIN_PROFILES;

export async function refusal(path: string): Promise<Report | undefined> {
  try {
    await safeLoad(path, { requireWalls: true });
    return undefined;
  } catch (e) {
    // the scan report a refused load rests on
    if (isGuardError(e) && e.code === 'UNSAFE_MODEL') return e.report;
    throw e;
  }
}

export async function verdict(path: string): Promise<string | undefined> {
  const report = await scan(path);
  return report.files[0]?.verdict;
}

export function sandboxed(): Promise<RunResult> {
  return run(['/bin/true'], { profile });
}
