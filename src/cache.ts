/**
 * modelguard's cache folder and its one file format: magic, CRC-32 of the payload (u32 LE), the
 * payload's length (u32 LE; snapshots, the largest, are ~31 MB), payload. Everything cached is derived (a Pyodide memory snapshot, a compiled BPF
 * program, V8's code for the run bundle) and rebuilt when missing: a file that fails its checks is
 * deleted, writes are atomic (temp file + rename), and a failed write is ignored because the cache
 * is only an optimisation.
 *
 * The checksum is there for torn or damaged files, not for an attacker: whoever can write the
 * user's cache folder can already change what that user runs. CRC-32 rather than sha256 because
 * `guard run` reads this on every start and node:crypto alone costs ~5 ms to load; zlib is cheap.
 */
import { closeSync, fsyncSync, mkdirSync, mkdtempSync, openSync, readFileSync, renameSync, rmSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { crc32 } from 'node:zlib';

/** MODELGUARD_CACHE_DIR, else $XDG_CACHE_HOME/modelguard, else ~/.cache/modelguard. */
export function cacheDir(): string {
  const env = process.env.MODELGUARD_CACHE_DIR;
  if (env) return env;
  const xdg = process.env.XDG_CACHE_HOME;
  return join(xdg && xdg.startsWith('/') ? xdg : join(homedir(), '.cache'), 'modelguard');
}

/** Makes temp and probe names unique within this process. */
let tmpSeq = 0;

/** What usableCacheDir() decided for a folder, kept so it is probed and said once per process. */
const resolved = new Map<string, string>();

/**
 * The cache folder to use: `dir` when it can be created and written, else a private temporary
 * folder (mode 0700, removed when this process exits), else '' (no cache: the VM boots cold).
 * A cache folder is an optimisation, so a broken one must never change a verdict: before this,
 * the worker launch failed on it and a benign file came out `suspicious`. The fallback is said
 * once on stderr.
 *
 * A shared per-user folder under /tmp is deliberately not used: another local user could create
 * it first and plant a snapshot the VM would boot from.
 */
export function usableCacheDir(dir: string = cacheDir()): string {
  const known = resolved.get(dir);
  if (known !== undefined) return known;
  let chosen = dir;
  const why = probeWritable(dir);
  if (why !== undefined) {
    chosen = privateTempCache();
    const instead = chosen ? `using a private temporary one for this process (${chosen})` : 'running without a cache (every VM boots cold)';
    process.stderr.write(`modelguard: the cache folder ${dir} is not usable (${why}); ${instead}. Set MODELGUARD_CACHE_DIR to a writable folder to keep the cache between runs.\n`);
  }
  resolved.set(dir, chosen);
  return chosen;
}

/** undefined when `dir` exists (or was created) and a file can be created in it; else why not. */
export function probeWritable(dir: string): string | undefined {
  try {
    ensureDir(dir);
    if (!statSync(dir).isDirectory()) return 'not a directory';
    const probe = join(dir, `.probe-${process.pid}-${(tmpSeq++).toString(36)}`);
    closeSync(openSync(probe, 'wx', 0o600));
    unlinkSync(probe);
    return undefined;
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    return err.code ? `${err.code}${err.syscall ? ` on ${err.syscall}` : ''}` : String(e);
  }
}

let privateDir: string | undefined;

function privateTempCache(): string {
  if (privateDir !== undefined) return privateDir;
  try {
    privateDir = mkdtempSync(join(tmpdir(), 'modelguard-cache-'));
    const mine = privateDir;
    process.once('exit', () => rmSync(mine, { recursive: true, force: true }));
  } catch {
    privateDir = '';
  }
  return privateDir;
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

const HEADER = 8;

/**
 * The payload of a checked file, or undefined when it is missing or damaged. A damaged file is
 * removed unless `keepDamaged` (a reader that may not write, such as a walled worker: its attempt
 * would be a denied, reported write).
 */
export function readChecked(path: string, magic: Buffer, keepDamaged = false): Buffer | undefined {
  let file: Buffer;
  try {
    file = readFileSync(path);
  } catch {
    return undefined;
  }
  const payload = checkedPayload(file, magic);
  if (!payload && !keepDamaged) discard(path);
  return payload;
}

/**
 * The payload of a checked file already read whole (magic, CRC-32, length, payload), or undefined
 * when a check fails. `crcVouched`: the caller knows this very file passed its CRC before (it
 * checked the file's identity), so the 30 MiB CRC is not computed again; magic and length still are.
 */
export function checkedPayload(file: Buffer, magic: Buffer, crcVouched = false): Buffer | undefined {
  const start = magic.length + HEADER;
  const payload = file.subarray(start);
  const ok =
    file.length > start &&
    file.subarray(0, magic.length).equals(magic) &&
    file.readUInt32LE(magic.length + 4) === payload.length &&
    (crcVouched || file.readUInt32LE(magic.length) === crc32(payload));
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
  const tmp = `${path}.${process.pid}.${Date.now().toString(36)}${(tmpSeq++).toString(36)}.tmp`;
  try {
    ensureDir(dirname(path));
    const fd = openSync(tmp, 'wx', 0o600);
    try {
      const header = Buffer.alloc(HEADER);
      header.writeUInt32LE(crc32(payload), 0);
      header.writeUInt32LE(payload.length, 4);
      writeSync(fd, magic);
      writeSync(fd, header);
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
