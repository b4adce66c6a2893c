/**
 * Finds and loads isolated-vm, the native module that holds the unpickler's isolate.
 *
 * isolated-vm is built against one V8, and each of its majors supports a different range of Node
 * lines (5.x: Node 18–22, built from source or fetched by prebuild-install; 6.x: Node 22–24 and
 * 7.x: Node 24+, both with prebuilt binaries inside the package). No single version serves every
 * Node line we support, so package.json depends on all three majors under aliases
 * (`isolated-vm-5`, `isolated-vm-6`, `isolated-vm-7`) as optional dependencies: npm skips a major
 * whose `engines` exclude the running Node and drops one whose build fails. What is left is
 * decided here, at first use: the newest major that loads in this process wins. A plain
 * `isolated-vm` that the consumer installed is the last resort.
 *
 * Only the members modelguard uses are declared, so that no emitted type names a package that
 * may be absent on the consumer's Node line.
 */
import { realpathSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { GuardError } from '../errors.js';

export interface IvmTransferOptions {
  copy?: boolean;
  reference?: boolean;
  release?: boolean;
}

export interface IvmReference {
  getSync(property: string, options?: IvmTransferOptions): unknown;
  setSync(property: string, value: unknown, options?: IvmTransferOptions): boolean;
  derefInto(): unknown;
  applySync(receiver: unknown, args: unknown[], options?: { timeout?: number; result?: IvmTransferOptions }): unknown;
  /** Runs the call on isolated-vm's own thread: the caller's event loop stays free to watch it. */
  apply(receiver: unknown, args: unknown[], options?: { timeout?: number; result?: IvmTransferOptions }): Promise<unknown>;
  release(): void;
}

export interface IvmContext {
  readonly global: IvmReference;
  evalSync(code: string, options?: { filename?: string; timeout?: number; copy?: boolean }): unknown;
}

export interface IvmScript {
  runSync(context: IvmContext, options?: { timeout?: number }): unknown;
}

export interface IvmIsolate {
  readonly isDisposed: boolean;
  createContextSync(): IvmContext;
  compileScriptSync(code: string, options?: { filename?: string }): IvmScript;
  getHeapStatisticsSync(): { total_heap_size: number };
  dispose(): void;
}

/** The part of isolated-vm's module that modelguard uses. */
export interface IsolatedVm {
  Isolate: new (options?: { memoryLimit?: number }) => IvmIsolate;
  ExternalCopy: new (value: unknown, options?: { transferOut?: boolean }) => { copyInto(options?: { release?: boolean; transferIn?: boolean }): unknown };
  Callback: new (fn: (...args: never[]) => unknown) => unknown;
}

/** The aliases package.json installs, newest first, then a consumer-installed `isolated-vm`. */
export const ISOLATED_VM_CANDIDATES = ['isolated-vm-7', 'isolated-vm-6', 'isolated-vm-5', 'isolated-vm'] as const;

/** Which isolated-vm major serves which Node line: for the message when none loads. */
function majorFor(nodeMajor: number): string {
  if (nodeMajor >= 26) return '7';
  if (nodeMajor >= 24) return '7 or 6';
  if (nodeMajor >= 22) return '6 or 5';
  return '5';
}

export interface LoadedIsolatedVm {
  ivm: IsolatedVm;
  /** The alias (or `isolated-vm`) that loaded. */
  name: string;
  version: string;
  /** Its package folder, real path. */
  dir: string;
}

let loaded: LoadedIsolatedVm | undefined;
let failure: GuardError | undefined;

function packageInfo(require: NodeJS.Require, name: string): { dir: string; version: string } {
  const manifest = require.resolve(`${name}/package.json`);
  const { version } = require(manifest) as { version: string };
  return { dir: realpathSync(dirname(manifest)), version };
}

/** The isolated-vm this process uses, loaded once; throws UNSUPPORTED naming each candidate tried and the fix. */
export function loadIsolatedVm(): LoadedIsolatedVm {
  if (loaded) return loaded;
  if (failure) throw failure;
  const require = createRequire(import.meta.url);
  const tried: string[] = [];
  for (const name of ISOLATED_VM_CANDIDATES) {
    let info: { dir: string; version: string };
    try {
      info = packageInfo(require, name);
    } catch {
      tried.push(`${name}: not installed`);
      continue;
    }
    try {
      const ivm = require(name) as IsolatedVm;
      if (typeof ivm.Isolate !== 'function') throw new Error('no Isolate export');
      loaded = { ivm, name, version: info.version, dir: info.dir };
      return loaded;
    } catch (e) {
      tried.push(`${name}@${info.version}: ${(e instanceof Error ? e.message : String(e)).split('\n')[0]}`);
    }
  }
  const nodeMajor = Number(process.versions.node.split('.')[0]);
  failure = new GuardError(
    'UNSUPPORTED',
    `the unpickler VM needs isolated-vm built for Node ${process.versions.node} (ABI ${process.versions.modules}), and none loaded:\n  ${tried.join('\n  ')}\n` +
      `  Node ${nodeMajor} needs isolated-vm ${majorFor(nodeMajor)}. modelguard installs it as an optional dependency; it is missing when optional dependencies were omitted, ` +
      `its install script was not allowed (npm 11: add "isolated-vm": true to "allowScripts" in your package.json), or it had to be compiled and no C++ toolchain was found ` +
      `(install python3, make and g++, then run \`npm rebuild isolated-vm\`). Or install a fitting one yourself: \`npm install isolated-vm@${majorFor(nodeMajor).split(' ')[0]}\`.`,
    { context: { step: 'vm-load' } },
  );
  throw failure;
}

/**
 * Package folders of every installed candidate, without loading any: a walled worker must be able
 * to read whichever one it will load.
 */
/** Packages an isolated-vm line loads at run time besides itself. */
const ISOLATED_VM_RUNTIME_DEPS = ['node-gyp-build'];

export function isolatedVmDirs(): string[] {
  const require = createRequire(import.meta.url);
  const dirs: string[] = [];
  for (const name of ISOLATED_VM_CANDIDATES) {
    let dir: string;
    try {
      dir = packageInfo(require, name).dir;
    } catch {
      continue; /* not installed */
    }
    dirs.push(dir);
    // isolated-vm 6 and 7 find their prebuilt binary through node-gyp-build, resolved from their
    // own folder: the walled worker must read it too (Node 24 and 26 found none without it).
    for (const dep of ISOLATED_VM_RUNTIME_DEPS) {
      try {
        dirs.push(packageInfo(createRequire(join(dir, 'package.json')), dep).dir);
      } catch {
        /* this line does not use it */
      }
    }
  }
  return [...new Set(dirs)];
}
