import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, openSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { GuardError } from '../errors.js';
import { dtypeInfo } from './dtypes.js';
import type { Tensor } from './graph.js';

/**
 * Writes tensors as a spec-exact safetensors file: little-endian u64 header length, a JSON header
 * (tensors sorted by name, `__metadata__` string→string, padded with spaces to 8 bytes), then the
 * tensor bytes back to back in header order. Written to a temp file beside `out`, fsync'd, renamed:
 * a reader never sees half a file, and a failure leaves nothing behind.
 */
export function writeSafetensors(out: string, tensors: ReadonlyMap<string, Tensor>, metadata: Record<string, string> = {}): { bytes: number; tensors: number } {
  const names = [...tensors.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length > 0) header.__metadata__ = { ...metadata };
  let offset = 0;
  const parts: Uint8Array[] = [];
  for (const name of names) {
    if (name === '__metadata__') throw new GuardError('UNSUPPORTED', 'a tensor named `__metadata__` cannot be written to safetensors', { context: { step: 'convert' } });
    const t = tensors.get(name) as Tensor;
    const info = dtypeInfo(t.dtype);
    if (!info || !info.safetensors) throw new GuardError('UNSUPPORTED', `tensor ${JSON.stringify(name)} has dtype ${t.dtype}, which safetensors cannot hold`, { context: { step: 'convert' } });
    const bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    let numel = 1;
    for (const d of t.shape) numel *= d;
    if (numel * info.size !== bytes.length) throw new GuardError('INTERNAL', `tensor ${name}: shape and data length disagree`, { context: { step: 'convert' } });
    header[name] = { dtype: info.safetensors, shape: t.shape, data_offsets: [offset, offset + bytes.length] };
    offset += bytes.length;
    parts.push(bytes);
  }
  let json = Buffer.from(JSON.stringify(header), 'utf8');
  const pad = (8 - (json.length % 8)) % 8;
  if (pad > 0) json = Buffer.concat([json, Buffer.alloc(pad, 0x20)]);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  const tmp = join(dirname(out), `.${basename(out)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  let fd: number | undefined;
  try {
    fd = openSync(tmp, 'wx', 0o644);
    writeAll(fd, len);
    writeAll(fd, json);
    for (const p of parts) writeAll(fd, p);
    fsyncSync(fd);
    closeSync(fd);
    fd = undefined;
    renameSync(tmp, out);
  } catch (e) {
    if (fd !== undefined) closeSync(fd);
    try {
      unlinkSync(tmp);
    } catch {
      /* never created */
    }
    if (e instanceof GuardError) throw e;
    const err = e as NodeJS.ErrnoException;
    throw new GuardError('IO', `writing ${out}: ${err.code ?? ''} ${err.message}`, { cause: e, context: { path: out, step: 'convert' } });
  }
  return { bytes: 8 + json.length + offset, tensors: names.length };
}

function writeAll(fd: number, b: Uint8Array): void {
  let off = 0;
  while (off < b.length) off += writeSync(fd, b, off, Math.min(b.length - off, 1 << 30));
}
