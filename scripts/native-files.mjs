// Where the native parts live, for the scripts that build, ship and check them (prebuild.mjs,
// install-native.mjs). src/sandbox/native.ts looks in the same places at run time: a source build
// under build/Release first, then the binaries shipped for this platform under prebuilds/.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
/** The addon (Node-API: one binary serves every Node line) and the launcher. */
export const FILES = ['modelguard.node', 'guard-exec'];
/** Platforms we build prebuilt binaries for (the machine that packs must be one of them). */
export const PREBUILT_PLATFORMS = ['linux-x64'];

export const platformTag = () => `${process.platform}-${process.arch}`;
export const prebuiltDir = (tag = platformTag()) => join(ROOT, 'prebuilds', tag);
export const sourceBuildDir = () => join(ROOT, 'build', 'Release');

/**
 * Whether the addon and launcher in `dir` work on this machine: the addon loads (a missing or too
 * old glibc/libstdc++ fails here) and the launcher starts (it prints its usage and exits 2 when
 * given nothing to do). Returns undefined when they do, else why not.
 */
export function checkNative(dir) {
  const addon = join(dir, 'modelguard.node');
  const exec = join(dir, 'guard-exec');
  if (!existsSync(addon) || !existsSync(exec)) return `no ${FILES.join(' and ')} in ${dir}`;
  try {
    createRequire(import.meta.url)(addon);
  } catch (e) {
    return `${addon} does not load: ${String(e && e.message).split('\n')[0]}`;
  }
  const r = spawnSync(exec, [], { stdio: 'ignore', timeout: 10_000 });
  if (r.error) return `${exec} does not start: ${r.error.message}`;
  if (r.status !== 2) return `${exec} does not start (exit ${r.status ?? r.signal})`;
  return undefined;
}

/**
 * Runs node-gyp rebuild in the package root. Headers: npm's nodedir setting when there is one, else
 * the running Node's own folder when it ships them (the official tarballs and the npm
 * registry's `node` packages do), else node-gyp downloads them. Node-API headers of any supported Node
 * build an addon that loads on all of them.
 */
export function nodeGypRebuild(extra = []) {
  const own = join(dirname(process.execPath), '..');
  // (the registry's `node` package keeps them in its node-<platform>-<arch> dependency)
  const local = [own, join(own, 'node_modules', `node-${process.platform}-${process.arch}`)].find((d) => existsSync(join(d, 'include', 'node', 'node_api.h')));
  const nodedir = process.env.npm_config_nodedir || local;
  const args = ['rebuild', ...(nodedir ? [`--nodedir=${nodedir}`] : []), ...extra];
  return spawnSync('node-gyp', args, { cwd: ROOT, stdio: 'inherit', shell: process.platform === 'win32' });
}
