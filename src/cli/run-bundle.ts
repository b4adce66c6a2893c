/**
 * Loads dist/bundle/run.cjs (scripts/bundle.mjs) with a V8 code cache: `guard run` starts once
 * per command it wraps, and compiling the bundle's 300 KB would otherwise be ~12 ms of every
 * start. The cache is V8's own serialized code for the bundle, taken after a first run (so it
 * holds the functions that run needed, not only the top level) and kept in the user's cache
 * folder in ../cache.ts's checked format. V8 rejects a cache made for other source, another V8 or
 * other flags; a rejected or missing cache is rebuilt on that run.
 */
import { readFileSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { Script } from 'node:vm';
import { cacheDir, readChecked, writeChecked } from '../cache.js';

export interface RunModule {
  main(argv: string[]): Promise<number>;
}

const MAGIC = Buffer.from('MGV8CC1\0', 'latin1');

/**
 * `dist`/bundle/run.cjs when it was built after tsc last wrote `dist`/src (tsc rewrites every
 * output, so a bundle older than cli/run.js is stale and the unbundled modules are used instead).
 */
export function currentRunBundle(dist: string): string | undefined {
  const bundle = join(dist, 'bundle', 'run.cjs');
  try {
    return statSync(bundle).mtimeMs >= statSync(join(dist, 'src', 'cli', 'run.js')).mtimeMs ? bundle : undefined;
  } catch {
    return undefined;
  }
}

/** `guard run ARGV` from the bundle, leaving a code cache for the next run when there was none. */
export async function runFromBundle(bundle: string, argv: string[]): Promise<number> {
  const { module, afterwards } = loadRunBundle(bundle);
  const code = await module.main(argv);
  afterwards();
  return code;
}

/**
 * Runs the CommonJS bundle at `file` and returns its exports. `afterwards()` writes the code cache
 * when there was none to use; call it once the command's work is done.
 */
export function loadRunBundle(file: string, dir = cacheDir()): { module: RunModule; afterwards: () => void } {
  const cachePath = join(dir, 'v8', `run-${process.version}-${process.arch}.cache`);
  const cachedData = readChecked(cachePath, MAGIC);
  // Node's own CommonJS wrapper, so the bundle sees the usual module scope.
  const source = `(function (exports, require, module, __filename, __dirname) {${readFileSync(file, 'utf8')}\n})`;
  const script = new Script(source, { filename: file, ...(cachedData ? { cachedData } : {}) });
  const wrapper = script.runInThisContext() as (e: object, r: NodeRequire, m: { exports: object }, f: string, d: string) => void;
  const mod = { exports: {} as object };
  wrapper.call(mod.exports, mod.exports, createRequire(file), mod, file, dirname(file));
  const reuse = cachedData !== undefined && !script.cachedDataRejected;
  return {
    module: mod.exports as RunModule,
    afterwards: () => {
      if (!reuse) writeChecked(cachePath, MAGIC, script.createCachedData());
    },
  };
}
