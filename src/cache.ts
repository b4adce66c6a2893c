/**
 * modelguard's cache folder and its one file format: magic, sha256 of the payload, payload.
 * Everything cached is derived (a Pyodide memory snapshot, a compiled BPF program) and rebuilt
 * when missing: a file that fails its checksum is deleted, writes are atomic (temp file +
 * rename), and a failed write is ignored because the cache is only an optimisation.
 */
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';

/** MODELGUARD_CACHE_DIR, else $XDG_CACHE_HOME/modelguard, else ~/.cache/modelguard. */
export function cacheDir(): string {
  const env = process.env.MODELGUARD_CACHE_DIR;
  if (env) return env;
  const xdg = process.env.XDG_CACHE_HOME;
  return join(xdg && xdg.startsWith('/') ? xdg : join(homedir(), '.cache'), 'modelguard');
}

/**
 * mkdir -p, one level at a time. Node's recursive mkdirSync loops forever where mkdir answers
 * ENOENT under an existing parent (a cache folder under /proc), so this one fails instead.
 */
export function ensureDir(dir: string, mode = 0o700): void {
  const missing: string[] = [];
  for (let d = dir; ; d = dirname(d)) {
    try {
      statSync(d);
      break;
    } catch {
      if (dirname(d) === d) break;
      missing.push(d);
    }
  }
  for (const d of missing.reverse()) {
    try {
      mkdirSync(d, { mode });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
  }
}

/** The payload of a checked file, or undefined when it is missing or corrupt (a corrupt file is removed). */
export function readChecked(path: string, magic: Buffer): Buffer | undefined {
  let file: Buffer;
  try {
    file = readFileSync(path);
  } catch {
    return undefined;
  }
  const payload = file.subarray(magic.length + 32);
  const ok =
    file.length > magic.length + 32 &&
    file.subarray(0, magic.length).equals(magic) &&
    createHash('sha256').update(payload).digest().equals(file.subarray(magic.length, magic.length + 32));
  if (!ok) discard(path);
  return ok ? payload : undefined;
}

export function discard(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    /* already gone */
  }
}

/** Writes a checked file atomically; returns the path, or undefined when it could not. */
export function writeChecked(path: string, magic: Buffer, payload: Uint8Array): string | undefined {
  const tmp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    ensureDir(dirname(path));
    const fd = openSync(tmp, 'wx', 0o600);
    try {
      writeSync(fd, magic);
      writeSync(fd, createHash('sha256').update(payload).digest());
      let off = 0;
      while (off < payload.length) off += writeSync(fd, payload, off, payload.length - off);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
    return path;
  } catch {
    discard(tmp);
    return undefined;
  }
}
