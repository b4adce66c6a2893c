import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FormatContext, FormatHandler } from './types.js';
import { isJsonObject, parseJsonStrict } from './json-strict.js';
import { judgeKerasConfig } from './keras.js';
import { DeadlineError, SharedDeadlineWorker } from './deadline-worker.js';
import type { Hdf5AttrRequest, Hdf5Attrs } from './keras-h5-read.js';

/**
 * HDF5 files, read with h5wasm (the HDF5 C library compiled to WebAssembly) on a parser worker
 * with a deadline (keras-h5-read.ts): the library can loop forever on a hostile file. Legacy Keras `.h5`
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

/** Most CPU time (ms, the parser thread's) reading one HDF5 file's attributes may use, whatever maxScanMs allows. */
export const HDF5_READ_TIMEOUT_MS = 30_000;
/** Most CPU time (ms) a new worker may use to load h5wasm (it compiles the library). */
export const HDF5_START_TIMEOUT_MS = 120_000;
/** h5wasm on its own worker, kept between files; an Emscripten abort leaves the module unusable. */
const h5Worker = new SharedDeadlineWorker(new URL('./parser-worker.js', import.meta.url), (e) => e instanceof Error && /abort/i.test(e.message), { op: 'h5.ready', ms: HDF5_START_TIMEOUT_MS });

export const hdf5Handler: FormatHandler = {
  name: 'hdf5',
  // The signature decides; a `.h5`/`.hdf5` without one is still judged (as invalid) rather than skipped.
  detect: (head, _size, name) => signatureAt(head) >= 0 || /\.(h5|hdf5)$/i.test(name),
  async scan(ctx: FormatContext) {
    let path = ctx.depth === 0 ? ctx.filePath : undefined;
    if (path === undefined && ctx.source.size > HDF5_MAX_NESTED_BYTES) {
      ctx.sink.add({ rule: 'hdf5/not-analysed', severity: 'low', verdict: 'suspicious', message: `nested HDF5 member of ${ctx.source.size} bytes exceeds ${HDF5_MAX_NESTED_BYTES}; its attributes were not read` });
      return 'hdf5';
    }
    let format = 'hdf5';
    let tmp: string | undefined;
    const ms = Math.min(ctx.limits.maxScanMs, HDF5_READ_TIMEOUT_MS);
    try {
      if (path === undefined) {
        tmp = mkdtempSync(join(tmpdir(), 'modelguard-h5-'));
        path = join(tmp, 'member.h5');
        writeFileSync(path, ctx.source.read(0, ctx.source.size), { mode: 0o600 });
      }
      let r: Hdf5Attrs;
      try {
        const req: Hdf5AttrRequest = { path, attrs: CONFIG_ATTRS, maxChars: HDF5_MAX_CONFIG_CHARS };
        r = await h5Worker.call<Hdf5Attrs>('h5.read', req, ms);
      } catch (e) {
        if (!(e instanceof DeadlineError)) throw e;
        ctx.sink.add({ rule: 'hdf5/timeout', severity: 'high', verdict: 'error', message: `the HDF5 library timed out: it had not finished reading this file after ${ms} ms of CPU time and was stopped; not analysed` });
        return 'hdf5';
      }
      if (r.openError !== undefined) {
        ctx.sink.add({ rule: 'hdf5/unreadable', severity: 'medium', verdict: 'invalid', message: `the HDF5 library cannot open this file: ${r.openError}`.slice(0, 300) });
        return 'hdf5';
      }
      const names = r.names;
      if (names.includes('keras_version') || names.includes('model_config') || names.includes('layer_names')) format = 'keras-h5';
      for (const name of CONFIG_ATTRS) {
        const v = r.values[name];
        if (!v) continue;
        if (v.kind === 'declared-too-large') {
          ctx.sink.add({ rule: 'keras/config-too-large', severity: 'medium', verdict: 'suspicious', message: `root attribute ${name} declares ${v.declared} bytes, beyond ${HDF5_MAX_CONFIG_CHARS}; not read or analysed` });
          continue;
        }
        if (v.kind === 'not-string') {
          ctx.sink.add({ rule: 'keras/bad-config', severity: 'medium', verdict: 'invalid', message: `root attribute ${name} is not a string` });
          continue;
        }
        if (v.kind === 'too-long') {
          ctx.sink.add({ rule: 'keras/config-too-large', severity: 'medium', verdict: 'suspicious', message: `root attribute ${name} of ${v.length} characters exceeds ${HDF5_MAX_CONFIG_CHARS} and was not analysed` });
          continue;
        }
        const parsed = parseJsonStrict(v.text);
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
      if (r.kerasVersion) ctx.stats.kerasVersion = r.kerasVersion;
      ctx.stats.basis = format === 'keras-h5' ? 'Keras HDF5: only allowlisted Keras objects, no Lambda code' : 'HDF5 without a model config (data only)';
    } catch (e) {
      ctx.sink.add({ rule: 'hdf5/unreadable', severity: 'medium', verdict: 'invalid', message: `the HDF5 library failed on this file: ${String((e as Error)?.message ?? e)}`.slice(0, 300) });
    } finally {
      // Removed here, on the main thread: a worker stopped at its deadline cannot leave it behind.
      if (tmp) rmSync(tmp, { recursive: true, force: true });
    }
    return format;
  },
};
