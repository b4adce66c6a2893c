import { decodeUtf8Strict } from './json-strict.js';

/**
 * The reading half of the HDF5 handler: opens a file with h5wasm (the HDF5 C library compiled to
 * WebAssembly) and returns the root attributes a Keras model keeps its architecture in, as plain
 * values. It runs on a parser worker (deadline-worker.ts): the library can loop forever on a
 * hostile file, and only a worker can be stopped mid-call.
 */

export interface Hdf5AttrRequest {
  path: string;
  /** Root attributes to read (model_config, training_config). */
  attrs: string[];
  /** Attributes declared (or found) larger than this are reported by size, never read whole. */
  maxChars: number;
}

export type Hdf5AttrValue =
  /** Declared beyond maxChars in its metadata: not read. */
  | { kind: 'declared-too-large'; declared: number }
  | { kind: 'too-long'; length: number }
  | { kind: 'not-string' }
  | { kind: 'text'; text: string };

export interface Hdf5Attrs {
  /** Set when the library could not open the file at all. */
  openError?: string;
  names: string[];
  values: Record<string, Hdf5AttrValue>;
  kerasVersion?: string;
}

type H5Module = typeof import('h5wasm/node');
let h5: Promise<H5Module> | undefined;
export async function loadH5(): Promise<H5Module> {
  h5 ??= import('h5wasm/node').then(async (m) => {
    const mod = await m.ready;
    // Make the library throw errors as exceptions instead of printing its error stack to stderr.
    (mod as unknown as { activate_throwing_error_handler?: () => number }).activate_throwing_error_handler?.();
    return m;
  });
  return h5;
}

export function attrText(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (value instanceof Uint8Array) return decodeUtf8Strict(value) ?? Buffer.from(value).toString('latin1');
  if (Array.isArray(value) && value.length === 1) return attrText(value[0]);
  return undefined;
}

export async function readHdf5Attrs(req: Hdf5AttrRequest): Promise<Hdf5Attrs> {
  const m = await loadH5();
  let file: InstanceType<H5Module['File']>;
  try {
    file = new m.File(req.path, 'r');
  } catch (e) {
    return { openError: String((e as Error)?.message ?? e), names: [], values: {} };
  }
  try {
    const attrs = file.attrs;
    const names = Object.keys(attrs);
    const values: Record<string, Hdf5AttrValue> = {};
    for (const name of req.attrs) {
      if (!names.includes(name)) continue;
      // The attribute's declared size comes from its metadata, before anything is read: h5wasm
      // reads a value whole (a 70 MB attribute peaks at ~700 MB), and a small file may declare
      // far more than it holds. A variable-length string's bytes live in the file's heap, so
      // the file bounds them.
      const attr = attrs[name];
      const declared = attr && !attr.metadata.vlen ? attr.metadata.size * Math.max(1, attr.metadata.total_size) : 0;
      if (declared > req.maxChars) {
        values[name] = { kind: 'declared-too-large', declared };
        continue;
      }
      const text = attrText(attr?.value);
      if (text === undefined) values[name] = { kind: 'not-string' };
      else if (text.length > req.maxChars) values[name] = { kind: 'too-long', length: text.length };
      else values[name] = { kind: 'text', text };
    }
    const out: Hdf5Attrs = { names, values };
    const kv = attrs.keras_version ? attrText(attrs.keras_version.value) : undefined;
    if (kv) out.kerasVersion = kv.slice(0, 40);
    return out;
  } finally {
    file.close();
  }
}
