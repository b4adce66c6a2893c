/**
 * Compiled BPF programs, cached on disk. libseccomp takes ~10 ms to build the binary-tree filter of
 * a full profile, on the path of every `guard run`, and the same spec through the same libseccomp
 * on the same architecture always gives the same program.
 *
 * The key is the spec (syscall numbers are already resolved in it), the libseccomp version and API
 * level, and the architecture, written out in full at the head of the file and compared byte for
 * byte on every read; the file name is only a CRC-32 of it (no node:crypto on this path, see
 * ../cache.ts), so two keys sharing a name just take turns. A changed profile, kernel table or
 * library therefore never meets a stale program.
 *
 * The cache folder is the user's own (../cache.ts): whoever can write it can already change what
 * that user runs. A file is still checked (checksum, key, a shape the kernel would accept) before
 * its program is used, and anything else is compiled afresh.
 */
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { cacheDir, readChecked, writeChecked } from '../cache.js';
import type { NativeAddon, NativeFilterSpec } from './native.js';

const MAGIC = Buffer.from('MGBPF02\0', 'latin1');
/** One classic BPF instruction (struct sock_filter) and the kernel's BPF_MAXINSNS. */
const INSN_BYTES = 8;
const MAX_INSNS = 4096;

function cacheKey(native: NativeAddon, spec: NativeFilterSpec): Buffer {
  const v = native.version();
  const text = JSON.stringify({ spec, libseccomp: v.libseccomp, api: v.api, arch: v.arch }, (_k, x: unknown) => (typeof x === 'bigint' ? `${x}n` : x));
  return Buffer.from(text, 'utf8');
}

function pathFor(key: Buffer, dir: string): string {
  return join(dir, 'bpf', `${crc32(key).toString(16).padStart(8, '0')}.bpf`);
}

export function filterCachePath(native: NativeAddon, spec: NativeFilterSpec, dir = cacheDir()): string {
  return pathFor(cacheKey(native, spec), dir);
}

/** native.compileFilter(spec), from the cache when an intact copy made for this very key is there. */
export function compileFilterCached(native: NativeAddon, spec: NativeFilterSpec, dir = cacheDir()): Buffer {
  const key = cacheKey(native, spec);
  const path = pathFor(key, dir);
  // Payload: u32 LE key length, key, program.
  const hit = readChecked(path, MAGIC);
  if (hit && hit.length >= 4) {
    const keyLen = hit.readUInt32LE(0);
    const program = hit.subarray(4 + keyLen);
    if (4 + keyLen <= hit.length && hit.subarray(4, 4 + keyLen).equals(key) && program.length > 0 && program.length % INSN_BYTES === 0 && program.length <= MAX_INSNS * INSN_BYTES) {
      return Buffer.from(program);
    }
  }
  const program = native.compileFilter(spec);
  const len = Buffer.alloc(4);
  len.writeUInt32LE(key.length);
  writeChecked(path, MAGIC, Buffer.concat([len, key, program]));
  return program;
}
