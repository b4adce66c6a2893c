import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { GuardError } from '../errors.js';
import { PRELUDE } from './prelude.js';

/** Default cap on the VM's WebAssembly memory (pages of 64 KiB): 1 GiB. */
export const DEFAULT_WASM_MAX_PAGES = 16384;

/** Everything an isolate needs to boot Pyodide, read once per process. */
export interface PyodideAssets {
  version: string;
  /** The Pyodide binary with its memory maximum lowered, compiled on the host. */
  module: WebAssembly.Module;
  /** pyodide.asm.mjs turned into a classic script (no `import.meta`, no `export`). */
  asmScript: string;
  /** pyodide.js (the loader, a classic script defining `loadPyodide`). */
  loaderScript: string;
  lockFile: string;
  stdlib: Uint8Array;
  /** The restricted unpickler's Python source. */
  python: string;
  /** Key for snapshot caching: Pyodide version, unpickler source, prelude, memory cap. */
  key: string;
  maxPages: number;
}

const cache = new Map<number, PyodideAssets>();

/** The host's WebAssembly namespace (not in the ES2022 lib typings this project compiles against). */
interface WasmNamespace {
  Module: new (bytes: Uint8Array) => WebAssembly.Module;
}
const Wasm = (globalThis as unknown as { WebAssembly: WasmNamespace }).WebAssembly;

function pyodideDir(): string {
  const require = createRequire(import.meta.url);
  return dirname(require.resolve('pyodide/package.json'));
}

/** The unpickler's Python source: next to this file when run from src/, in src/ when run from dist/. */
export function pythonSourcePath(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  for (const p of [join(here, 'python', 'unpickler.py'), join(here, '..', '..', '..', 'src', 'unpickler', 'python', 'unpickler.py')]) {
    if (existsSync(p)) return p;
  }
  throw new GuardError('INTERNAL', `unpickler.py not found next to ${here}`, { context: { step: 'assets' } });
}

/** Reads an unsigned LEB128 at `p`; returns [value, next offset]. */
function leb(b: Uint8Array, p: number): [number, number] {
  let r = 0;
  let s = 0;
  for (;;) {
    const x = b[p++];
    if (x === undefined) throw new GuardError('INTERNAL', 'truncated wasm binary', { context: { step: 'assets' } });
    r += (x & 0x7f) * 2 ** s;
    s += 7;
    if ((x & 0x80) === 0) return [r, p];
  }
}

/**
 * `memoryLimit` does not cover WebAssembly memory, so the cap lives in the binary: the defined
 * memory's maximum is rewritten in place (same LEB128 width, padded) before compiling.
 */
export function capWasmMemory(src: Uint8Array, maxPages: number): Uint8Array {
  const b = new Uint8Array(src);
  let p = 8;
  while (p < b.length) {
    const id = b[p++] as number;
    const [size, start] = leb(b, p);
    if (id === 5) {
      let q = start;
      const [count, q1] = leb(b, q);
      q = q1;
      if (count !== 1) throw new GuardError('INTERNAL', `wasm defines ${count} memories`, { context: { step: 'assets' } });
      const flags = b[q++] as number;
      if ((flags & 1) === 0) throw new GuardError('INTERNAL', 'wasm memory has no maximum to lower', { context: { step: 'assets' } });
      const [min, q2] = leb(b, q);
      const maxStart = q2;
      const [, maxEnd] = leb(b, maxStart);
      const width = maxEnd - maxStart;
      const pages = Math.max(min, maxPages);
      if (pages >= 2 ** (7 * width)) throw new GuardError('USAGE', `wasm memory cap of ${pages} pages does not fit`, { context: { step: 'assets' } });
      let v = pages;
      for (let i = 0; i < width; i++) {
        b[maxStart + i] = (v & 0x7f) | (i < width - 1 ? 0x80 : 0);
        v = Math.floor(v / 128);
      }
      return b;
    }
    p = start + size;
  }
  throw new GuardError('INTERNAL', 'wasm binary has no memory section', { context: { step: 'assets' } });
}

export function loadAssets(maxPages = DEFAULT_WASM_MAX_PAGES): PyodideAssets {
  const hit = cache.get(maxPages);
  if (hit) return hit;
  const dir = pyodideDir();
  const version = (JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { version: string }).version;
  const wasm = capWasmMemory(readFileSync(join(dir, 'pyodide.asm.wasm')), maxPages);
  const module = new Wasm.Module(wasm);
  const asm = readFileSync(join(dir, 'pyodide.asm.mjs'), 'utf8');
  const exportLine = 'export default _createPyodideModule;';
  if (!asm.includes(exportLine)) throw new GuardError('INTERNAL', `pyodide ${version}: pyodide.asm.mjs has no \`${exportLine}\``, { context: { step: 'assets' } });
  const asmScript = asm.replaceAll('import.meta.url', '"file:///pyodide/pyodide.asm.mjs"').replace(exportLine, 'globalThis._createPyodideModule=_createPyodideModule;');
  const loaderScript = readFileSync(join(dir, 'pyodide.js'), 'utf8');
  const lockFile = readFileSync(join(dir, 'pyodide-lock.json'), 'utf8');
  const stdlib = new Uint8Array(readFileSync(join(dir, 'python_stdlib.zip')));
  const python = readFileSync(pythonSourcePath(), 'utf8');
  const key = createHash('sha256').update(`pyodide ${version}\0pages ${maxPages}\0`).update(PRELUDE).update('\0').update(python).digest('hex').slice(0, 24);
  const assets: PyodideAssets = { version, module, asmScript, loaderScript, lockFile, stdlib, python, key, maxPages };
  cache.set(maxPages, assets);
  return assets;
}
