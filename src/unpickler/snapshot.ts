import { readdirSync, statSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { cacheDir, discard, readChecked, writeChecked } from '../cache.js';
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

/** The cached snapshot, or undefined when missing or corrupt (a corrupt file is removed unless `readOnly`). */
export function readSnapshot(assets: PyodideAssets, dir = cacheDir(), readOnly = false): Uint8Array | undefined {
  const payload = readChecked(snapshotPath(assets, dir), MAGIC, readOnly);
  return payload && new Uint8Array(payload.buffer, payload.byteOffset, payload.byteLength);
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
    if (!/^pyodide-.+\.snap(\..+\.tmp)?$/.test(name)) continue;
    const path = join(dir, name);
    if (path === keep) continue;
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
