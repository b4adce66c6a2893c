import { createHash, randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import type { PyodideAssets } from './assets.js';

/**
 * Pyodide memory snapshots, cached in the user's cache folder. A snapshot boots an isolate in a
 * few hundred milliseconds instead of seconds. File: magic, sha256 of the payload, payload. The key
 * covers the Pyodide version, the unpickler source, the prelude and the memory cap, so a changed
 * unpickler never boots from a stale interpreter. Writes are atomic (temp file + rename); a file
 * that fails its checksum is deleted and rebuilt.
 *
 * Design note: a snapshot freezes Python's hash seed, so every VM shares one seed. Dict-heavy work
 * in the VM is bounded by the per-call time limit, not by hash randomisation.
 */
const MAGIC = Buffer.from('MGSNAP1\0', 'latin1');

export function cacheDir(): string {
  const env = process.env.MODELGUARD_CACHE_DIR;
  if (env) return env;
  const xdg = process.env.XDG_CACHE_HOME;
  return join(xdg && xdg.startsWith('/') ? xdg : join(homedir(), '.cache'), 'modelguard');
}

export function snapshotPath(assets: PyodideAssets, dir = cacheDir()): string {
  return join(dir, `pyodide-${assets.version}-${assets.key}.snap`);
}

/** The cached snapshot, or undefined when missing or corrupt (a corrupt file is removed). */
export function readSnapshot(assets: PyodideAssets, dir = cacheDir()): Uint8Array | undefined {
  const path = snapshotPath(assets, dir);
  let file: Buffer;
  try {
    file = readFileSync(path);
  } catch {
    return undefined;
  }
  const payload = file.subarray(MAGIC.length + 32);
  const ok =
    file.length > MAGIC.length + 32 &&
    file.subarray(0, MAGIC.length).equals(MAGIC) &&
    createHash('sha256').update(payload).digest().equals(file.subarray(MAGIC.length, MAGIC.length + 32));
  if (!ok) {
    discardSnapshot(assets, dir);
    return undefined;
  }
  return new Uint8Array(payload.buffer, payload.byteOffset, payload.byteLength);
}

export function discardSnapshot(assets: PyodideAssets, dir = cacheDir()): void {
  try {
    unlinkSync(snapshotPath(assets, dir));
  } catch {
    /* already gone */
  }
}

/** Writes atomically; failures are ignored (the cache is an optimisation). Returns the path or undefined. */
export function writeSnapshot(assets: PyodideAssets, snapshot: Uint8Array, dir = cacheDir()): string | undefined {
  const path = snapshotPath(assets, dir);
  const tmp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const fd = openSync(tmp, 'wx', 0o600);
    try {
      writeSync(fd, MAGIC);
      writeSync(fd, createHash('sha256').update(snapshot).digest());
      let off = 0;
      while (off < snapshot.length) off += writeSync(fd, snapshot, off, snapshot.length - off);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
    return path;
  } catch {
    try {
      unlinkSync(tmp);
    } catch {
      /* nothing to clean */
    }
    return undefined;
  }
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
