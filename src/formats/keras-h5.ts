import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FormatContext, FormatHandler } from './types.js';
import { decodeUtf8Strict, isJsonObject, parseJsonStrict } from './json-strict.js';
import { judgeKerasConfig } from './keras.js';

/**
 * HDF5 files, read with h5wasm (the HDF5 C library compiled to WebAssembly). Legacy Keras `.h5`
 * models keep their architecture as JSON in the root `model_config` attribute; a Lambda layer there
 * holds marshalled bytecode that `load_model` runs. Weights-only files carry no code.
 */

const HDF5_SIGNATURE = Buffer.from([0x89, 0x48, 0x44, 0x46, 0x0d, 0x0a, 0x1a, 0x0a]);
/** A nested HDF5 member is copied to a temporary file for the library; larger ones are not. */
export const HDF5_MAX_NESTED_BYTES = 256 * 1024 * 1024;
/** Largest `model_config` attribute parsed. */
export const HDF5_MAX_CONFIG_CHARS = 64 * 1024 * 1024;
const CONFIG_ATTRS = ['model_config', 'training_config'];

function signatureAt(head: Buffer): number {
  // The superblock may follow a user block of 512, 1024, 2048… bytes.
  for (const off of [0, 512, 1024, 2048]) if (head.length >= off + 8 && head.subarray(off, off + 8).equals(HDF5_SIGNATURE)) return off;
  return -1;
}

type H5Module = typeof import('h5wasm/node');
let h5: Promise<H5Module> | undefined;
async function loadH5(): Promise<H5Module> {
  h5 ??= import('h5wasm/node').then(async (m) => {
    const mod = await m.ready;
    // Make the library throw errors as exceptions instead of printing its error stack to stderr.
    (mod as unknown as { activate_throwing_error_handler?: () => number }).activate_throwing_error_handler?.();
    return m;
  });
  return h5;
}

function attrText(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (value instanceof Uint8Array) return decodeUtf8Strict(value) ?? Buffer.from(value).toString('latin1');
  if (Array.isArray(value) && value.length === 1) return attrText(value[0]);
  return undefined;
}

export const hdf5Handler: FormatHandler = {
  name: 'hdf5',
  // The signature decides; a `.h5`/`.hdf5` without one is still judged (as invalid) rather than skipped.
  detect: (head, _size, name) => signatureAt(head) >= 0 || /\.(h5|hdf5)$/i.test(name),
  async scan(ctx: FormatContext) {
    let path = ctx.depth === 0 ? ctx.filePath : undefined;
    let tmp: string | undefined;
    if (path === undefined) {
      if (ctx.source.size > HDF5_MAX_NESTED_BYTES) {
        ctx.sink.add({ rule: 'hdf5/not-analysed', severity: 'low', verdict: 'suspicious', message: `nested HDF5 member of ${ctx.source.size} bytes exceeds ${HDF5_MAX_NESTED_BYTES}; its attributes were not read` });
        return 'hdf5';
      }
      tmp = mkdtempSync(join(tmpdir(), 'modelguard-h5-'));
      path = join(tmp, 'member.h5');
      writeFileSync(path, ctx.source.read(0, ctx.source.size), { mode: 0o600 });
    }
    let format = 'hdf5';
    try {
      const m = await loadH5();
      let file: InstanceType<H5Module['File']> | undefined;
      try {
        file = new m.File(path, 'r');
      } catch (e) {
        ctx.sink.add({ rule: 'hdf5/unreadable', severity: 'medium', verdict: 'invalid', message: `the HDF5 library cannot open this file: ${(e as Error).message ?? e}`.slice(0, 300) });
        return 'hdf5';
      }
      try {
        const attrs = file.attrs;
        const names = Object.keys(attrs);
        if (names.includes('keras_version') || names.includes('model_config') || names.includes('layer_names')) format = 'keras-h5';
        for (const name of CONFIG_ATTRS) {
          if (!names.includes(name)) continue;
          // The attribute's declared size comes from its metadata, before anything is read: h5wasm
          // reads a value whole (a 70 MB attribute peaks at ~700 MB), and a small file may declare
          // far more than it holds. A variable-length string's bytes live in the file's heap, so
          // the file bounds them.
          const attr = attrs[name];
          const declared = attr && !attr.metadata.vlen ? attr.metadata.size * Math.max(1, attr.metadata.total_size) : 0;
          if (declared > HDF5_MAX_CONFIG_CHARS) {
            ctx.sink.add({ rule: 'keras/config-too-large', severity: 'medium', verdict: 'suspicious', message: `root attribute ${name} declares ${declared} bytes, beyond ${HDF5_MAX_CONFIG_CHARS}; not read or analysed` });
            continue;
          }
          const text = attrText(attr?.value);
          if (text === undefined) {
            ctx.sink.add({ rule: 'keras/bad-config', severity: 'medium', verdict: 'invalid', message: `root attribute ${name} is not a string` });
            continue;
          }
          if (text.length > HDF5_MAX_CONFIG_CHARS) {
            ctx.sink.add({ rule: 'keras/config-too-large', severity: 'medium', verdict: 'suspicious', message: `root attribute ${name} of ${text.length} characters exceeds ${HDF5_MAX_CONFIG_CHARS} and was not analysed` });
            continue;
          }
          const parsed = parseJsonStrict(text);
          const bad = parsed.issues.find((x) => x.kind !== 'duplicate-key');
          if (bad || parsed.value === undefined) {
            ctx.sink.add({ rule: 'keras/bad-config', severity: 'medium', verdict: 'invalid', message: `root attribute ${name} is not valid JSON (${bad?.message ?? 'empty'}); Keras cannot load this model` });
            continue;
          }
          for (const d of parsed.issues) ctx.sink.add({ rule: 'keras/duplicate-key', severity: 'medium', verdict: 'suspicious', message: `root attribute ${name}: ${d.message}; Python keeps the last value, a reviewer may have seen the first` });
          if (name === 'model_config' || isJsonObject(parsed.value)) {
            const layers = judgeKerasConfig(ctx.sink, parsed.value, { source: `HDF5 attribute ${name}` });
            if (name === 'model_config') ctx.stats.layers = layers;
          }
        }
        const kv = attrs.keras_version ? attrText(attrs.keras_version.value) : undefined;
        if (kv) ctx.stats.kerasVersion = kv.slice(0, 40);
        ctx.stats.basis = format === 'keras-h5' ? 'Keras HDF5: only allowlisted Keras objects, no Lambda code' : 'HDF5 without a model config (data only)';
      } finally {
        file.close();
      }
    } catch (e) {
      ctx.sink.add({ rule: 'hdf5/unreadable', severity: 'medium', verdict: 'invalid', message: `the HDF5 library failed on this file: ${String((e as Error)?.message ?? e)}`.slice(0, 300) });
    } finally {
      if (tmp) rmSync(tmp, { recursive: true, force: true });
    }
    return format;
  },
};
