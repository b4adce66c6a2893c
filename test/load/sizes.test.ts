// Sizes past 32 bits and past what one typed array can view. Regression for issue 13: a
// safetensors file with one 4.5 GB tensor aborted `guard load` and safeLoad() with
// `free(): double free detected in tcache 2` (the addon's external-buffer path), 3 GB loaded fine.
// The big files are sparse (ftruncate), written at test time and never committed; each load runs in
// a child process so an abort shows as a signal rather than killing this suite, and its peak RSS is
// read from the child itself.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { closeSync, ftruncateSync, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { CLI, ROOT, withTempDir } from '../helpers/fixtures.js';
import { MAX_TENSOR_BYTES } from '../../src/load/reader.js';

/** Peak RSS a refused (or header-only) load of a huge sparse file may reach. */
const MAX_RSS_BYTES = 768 * 1024 * 1024;
/** The tensor of the report: 4.5 GB of float32. */
const BIG_TENSOR_BYTES = 4_500_000_000;

/** A safetensors file with one F32 tensor of `bytes` bytes, all zero and sparse on disk. */
function writeSparseSafetensors(path: string, bytes: number): void {
  const header = Buffer.from(JSON.stringify({ big: { dtype: 'F32', shape: [bytes / 4], data_offsets: [0, bytes] } }));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(header.length));
  const fd = openSync(path, 'w');
  try {
    writeSync(fd, len);
    writeSync(fd, header);
    ftruncateSync(fd, 8 + header.length + bytes);
  } finally {
    closeSync(fd);
  }
}

interface ChildOutcome {
  status: number | null;
  signal: NodeJS.Signals | null;
  result: { ok: boolean; name?: string; code?: string; message?: string; tensors?: number; maxRssBytes: number } | undefined;
  stderr: string;
}

/** Runs `body` (an async function body with `mod` = dist/src/index.js) in a child Node. */
function inChild(body: string): ChildOutcome {
  const index = pathToFileURL(join(ROOT, 'dist', 'src', 'index.js')).href;
  const script = `
    const mod = await import(${JSON.stringify(index)});
    let out;
    try { out = { ok: true, ...(await (async () => { ${body} })()) }; }
    catch (e) { out = { ok: false, name: e?.name, code: e?.code, message: String(e?.message ?? e) }; }
    out.maxRssBytes = process.resourceUsage().maxRSS * 1024;
    process.stdout.write(JSON.stringify(out));
    process.exit(0);`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', cwd: ROOT, timeout: 300_000, env: { ...process.env } });
  let result: ChildOutcome['result'];
  try {
    result = JSON.parse(r.stdout) as ChildOutcome['result'];
  } catch {
    result = undefined;
  }
  return { status: r.status, signal: r.signal, result, stderr: r.stderr };
}

const sizes = suite('safeLoad() with tensors past 32 bits');

sizes('a 4.5 GB tensor is refused with LIMIT_EXCEEDED (or loaded), never a double free, in bounded memory', () => {
  withTempDir('big-st', (dir) => {
    const path = join(dir, 'big.safetensors');
    writeSparseSafetensors(path, BIG_TENSOR_BYTES);
    const c = inChild(`const r = await mod.safeLoad(${JSON.stringify(path)}); return { tensors: r.tensors.size };`);
    assert.is(c.signal, null, `the child died by ${String(c.signal)}: ${c.stderr.slice(-400)}`);
    assert.is(c.status, 0, c.stderr.slice(-400));
    assert.ok(c.result, `no result: ${c.stderr.slice(-400)}`);
    if (BIG_TENSOR_BYTES > MAX_TENSOR_BYTES) {
      assert.is(c.result.ok, false);
      assert.is(c.result.name, 'GuardError');
      assert.is(c.result.code, 'LIMIT_EXCEEDED');
      assert.match(c.result.message ?? '', /tensor big needs 4500000000 bytes/);
      assert.ok(c.result.maxRssBytes < MAX_RSS_BYTES, `peak RSS ${c.result.maxRssBytes} bytes`);
    } else {
      // A Node whose typed arrays hold more loads it (and needs the memory for it).
      assert.is(c.result.ok, true, c.result.message);
      assert.is(c.result.tensors, 1);
    }
  });
});

sizes('`guard load` on the same file exits 2 with the limit named, not 134', () => {
  if (BIG_TENSOR_BYTES <= MAX_TENSOR_BYTES) return;
  withTempDir('big-cli', (dir) => {
    const path = join(dir, 'big.safetensors');
    writeSparseSafetensors(path, BIG_TENSOR_BYTES);
    const r = spawnSync(process.execPath, [CLI, 'load', path], { encoding: 'utf8', cwd: ROOT, timeout: 300_000 });
    assert.is(r.signal, null, r.stderr.slice(-400));
    assert.is(r.status, 2, r.stderr.slice(-400));
    assert.match(r.stderr, /LIMIT_EXCEEDED|at most \d+ bytes/);
  });
});

sizes('allocPages() refuses more than one external buffer can hold instead of freeing twice', () => {
  const native = pathToFileURL(join(ROOT, 'dist', 'src', 'sandbox', 'native.js')).href;
  const script = `
    const { loadNative } = await import(${JSON.stringify(native)});
    const a = loadNative();
    const out = [];
    // Mappings are lazy: neither call touches the memory.
    for (const bytes of [2 ** 32, 2 ** 32 + 1, 4.5e9]) {
      try { out.push({ bytes, ok: a.allocPages({ bytes, hugePages: true }).byteLength === bytes }); }
      catch (e) { out.push({ bytes, ok: false, message: String(e.message) }); }
    }
    process.stdout.write(JSON.stringify(out));`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', cwd: ROOT, timeout: 60_000 });
  assert.is(r.signal, null, r.stderr);
  assert.is(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout) as Array<{ bytes: number; ok: boolean; message?: string }>;
  assert.is(out[0]?.ok, true, 'exactly 4 GiB is allowed');
  for (const o of out.slice(1)) {
    assert.is(o.ok, false);
    assert.match(o.message ?? '', /allocPages: `bytes` \d+ exceeds the largest external buffer/);
  }
});

sizes.run();
