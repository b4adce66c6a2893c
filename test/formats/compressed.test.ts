// Compressed streams (issue 12 point 2): damaged or empty data is `invalid`, never `safe`.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { scan } from '../../src/index.js';

/** Writes intact, truncated and corrupted bz2/xz/lzma/gzip streams of a benign pickle with Python's codecs. */
const WRITE = String.raw`
import bz2, gzip, lzma, pickle, sys, os
d = sys.argv[1]
data = pickle.dumps({"weight": [1.0, 2.0]}, protocol=2)
streams = {"bz2": bz2.compress(data), "xz": lzma.compress(data), "lzma": lzma.compress(data, format=lzma.FORMAT_ALONE), "gz": gzip.compress(data)}
for ext, s in streams.items():
    open(os.path.join(d, "intact." + ext), "wb").write(s)
    open(os.path.join(d, "truncated." + ext), "wb").write(s[: len(s) // 2])
    head = 12 if ext != "lzma" else 13
    open(os.path.join(d, "corrupt." + ext), "wb").write(s[:head] + bytes(len(s) - head))
# A well-formed bzip2 stream with no block: it decompresses to nothing.
open(os.path.join(d, "empty.bz2"), "wb").write(b"BZh9" + bytes.fromhex("177245385090") + bytes(4))
`;

test('truncated, corrupt and empty compressed data is invalid; the intact twins are safe', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'mg-compressed-'));
  try {
    const r = spawnSync('/usr/bin/python3', ['-c', WRITE, dir], { encoding: 'utf8' });
    assert.is(r.status, 0, r.stderr);
    for (const name of readdirSync(dir).sort()) {
      const report = await scan(join(dir, name), { fast: true });
      const f = report.files[0];
      const want = name.startsWith('intact.') ? 'safe' : 'invalid';
      assert.is(f?.verdict, want, `${name}: ${JSON.stringify(f?.findings)}`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

interface SevenZip {
  FS: { writeFile(p: string, d: Uint8Array): void; readFile(p: string): Uint8Array; mkdir(p: string): void };
  callMain(args: string[]): void;
}

/** A 7z archive of one benign pickle, written by 7-Zip itself (npm 7z-wasm). */
async function sevenZipOf(name: string, data: Buffer): Promise<Buffer> {
  const mod = (await import('7z-wasm')) as unknown as { default: (o: object) => Promise<SevenZip> };
  const sz = await mod.default({ print: () => {}, printErr: () => {} });
  sz.FS.mkdir('/w');
  sz.FS.writeFile(`/w/${name}`, data);
  try {
    sz.callMain(['a', '-mx=1', '/out.7z', `/w/${name}`]);
  } catch {
    // 7-Zip's exit unwinds with an exception; the archive is already written
  }
  return Buffer.from(sz.FS.readFile('/out.7z'));
}

test('a 7z archive whose packed data is damaged is invalid, never safe; the intact twin is safe', async () => {
  const pickle = Buffer.from('\x80\x02}q\x00X\x01\x00\x00\x00aK\x01s.', 'latin1');
  const intact = await sevenZipOf('model.pkl', Buffer.concat([pickle]));
  const good = (await scan(new Uint8Array(intact), { name: 'model.7z', fast: true })).files[0];
  assert.is(good?.verdict, 'safe', JSON.stringify(good?.findings));
  // The packed stream starts right after the 32-byte signature header.
  const damaged = Buffer.from(intact);
  for (let i = 32; i < 32 + 8 && i < damaged.length; i++) damaged[i] = (damaged[i] as number) ^ 0xff;
  const bad = (await scan(new Uint8Array(damaged), { name: 'model.7z', fast: true })).files[0];
  assert.ok(bad && bad.verdict !== 'safe', JSON.stringify(bad));
  assert.ok(bad?.findings.some((f) => f.verdict === 'invalid' || f.verdict === 'error'));
});

test.run();
