// A full TMPDIR while a gzip stream is inflated (issue 13): the write failed inside zlib's 'data'
// handler, the throw was uncaught, and both `guard load` and an in-process safeLoad() died with
// temporary folders left behind. Now the scan reports an `error` finding, safeLoad throws
// GuardError IO naming the file and what was being written, and nothing is left in TMPDIR.
// TMPDIR is a real 64 KiB tmpfs, mounted in a private mount namespace for the child only.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { gzipSync } from 'node:zlib';
import { CLI, ROOT, withTempDir } from '../helpers/fixtures.js';

/** Size of the tmpfs used as TMPDIR: far less than the stream inflates to. */
const TMPFS_BYTES = 64 * 1024;
/** The inflated .npy: 1 MiB of float32 zeros. */
const NPY_DATA_BYTES = 1024 * 1024;

function npyZeros(bytes: number): Buffer {
  let header = `{'descr': '<f4', 'fortran_order': False, 'shape': (${bytes / 4},), }`;
  header += ' '.repeat((64 - ((10 + header.length + 1) % 64)) % 64) + '\n';
  const pre = Buffer.alloc(10);
  Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0]).copy(pre);
  pre.writeUInt16LE(header.length, 8);
  return Buffer.concat([pre, Buffer.from(header, 'latin1'), Buffer.alloc(bytes)]);
}

/**
 * Runs `cmd` with TMPDIR on a fresh tmpfs of TMPFS_BYTES in its own mount namespace (root: a
 * mount namespace; otherwise a user namespace too), then lists what is left on that tmpfs.
 */
function withFullTmp(mnt: string, cmd: string): { status: number | null; stdout: string; stderr: string; left: string[] } {
  const ns = process.getuid?.() === 0 ? ['-m'] : ['-Urm'];
  const script = `mount -t tmpfs -o size=${TMPFS_BYTES} none "$MNT" || exit 99; export TMPDIR="$MNT"; ${cmd}; rc=$?; echo "@@left:$(ls -A "$MNT" | tr '\\n' ' ')" >&2; exit $rc`;
  const r = spawnSync('unshare', [...ns, 'sh', '-c', script], { encoding: 'utf8', cwd: ROOT, timeout: 300_000, env: { ...process.env, MNT: mnt } });
  const left = (/@@left:(.*)/.exec(r.stderr)?.[1] ?? '?').trim();
  return { status: r.status, stdout: r.stdout, stderr: r.stderr, left: left === '' ? [] : left.split(/\s+/) };
}

const full = suite('a full TMPDIR while a gzip stream is inflated');

full('safeLoad() throws GuardError IO naming the file and the write; the process lives and TMPDIR is empty', () => {
  withTempDir('enospc', (dir) => {
    const file = join(dir, 'zeros.npy.gz');
    writeFileSync(file, gzipSync(npyZeros(NPY_DATA_BYTES)));
    const mnt = join(dir, 'tmp');
    mkdirSync(mnt);
    const index = pathToFileURL(join(ROOT, 'dist', 'src', 'index.js')).href;
    const js = `const m = await import(${JSON.stringify(index)}); try { await m.safeLoad(${JSON.stringify(file)}); console.log(JSON.stringify({ ok: true })); } catch (e) { console.log(JSON.stringify({ ok: false, guard: e instanceof m.GuardError, code: e.code, message: e.message })); }`;
    const r = withFullTmp(mnt, `"${process.execPath}" --input-type=module -e '${js.replace(/'/g, `'\\''`)}'`);
    assert.is.not(r.status, 99, `could not mount a tmpfs: ${r.stderr}`);
    assert.is(r.status, 0, r.stderr.slice(-600));
    const out = JSON.parse(r.stdout.trim().split('\n').pop() as string) as { ok: boolean; guard: boolean; code: string; message: string };
    assert.is(out.ok, false);
    assert.is(out.guard, true, out.message);
    assert.is(out.code, 'IO', out.message);
    assert.match(out.message, /zeros\.npy\.gz/);
    assert.match(out.message, /ENOSPC/);
    assert.match(out.message, /decompressed copy/);
    assert.equal(r.left, [], 'nothing is left in TMPDIR');
  });
});

full('`guard load` exits 2 with the IO error, not an uncaught exception, and TMPDIR is empty', () => {
  withTempDir('enospc-cli', (dir) => {
    const file = join(dir, 'zeros.npy.gz');
    writeFileSync(file, gzipSync(npyZeros(NPY_DATA_BYTES)));
    const mnt = join(dir, 'tmp');
    mkdirSync(mnt);
    const r = withFullTmp(mnt, `"${process.execPath}" "${CLI}" load "${file}"`);
    assert.is.not(r.status, 99, `could not mount a tmpfs: ${r.stderr}`);
    assert.is(r.status, 2, r.stderr.slice(-600));
    assert.match(r.stderr, /ENOSPC/);
    assert.not.match(r.stderr, /Uncaught|node:internal|at .*\.js:\d+/);
    assert.equal(r.left, []);
  });
});

full.run();
