/**
 * Compiled BPF programs, cached on disk. libseccomp takes ~10 ms to build the binary-tree filter of
 * a full profile, on the path of every `guard run`, and the same spec through the same libseccomp
 * on the same architecture always gives the same program. The key is the sha256 of the spec
 * (syscall numbers are already resolved in it), the libseccomp version and API level, and the
 * architecture, so a changed profile, kernel table or library never meets a stale program.
 *
 * The cache folder is the user's own (../cache.ts): whoever can write it can already change what
 * that user runs. A file is still checked (checksum, and a shape the kernel would accept) before
 * its program is used, and anything else is compiled afresh.
 */
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { cacheDir, readChecked, writeChecked } from '../cache.js';
import type { NativeAddon, NativeFilterSpec } from './native.js';

const MAGIC = Buffer.from('MGBPF01\0', 'latin1');
/** One classic BPF instruction (struct sock_filter) and the kernel's BPF_MAXINSNS. */
const INSN_BYTES = 8;
const MAX_INSNS = 4096;

export function filterCachePath(native: NativeAddon, spec: NativeFilterSpec, dir = cacheDir()): string {
  const v = native.version();
  const key = createHash('sha256')
    .update(JSON.stringify({ spec, libseccomp: v.libseccomp, api: v.api, arch: v.arch }, (_k, x: unknown) => (typeof x === 'bigint' ? `${x}n` : x)))
    .digest('hex')
    .slice(0, 32);
  return join(dir, 'bpf', `${key}.bpf`);
}

/** native.compileFilter(spec), from the cache when an intact copy is there. */
export function compileFilterCached(native: NativeAddon, spec: NativeFilterSpec, dir = cacheDir()): Buffer {
  const path = filterCachePath(native, spec, dir);
  const hit = readChecked(path, MAGIC);
  if (hit && hit.length % INSN_BYTES === 0 && hit.length <= MAX_INSNS * INSN_BYTES) return Buffer.from(hit);
  const program = native.compileFilter(spec);
  writeChecked(path, MAGIC, program);
  return program;
}
