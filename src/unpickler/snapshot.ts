import { closeSync, fstatSync, openSync, readdirSync, readSync, statSync, unlinkSync, type BigIntStats } from 'node:fs';
import { join } from 'node:path';
import { cacheDir, checkedPayload, discard, readChecked, writeChecked } from '../cache.js';
import type { PyodideAssets } from './assets.js';

/**
 * Pyodide memory snapshots, cached in the user's cache folder. A snapshot boots an isolate in a
 * few hundred milliseconds instead of seconds. File: magic, sha256 of the payload, payload. The key
 * covers the Pyodide version, the unpickler source, the prelude and the memory cap, so a changed
 * unpickler never boots from a stale interpreter. The file format and its checks are ../cache.ts's.
 *
 * Design note: a snapshot freezes Python's hash seed, so every VM shares one seed. Dict-heavy work
 * in the VM is bounded by the per-call time limit, not by hash randomisation.
 */
const MAGIC = Buffer.from('MGSNAP2\0', 'latin1');

export { cacheDir };

export function snapshotPath(assets: PyodideAssets, dir = cacheDir()): string {
  return join(dir, `pyodide-${assets.version}-${assets.key}.snap`);
}

/**
 * The cached snapshot, or undefined when missing or corrupt (a corrupt file is removed unless
 * `readOnly`). The payload is a view at offset 16 of an ArrayBuffer of its own (the file read
 * whole into one allocation), so the isolate can take the buffer without copying it.
 *
 * `verifiedKey`: the identity (fileIdentity) of the file as the host checked it in full
 * (verifySnapshot). When the opened file still has that identity its CRC is not computed again:
 * ~230 ms of a loaded 2-core machine's time for 30 MiB, on every worker start.
 */
export function readSnapshot(assets: PyodideAssets, dir = cacheDir(), readOnly = false, verifiedKey?: string): Uint8Array | undefined {
  const path = snapshotPath(assets, dir);
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch {
    return undefined;
  }
  let file: Buffer;
  let key: string;
  try {
    const st = fstatSync(fd, { bigint: true });
    key = fileIdentity(st);
    const size = Number(st.size);
    if (size > MAX_SNAPSHOT_FILE_BYTES) file = Buffer.alloc(0);
    else {
      file = Buffer.allocUnsafeSlow(size);
      let off = 0;
      while (off < size) {
        const n = readSync(fd, file, off, size - off, off);
        if (n === 0) break;
        off += n;
      }
      if (off < size) file = file.subarray(0, off);
    }
  } catch {
    return undefined;
  } finally {
    closeSync(fd);
  }
  const payload = checkedPayload(file, MAGIC, verifiedKey === key);
  if (!payload) {
    if (!readOnly) discard(path);
    return undefined;
  }
  return new Uint8Array(payload.buffer, payload.byteOffset, payload.byteLength);
}

/** Larger than any snapshot (~31 MB with a 1 GiB memory cap): a bigger file is not read. */
const MAX_SNAPSHOT_FILE_BYTES = 1024 * 1024 * 1024;

/**
 * A file's identity for the verified-snapshot key: device, inode, size, and modification and
 * change times in nanoseconds. A rewrite in place changes the times (the change time cannot be set
 * back), an atomic replacement the inode.
 */
export function fileIdentity(st: BigIntStats): string {
  return `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
}

const VERIFIED_MAGIC = Buffer.from('MGSNOK1\0', 'latin1');

/** Beside the snapshot: the identity of the file when the host last checked its CRC in full. */
export function verifiedRecordPath(snapshot: string): string {
  return `${snapshot}.ok`;
}

/**
 * Host side, before the first worker: whether the snapshot at `path` is intact. Its CRC is
 * checked in full the first time; the file's identity is then recorded beside it, and later runs
 * compare identities instead of reading 30 MiB (the record is written by the host, which may write
 * the cache; walled workers cannot). Returns the identity of an intact file (handed to the workers
 * as `verifiedKey`); `intact` false for a missing or damaged one.
 *
 * The CRC is there for torn or damaged files, not for an attacker (../cache.ts says why): whoever
 * can change the snapshot can change the record beside it.
 */
export function verifySnapshot(path: string): { intact: boolean; key?: string } {
  let key: string;
  try {
    key = fileIdentity(statSync(path, { bigint: true }));
  } catch {
    return { intact: false };
  }
  const record = readChecked(verifiedRecordPath(path), VERIFIED_MAGIC);
  if (record !== undefined && record.toString('utf8') === key) return { intact: true, key };
  if (!snapshotIntact(path)) return { intact: false };
  let after: string;
  try {
    after = fileIdentity(statSync(path, { bigint: true }));
  } catch {
    return { intact: true };
  }
  // Replaced while it was read (by a concurrent build): intact, but which identity to vouch for is
  // not known, so the workers check the CRC themselves this time.
  if (after !== key) return { intact: true };
  writeChecked(verifiedRecordPath(path), VERIFIED_MAGIC, Buffer.from(key, 'utf8'));
  return { intact: true, key };
}

/**
 * Whether the snapshot file at `path` passes its checks (magic, length, CRC), without touching it.
 * The host asks before its first worker starts: walled serving workers may not write the cache,
 * so a damaged file they found would be booted around on every run and never repaired. A damaged
 * file is not removed here; a forced rebuild replaces it atomically (rename), so a concurrent
 * reader sees either the old file (and rebuilds too) or the new one, never a gap or a torn file.
 */
export function snapshotIntact(path: string): boolean {
  return readChecked(path, MAGIC, true) !== undefined;
}

export function discardSnapshot(assets: PyodideAssets, dir = cacheDir()): void {
  discard(snapshotPath(assets, dir));
}

/** Writes atomically; failures are ignored (the cache is an optimisation). Returns the path or undefined. */
export function writeSnapshot(assets: PyodideAssets, snapshot: Uint8Array, dir = cacheDir()): string | undefined {
  return writeChecked(snapshotPath(assets, dir), MAGIC, snapshot);
}

/** Snapshots (and temp files) of other unpickler versions untouched this long are removed. */
export const STALE_SNAPSHOT_MS = 60 * 60 * 1000;

/**
 * Removes snapshots keyed for other unpickler sources or Pyodide versions (31 MB each) once a new
 * one exists, so upgrades do not pile them up. Runs in the host, never in a walled worker. Files
 * younger than STALE_SNAPSHOT_MS are kept: another installed version may be building or using one.
 * Returns the removed names.
 */
export function pruneStaleSnapshots(dir: string, keep: string, now = Date.now()): string[] {
  const removed: string[] = [];
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return removed;
  }
  for (const name of names) {
    if (!/^pyodide-.+\.snap(\.ok)?(\..+\.tmp)?$/.test(name)) continue;
    const path = join(dir, name);
    if (path === keep || path === verifiedRecordPath(keep)) continue;
    try {
      if (now - statSync(path).mtimeMs < STALE_SNAPSHOT_MS) continue;
      unlinkSync(path);
      removed.push(name);
    } catch {
      /* gone or not ours to remove */
    }
  }
  return removed;
}
