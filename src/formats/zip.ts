import { constants as zc, inflateRawSync } from 'node:zlib';
import { crc32 } from './crc32.js';
import type { FindingSink } from '../report/findings.js';
import type { Limits } from '../limits.js';
import { BufferSource, SliceSource, type ByteSource } from './source.js';
import type { FormatContext, FormatHandler } from './types.js';
import { looksLikePickle } from './pickle/handler.js';
import { isKerasArchive, scanKerasArchive, type ArchiveView } from './keras.js';

/**
 * A ZIP reader that sees what both PyTorch (miniz) and Python's zipfile see: it follows the
 * central directory like both, reads members whatever their flag bits claim (miniz ignores
 * encryption flags), compares every local header with its central record, and reports each
 * disagreement as a finding instead of trusting either side.
 */

const SIG_LOCAL = 0x04034b50;
const SIG_CENTRAL = 0x02014b50;
const SIG_EOCD = 0x06054b50;
const SIG_ZIP64_EOCD = 0x06064b50;
const SIG_ZIP64_LOCATOR = 0x07064b50;
/** EOCD is at most 22 bytes + a 65535-byte comment from the end. */
const EOCD_SEARCH = 22 + 0xffff;
/** Bytes of a member read to decide whether it is a pickle or another format. */
export const PROBE_BYTES = 4096;
/** Uncompressed members smaller than this never count as a bomb by ratio alone. */
const BOMB_MIN_BYTES = 1024 * 1024;

export interface ZipEntry {
  index: number;
  name: string;
  localName: string | null;
  method: number;
  flags: number;
  crc32: number;
  compressedSize: number;
  uncompressedSize: number;
  localHeaderOffset: number;
  /** First byte of the member's data (after the local header), or -1 if the local header is bad. */
  dataOffset: number;
}

export interface ZipArchive {
  entries: ZipEntry[];
  /** Bytes before the first local header that the central directory does not account for. */
  prefixBytes: number;
}

export class ZipFormatError extends Error {
  constructor(
    message: string,
    readonly offset?: number,
  ) {
    super(message);
    this.name = 'ZipFormatError';
  }
}

type Report = (f: Parameters<FindingSink['add']>[0]) => void;

/** Parses the central directory. Structural problems throw; anomalies are reported. */
export function readZip(src: ByteSource, limits: Limits, report: Report = () => {}): ZipArchive {
  const size = src.size;
  if (size < 22) throw new ZipFormatError('too small to be a zip archive');
  const tailStart = Math.max(0, size - EOCD_SEARCH);
  const tail = src.read(tailStart, size - tailStart);
  let eocd = -1;
  for (let i = tail.length - 22; i >= 0; i--) {
    if (tail.readUInt32LE(i) === SIG_EOCD) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) throw new ZipFormatError('no end-of-central-directory record: truncated or not a zip');
  const eocdPos = tailStart + eocd;
  const commentLen = tail.readUInt16LE(eocd + 20);
  if (eocd + 22 + commentLen !== tail.length) {
    report({ rule: 'zip/trailing-data', severity: 'low', verdict: 'suspicious', message: `${tail.length - eocd - 22 - commentLen} bytes after the end-of-central-directory record`, location: { offset: eocdPos } });
  }
  let count = tail.readUInt16LE(eocd + 10);
  let cdSize = tail.readUInt32LE(eocd + 12);
  let cdOffset = tail.readUInt32LE(eocd + 16);
  let cdEnd = eocdPos;
  if (eocdPos >= 20 && (count === 0xffff || cdSize === 0xffffffff || cdOffset === 0xffffffff || src.read(eocdPos - 20, 4).readUInt32LE(0) === SIG_ZIP64_LOCATOR)) {
    const loc = src.read(eocdPos - 20, 20);
    if (loc.length === 20 && loc.readUInt32LE(0) === SIG_ZIP64_LOCATOR) {
      const z64pos = Number(loc.readBigUInt64LE(8));
      const rec = src.read(z64pos, 56);
      if (rec.length < 56 || rec.readUInt32LE(0) !== SIG_ZIP64_EOCD) throw new ZipFormatError('ZIP64 locator points at no ZIP64 end record', eocdPos - 20);
      const n64 = rec.readBigUInt64LE(32);
      const size64 = rec.readBigUInt64LE(40);
      const off64 = rec.readBigUInt64LE(48);
      if (n64 > BigInt(limits.maxMembers) || size64 > BigInt(size) || off64 > BigInt(size)) throw new ZipFormatError('ZIP64 end record declares sizes beyond the file', z64pos);
      count = Number(n64);
      cdSize = Number(size64);
      cdOffset = Number(off64);
      cdEnd = z64pos;
    }
  }
  if (count > limits.maxMembers) throw new ZipFormatError(`${count} members exceed the limit of ${limits.maxMembers}`);
  // Python's zipfile tolerates data prepended to the archive and shifts every offset; miniz does not.
  const actualCdStart = cdEnd - cdSize;
  if (actualCdStart < 0) throw new ZipFormatError('central directory larger than the file', eocdPos);
  const prefix = actualCdStart - cdOffset;
  if (prefix !== 0) {
    report({
      rule: 'zip/prepended-data',
      severity: 'medium',
      verdict: 'suspicious',
      message: `the central directory sits ${prefix} bytes away from where the archive says: data was prepended (Python's zipfile reads it, PyTorch's reader does not)`,
      location: { offset: cdOffset },
    });
  }
  const cd = src.read(actualCdStart, cdSize);
  if (cd.length < cdSize) throw new ZipFormatError('central directory truncated', actualCdStart);
  const entries: ZipEntry[] = [];
  let p = 0;
  // Python's zipfile walks the directory by its size and offset and never reads the count;
  // PyTorch's miniz trusts the count. Both walks are made and any difference is a finding.
  for (let i = 0; i < count || p < cd.length; i++) {
    if (i >= limits.maxMembers) throw new ZipFormatError(`more than ${limits.maxMembers} members in the central directory`, actualCdStart + p);
    if (p + 46 > cd.length || cd.readUInt32LE(p) !== SIG_CENTRAL) {
      if (i < count) throw new ZipFormatError(`central directory entry ${i} is malformed`, actualCdStart + p);
      report({
        rule: 'zip/directory-disagreement',
        severity: 'high',
        verdict: 'suspicious',
        message: `${cd.length - p} bytes of the central directory after the ${count} entries the end record counts are not a directory entry: Python's zipfile refuses the archive, PyTorch's reader does not`,
        location: { offset: actualCdStart + p },
      });
      break;
    }
    const flags = cd.readUInt16LE(p + 8);
    const method = cd.readUInt16LE(p + 10);
    const crc = cd.readUInt32LE(p + 16);
    let csize = cd.readUInt32LE(p + 20);
    let usize = cd.readUInt32LE(p + 24);
    const nameLen = cd.readUInt16LE(p + 28);
    const extraLen = cd.readUInt16LE(p + 30);
    const commentLen2 = cd.readUInt16LE(p + 32);
    let localOff = cd.readUInt32LE(p + 42);
    if (p + 46 + nameLen + extraLen + commentLen2 > cd.length) throw new ZipFormatError(`central directory entry ${i} overruns the directory`, actualCdStart + p);
    const name = cd.toString(flags & 0x800 ? 'utf8' : 'latin1', p + 46, p + 46 + nameLen);
    const extra = cd.subarray(p + 46 + nameLen, p + 46 + nameLen + extraLen);
    // ZIP64 extended information: only the fields saturated in the fixed header are present, in order.
    for (let e = 0; e + 4 <= extra.length; ) {
      const id = extra.readUInt16LE(e);
      const len = extra.readUInt16LE(e + 2);
      if (id === 0x0001) {
        let q = e + 4;
        const big = (): number => {
          if (q + 8 > e + 4 + len || q + 8 > extra.length) throw new ZipFormatError(`ZIP64 extra field of ${name} is short`, actualCdStart + p);
          const v = extra.readBigUInt64LE(q);
          q += 8;
          if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new ZipFormatError(`ZIP64 size of ${name} is absurd`, actualCdStart + p);
          return Number(v);
        };
        if (usize === 0xffffffff) usize = big();
        if (csize === 0xffffffff) csize = big();
        if (localOff === 0xffffffff) localOff = big();
      }
      e += 4 + len;
    }
    localOff += prefix;
    entries.push({ index: i, name, localName: null, method, flags, crc32: crc, compressedSize: csize, uncompressedSize: usize, localHeaderOffset: localOff, dataOffset: -1 });
    p += 46 + nameLen + extraLen + commentLen2;
  }
  if (entries.length !== count) {
    report({
      rule: 'zip/directory-disagreement',
      severity: 'high',
      verdict: 'suspicious',
      message: `the end record counts ${count} members but the central directory holds ${entries.length}: PyTorch's reader lists ${Math.min(count, entries.length)}, Python's zipfile ${entries.length}; all ${entries.length} are analysed`,
      location: { offset: eocdPos },
    });
  }
  // Local headers: both readers take the data offset from the local header's own lengths.
  for (const e of entries) {
    const lh = src.read(e.localHeaderOffset, 30);
    if (lh.length < 30 || lh.readUInt32LE(0) !== SIG_LOCAL) {
      report({ rule: 'zip/bad-local-header', severity: 'high', verdict: 'invalid', message: `member ${e.name}: no local header where the central directory points`, location: { member: e.name, offset: e.localHeaderOffset } });
      continue;
    }
    const lflags = lh.readUInt16LE(6);
    const lmethod = lh.readUInt16LE(8);
    const nameLen = lh.readUInt16LE(26);
    const extraLen = lh.readUInt16LE(28);
    e.localName = src.read(e.localHeaderOffset + 30, nameLen).toString(lflags & 0x800 ? 'utf8' : 'latin1');
    e.dataOffset = e.localHeaderOffset + 30 + nameLen + extraLen;
    if (e.localName !== e.name) {
      report({
        rule: 'zip/name-mismatch',
        severity: 'medium',
        verdict: 'suspicious',
        message: `member's local header names it \`${e.localName}\` but the central directory says \`${e.name}\`: Python's zipfile refuses it, PyTorch reads it`,
        location: { member: e.name, offset: e.localHeaderOffset },
      });
    }
    if (lmethod !== e.method) {
      report({ rule: 'zip/method-mismatch', severity: 'medium', verdict: 'suspicious', message: `member ${e.name}: local header says method ${lmethod}, central directory ${e.method}`, location: { member: e.name, offset: e.localHeaderOffset } });
    }
    if (e.dataOffset + e.compressedSize > size) {
      report({ rule: 'zip/member-beyond-file', severity: 'high', verdict: 'invalid', message: `member ${e.name} claims ${e.compressedSize} bytes that run past the end of the file`, location: { member: e.name, offset: e.dataOffset } });
      e.dataOffset = -1;
    }
  }
  walkLocalHeaders(src, entries, prefix, limits, report);
  // Overlapping members are the "overlapping files" zip-bomb construction.
  const spans = entries.filter((e) => e.dataOffset >= 0).map((e) => [e.localHeaderOffset, e.dataOffset + e.compressedSize, e] as const).sort((a, b) => a[0] - b[0]);
  for (let i = 1; i < spans.length; i++) {
    const prev = spans[i - 1] as (typeof spans)[number];
    const cur = spans[i] as (typeof spans)[number];
    if (cur[0] < prev[1]) {
      report({ rule: 'zip/overlapping-members', severity: 'high', verdict: 'invalid', message: `members ${prev[2].name} and ${cur[2].name} overlap: a zip-bomb construction or a parser trick`, location: { member: cur[2].name, offset: cur[0] } });
      break;
    }
  }
  const names = new Set<string>();
  for (const e of entries) {
    if (names.has(e.name)) report({ rule: 'zip/duplicate-name', severity: 'medium', verdict: 'suspicious', message: `two members are named ${e.name}: readers disagree on which one wins`, location: { member: e.name } });
    names.add(e.name);
  }
  return { entries, prefixBytes: prefix };
}

/**
 * Streaming readers (and scanners built on them) read a zip front to back by its local headers
 * and never look at the central directory. Every local header in the chain from the start is
 * matched with a directory entry; one the directory does not list is a hidden member: reported,
 * and added so that it is analysed too.
 */
function walkLocalHeaders(src: ByteSource, entries: ZipEntry[], prefix: number, limits: Limits, report: Report): void {
  const known = new Set(entries.map((e) => e.localHeaderOffset));
  let pos = src.size >= 4 && src.read(0, 4).readUInt32LE(0) === SIG_LOCAL ? 0 : Math.max(0, prefix);
  let seen = 0;
  while (pos + 30 <= src.size && seen++ < limits.maxMembers) {
    const lh = src.read(pos, 30);
    if (lh.length < 30 || lh.readUInt32LE(0) !== SIG_LOCAL) break;
    const flags = lh.readUInt16LE(6);
    const method = lh.readUInt16LE(8);
    const crc = lh.readUInt32LE(14);
    let csize = lh.readUInt32LE(18);
    let usize = lh.readUInt32LE(22);
    const nameLen = lh.readUInt16LE(26);
    const extraLen = lh.readUInt16LE(28);
    const name = src.read(pos + 30, nameLen).toString(flags & 0x800 ? 'utf8' : 'latin1');
    const extra = src.read(pos + 30 + nameLen, extraLen);
    for (let e = 0; e + 4 <= extra.length; e += 4 + extra.readUInt16LE(e + 2)) {
      if (extra.readUInt16LE(e) !== 0x0001 || extra.readUInt16LE(e + 2) < 16 || e + 20 > extra.length) continue;
      const u = extra.readBigUInt64LE(e + 4);
      const c = extra.readBigUInt64LE(e + 12);
      if (u > BigInt(Number.MAX_SAFE_INTEGER) || c > BigInt(Number.MAX_SAFE_INTEGER)) return;
      if (usize === 0xffffffff) usize = Number(u);
      if (csize === 0xffffffff) csize = Number(c);
    }
    const dataOffset = pos + 30 + nameLen + extraLen;
    // Sizes in a trailing data descriptor: the local chain cannot be followed past this member.
    const sizesLater = (flags & 0x08) !== 0 && csize === 0;
    if (!known.has(pos) && !sizesLater && dataOffset + csize <= src.size) {
      report({
        rule: 'zip/hidden-member',
        severity: 'high',
        verdict: 'suspicious',
        message: `a local header for \`${name}\` that the central directory does not list: readers that stream the archive extract it, directory readers do not; analysed as a member`,
        location: { member: name, offset: pos },
      });
      entries.push({ index: entries.length, name, localName: name, method, flags, crc32: crc, compressedSize: csize, uncompressedSize: usize, localHeaderOffset: pos, dataOffset });
    }
    if (sizesLater) break;
    pos = dataOffset + csize + ((flags & 0x08) !== 0 ? dataDescriptorLength(src, dataOffset + csize) : 0);
  }
}

/** A data descriptor: optional signature, CRC-32, then 4- or 8-byte sizes (8 only with ZIP64, not told apart here). */
function dataDescriptorLength(src: ByteSource, at: number): number {
  const b = src.read(at, 4);
  return b.length === 4 && b.readUInt32LE(0) === 0x08074b50 ? 16 : 12;
}

export class ZipBombError extends Error {}

/**
 * The member's bytes as a ByteSource: a window of the file for stored members, inflated bytes
 * (capped, so a bomb costs at most `cap` bytes) for deflated ones.
 */
export function openEntry(src: ByteSource, e: ZipEntry, cap: number): ByteSource {
  if (e.dataOffset < 0) throw new ZipFormatError(`member ${e.name} has no readable data`);
  if (e.method === 0) return new SliceSource(src, e.dataOffset, Math.min(e.compressedSize, src.size - e.dataOffset));
  if (e.method === 8) return new BufferSource(inflateCapped(src.read(e.dataOffset, e.compressedSize), cap));
  throw new ZipFormatError(`member ${e.name} uses compression method ${e.method}, which PyTorch cannot read either`);
}

export function inflateCapped(compressed: Buffer, cap: number, partial = false): Buffer {
  try {
    return inflateRawSync(compressed, { maxOutputLength: cap, finishFlush: partial ? zc.Z_SYNC_FLUSH : zc.Z_FINISH });
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'ERR_BUFFER_TOO_LARGE' || /maxOutputLength|larger than/i.test(String(e.message))) throw new ZipBombError(`inflates to more than ${cap} bytes`);
    throw new ZipFormatError(`deflate stream is corrupt: ${e.message}`);
  }
}

/** Deflate never expands more than ~1032:1, so k compressed bytes bound the output of a prefix. */
const DEFLATE_MAX_RATIO = 1032;

/**
 * The first `need` bytes of a deflate stream, inflating growing compressed prefixes with a sync
 * flush, so a bomb never costs more than a small multiple of `need`.
 */
export function inflatePrefix(src: ByteSource, e: ZipEntry, need: number): Buffer {
  let k = Math.min(e.compressedSize, Math.max(256, Math.ceil(need / 4)));
  for (;;) {
    const out = inflateCapped(src.read(e.dataOffset, k), k * DEFLATE_MAX_RATIO + 1024, true);
    if (out.length >= need || k >= e.compressedSize) return out.subarray(0, need);
    k = Math.min(e.compressedSize, k * 4);
  }
}

/** First bytes of a member without inflating all of it. */
export function probeEntry(src: ByteSource, e: ZipEntry): Buffer {
  if (e.dataOffset < 0) return Buffer.alloc(0);
  if (e.method === 0) return src.read(e.dataOffset, Math.min(PROBE_BYTES, e.compressedSize));
  if (e.method !== 8) return Buffer.alloc(0);
  return inflatePrefix(src, e, PROBE_BYTES);
}

/**
 * A deflated member read lazily: `size` is the declared size and reads inflate only the prefix
 * they need. Used for members whose headers are all a parser looks at (arrays in an .npz).
 */
export class LazyInflateSource implements ByteSource {
  readonly size: number;
  private prefix: Buffer = Buffer.alloc(0);
  constructor(
    private readonly src: ByteSource,
    private readonly entry: ZipEntry,
    private readonly cap: number,
  ) {
    this.size = entry.uncompressedSize;
  }
  read(offset: number, length: number): Buffer {
    const end = Math.min(this.size, offset + Math.max(0, length));
    if (end > this.prefix.length) {
      if (end > this.cap) throw new ZipBombError(`reading ${end} bytes of ${this.entry.name} exceeds the ${this.cap}-byte inflate limit`);
      this.prefix = inflatePrefix(this.src, this.entry, end);
      // The declared size is a claim: a stream that ends early is corrupt, never a short read a
      // caller might retry forever.
      if (this.prefix.length < end) {
        throw new ZipFormatError(`member ${this.entry.name} declares ${this.size} bytes but its data inflates to only ${this.prefix.length}`);
      }
    }
    return this.prefix.subarray(Math.min(offset, this.prefix.length), Math.min(end, this.prefix.length));
  }
  close(): void {}
}

const PICKLE_NAME = /(^|\/)[^/]*\.(pkl|pickle)$/i;

export const zipHandler: FormatHandler = {
  name: 'zip',
  detect(head) {
    return head.length >= 4 && (head.readUInt32LE(0) === SIG_LOCAL || head.readUInt32LE(0) === SIG_EOCD);
  },
  scan: scanZip,
};

async function scanZip(ctx: FormatContext): Promise<string> {
  const { source: src, sink, limits } = ctx;
  let zip: ZipArchive;
  try {
    zip = readZip(src, limits, (f) => sink.add(f));
  } catch (e) {
    if (!(e instanceof ZipFormatError)) throw e;
    sink.add({ rule: 'zip/malformed', severity: 'high', verdict: 'invalid', message: `not a readable zip archive: ${e.message}`, ...(e.offset !== undefined ? { location: { offset: e.offset } } : {}) });
    return 'zip';
  }
  const names = zip.entries.map((e) => e.name);
  ctx.stats.members = zip.entries.length;
  // PyTorch takes the archive root from the first member's folder and loads `<root>/data.pkl`.
  const firstRoot = names[0]?.includes('/') ? (names[0] as string).slice(0, (names[0] as string).indexOf('/')) : null;
  const torchMain = firstRoot !== null ? `${firstRoot}/data.pkl` : null;
  const isTorch = torchMain !== null && names.includes(torchMain);
  const isNpz = names.length > 0 && names.every((n) => n.endsWith('.npy'));
  const isKeras = isKerasArchive(names);
  const isTorchScript = isTorch && names.some((n) => n.startsWith(`${firstRoot}/code/`) || n === `${firstRoot}/constants.pkl`);
  let inflated = 0;
  let unreadable = 0;
  for (const e of zip.entries) {
    if (e.dataOffset < 0 || e.name.endsWith('/')) continue;
    const msink = sink.forMember(e.name);
    const encrypted = (e.flags & 0x41) !== 0;
    if (e.flags & 0x61) {
      const bits = [e.flags & 0x1 ? '0x1 (encrypted)' : '', e.flags & 0x20 ? '0x20 (patched data)' : '', e.flags & 0x40 ? '0x40 (strong encryption)' : ''].filter(Boolean).join(', ');
      msink.add({
        rule: 'zip/flag-bits',
        severity: 'medium',
        verdict: 'suspicious',
        message: `flag bits ${bits}: Python's zipfile (and scanners built on it) refuse this member, PyTorch's miniz reads it as plain data`,
        location: { offset: e.localHeaderOffset },
      });
    }
    if (e.uncompressedSize > BOMB_MIN_BYTES && e.compressedSize > 0 && e.uncompressedSize / e.compressedSize > limits.maxCompressionRatio && e.method !== 0) {
      msink.add({ rule: 'zip/bomb', severity: 'high', verdict: 'invalid', message: `declares ${e.uncompressedSize} bytes from ${e.compressedSize} compressed (ratio ${Math.round(e.uncompressedSize / e.compressedSize)}): a zip bomb; not inflated` });
      continue;
    }
    if (e.method !== 0 && e.method !== 8) {
      msink.add({ rule: 'zip/unsupported-method', severity: 'medium', verdict: 'error', message: `compression method ${e.method} cannot be read, so this member was not analysed` });
      unreadable++;
      continue;
    }
    let head: Buffer;
    try {
      head = probeEntry(src, e);
    } catch (err) {
      if (encrypted) {
        msink.add({ rule: 'zip/encrypted', severity: 'high', verdict: 'error', message: 'member is encrypted and its contents cannot be analysed' });
        unreadable++;
        continue;
      }
      msink.add({ rule: 'zip/corrupt-member', severity: 'high', verdict: 'invalid', message: `member cannot be read: ${(err as Error).message}` });
      continue;
    }
    const expectPickle = e.name === torchMain || PICKLE_NAME.test(e.name);
    const pickleLike = looksLikePickle(head);
    if (encrypted && !pickleLike && !expectPickle && !head.subarray(0, 6).equals(Buffer.from('\x93NUMPY', 'latin1'))) {
      msink.add({ rule: 'zip/encrypted', severity: 'high', verdict: 'error', message: 'member is encrypted and its contents cannot be analysed' });
      unreadable++;
      continue;
    }
    const isData = isTorch && firstRoot !== null && e.name.startsWith(`${firstRoot}/data/`) && !pickleLike;
    if (isData) continue; // raw tensor storage: never read
    if (!pickleLike && !expectPickle) {
      // Not a pickle: only another container or format (an .npy in an .npz) is worth a look,
      // and its parser reads headers, so the member is inflated lazily.
      const lazy = e.method === 0 ? openEntry(src, e, 0) : new LazyInflateSource(src, e, Math.min(limits.maxInflateBytes, limits.maxTotalInflateBytes - inflated));
      try {
        await ctx.scanNested(lazy, e.name, msink);
      } catch (err) {
        if (!(err instanceof ZipBombError || err instanceof ZipFormatError)) throw err;
        msink.add({ rule: err instanceof ZipBombError ? 'zip/bomb' : 'zip/corrupt-member', severity: 'high', verdict: 'invalid', message: `member cannot be read: ${err.message}` });
      }
      continue;
    }
    // A pickle is inflated whole, within the ratio a real pickle can reach: more is a bomb.
    const cap = Math.min(limits.maxInflateBytes, Math.max(0, limits.maxTotalInflateBytes - inflated), Math.max(BOMB_MIN_BYTES, e.compressedSize * limits.maxCompressionRatio));
    let member: ByteSource;
    try {
      member = openEntry(src, e, cap);
    } catch (err) {
      if (err instanceof ZipBombError) {
        msink.add({ rule: 'zip/bomb', severity: 'high', verdict: 'invalid', message: `member ${err.message} (from ${e.compressedSize} compressed bytes, declared ${e.uncompressedSize}): a zip bomb; not analysed` });
        continue;
      }
      msink.add({ rule: 'zip/corrupt-member', severity: 'high', verdict: 'invalid', message: `member cannot be read: ${(err as Error).message}` });
      continue;
    }
    if (e.method === 8) inflated += member.size;
    if (e.method === 8 && member.size !== e.uncompressedSize) {
      msink.add({ rule: 'zip/size-mismatch', severity: 'medium', verdict: 'suspicious', message: `inflates to ${member.size} bytes but declares ${e.uncompressedSize}` });
    }
    if ((pickleLike || expectPickle) && member.size <= limits.maxPickleBytes) {
      const actual = crc32(member.read(0, member.size));
      if (actual !== e.crc32) {
        msink.add({
          rule: 'zip/bad-crc',
          severity: 'medium',
          verdict: 'suspicious',
          message: `CRC-32 is ${hex(actual)} but the archive says ${hex(e.crc32)}: Python's zipfile refuses the member, PyTorch does not check`,
        });
      }
    }
    const fmt = await ctx.scanNested(member, e.name, msink, expectPickle ? { expectPickle: true } : { probeOnly: true });

    if (fmt === 'data' && expectPickle) {
      msink.add({ rule: 'pytorch/main-pickle-unreadable', severity: 'high', verdict: 'invalid', message: 'the member PyTorch unpickles is not a pickle' });
    }
  }
  if (isTorchScript) {
    sink.add({ rule: 'pytorch/torchscript', severity: 'medium', verdict: 'suspicious', message: 'TorchScript archive: torch.jit.load runs the TorchScript code it contains (code/ members); load it with torch.load(weights_only=True) or convert it instead' });
  }
  if (isKeras) {
    const view: ArchiveView = {
      names,
      read(name) {
        const e = zip.entries.find((x) => x.name === name);
        if (!e) return undefined;
        const s = openEntry(src, e, limits.maxInflateBytes);
        return s.read(0, s.size);
      },
    };
    await scanKerasArchive(ctx, view);
  }
  if (unreadable > 0 && unreadable === zip.entries.filter((e) => !e.name.endsWith('/')).length) ctx.stats.basis = 'no member could be read';
  if (ctx.depth > 0) return 'zip';
  return isTorch ? (isTorchScript ? 'torchscript' : 'pytorch-zip') : isKeras ? 'keras' : isNpz ? 'npz' : 'zip';
}

function hex(n: number): string {
  return `0x${n.toString(16).padStart(8, '0')}`;
}
