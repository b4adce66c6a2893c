// Zip archives read like every reader reads them (issue 12 point 2) and declared sizes checked as
// claims (issue 13): archives are written here, byte for byte, so each disagreement is exact.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { deflateRawSync } from 'node:zlib';
import { scan } from '../../src/index.js';
import { crc32 } from '../../src/formats/crc32.js';
import { LazyInflateSource, readZip, ZipFormatError, type ZipEntry } from '../../src/formats/zip.js';
import { BufferSource } from '../../src/formats/source.js';
import { DEFAULT_LIMITS } from '../../src/limits.js';
import { CLI } from '../helpers/fixtures.js';

interface Member {
  name: string;
  data: Buffer;
  deflate?: boolean;
  /** Uncompressed size written in both headers (a claim the data may not keep). */
  declared?: number;
  /** Leave the member out of the central directory (its local header stays). */
  hidden?: boolean;
}

/** A zip written by hand: local headers, central directory, end record (count overridable). */
function zip(members: Member[], opts: { count?: number } = {}): Buffer {
  const locals: Buffer[] = [];
  const central: Buffer[] = [];
  let offset = 0;
  let listed = 0;
  for (const m of members) {
    const body = m.deflate ? deflateRawSync(m.data) : m.data;
    const name = Buffer.from(m.name);
    const lh = Buffer.alloc(30);
    lh.writeUInt32LE(0x04034b50, 0);
    lh.writeUInt16LE(20, 4);
    lh.writeUInt16LE(m.deflate ? 8 : 0, 8);
    lh.writeUInt32LE(crc32(m.data), 14);
    lh.writeUInt32LE(body.length, 18);
    lh.writeUInt32LE(m.declared ?? m.data.length, 22);
    lh.writeUInt16LE(name.length, 26);
    locals.push(lh, name, body);
    if (!m.hidden) {
      const ch = Buffer.alloc(46);
      ch.writeUInt32LE(0x02014b50, 0);
      ch.writeUInt16LE(20, 4);
      ch.writeUInt16LE(20, 6);
      ch.writeUInt16LE(m.deflate ? 8 : 0, 10);
      ch.writeUInt32LE(crc32(m.data), 16);
      ch.writeUInt32LE(body.length, 20);
      ch.writeUInt32LE(m.declared ?? m.data.length, 24);
      ch.writeUInt16LE(name.length, 28);
      ch.writeUInt32LE(offset, 42);
      central.push(ch, name);
      listed++;
    }
    offset += 30 + name.length + body.length;
  }
  const cd = Buffer.concat(central);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(opts.count ?? listed, 8);
  end.writeUInt16LE(opts.count ?? listed, 10);
  end.writeUInt32LE(cd.length, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, cd, end]);
}

const sbu = (s: string) => Buffer.concat([Buffer.from([0x8c, Buffer.byteLength(s)]), Buffer.from(s)]);
/** Protocol 4: os.system('echo modelguard-fixture'). Scanned, never run. */
const PAYLOAD = Buffer.concat([Buffer.from([0x80, 4]), sbu('os'), sbu('system'), Buffer.from([0x93]), sbu('echo modelguard-fixture'), Buffer.from('\x85R.', 'latin1')]);
const BENIGN = Buffer.from('\x80\x02}q\x00X\x01\x00\x00\x00aK\x01s.', 'latin1');
const torch = (pkl: Buffer) => [{ name: 'archive/data.pkl', data: pkl }, { name: 'archive/version', data: Buffer.from('3\n') }];

async function scanBytes(b: Buffer, name = 'model.pt') {
  const r = await scan(new Uint8Array(b), { name, fast: true });
  const f = r.files[0];
  assert.ok(f);
  return { verdict: f.verdict, rules: f.findings.map((x) => x.rule), findings: f.findings };
}

test('an end record that counts 0 members does not hide data.pkl: Python\'s zipfile walks the directory by size', async () => {
  const r = await scanBytes(zip(torch(PAYLOAD), { count: 0 }));
  assert.is(r.verdict, 'malicious', JSON.stringify(r.findings));
  assert.ok(r.rules.includes('zip/directory-disagreement'));
  // not-flagged twin: the same archive with an honest count
  const twin = await scanBytes(zip(torch(BENIGN)));
  assert.is(twin.verdict, 'safe', JSON.stringify(twin.findings));
  assert.not.ok(twin.rules.includes('zip/directory-disagreement'));
});

test('a benign archive whose end record undercounts is a finding, never a smaller archive', async () => {
  const r = await scanBytes(zip(torch(BENIGN), { count: 1 }));
  assert.is(r.verdict, 'suspicious');
  const z = readZip(new BufferSource(zip(torch(BENIGN), { count: 1 })), DEFAULT_LIMITS);
  assert.equal(z.entries.map((e) => e.name), ['archive/data.pkl', 'archive/version']);
});

test('a member only the local headers know (streaming readers extract it) is found and analysed', async () => {
  const r = await scanBytes(zip([...torch(BENIGN), { name: 'archive/extra.pkl', data: PAYLOAD, hidden: true }]));
  assert.is(r.verdict, 'malicious', JSON.stringify(r.findings));
  assert.ok(r.rules.includes('zip/hidden-member'));
  const twin = await scanBytes(zip([...torch(BENIGN), { name: 'archive/extra.pkl', data: BENIGN }]));
  assert.is(twin.verdict, 'safe', JSON.stringify(twin.findings));
  assert.not.ok(twin.rules.includes('zip/hidden-member'));
});

test('a deflated member read lazily that inflates to less than it declares raises instead of reading short', () => {
  const data = Buffer.from('\x93NUMPY', 'latin1');
  const b = zip([{ name: 'x.npy', data, deflate: true, declared: data.length + 4096 }]);
  const z = readZip(new BufferSource(b), DEFAULT_LIMITS);
  const src = new LazyInflateSource(new BufferSource(b), z.entries[0] as ZipEntry, 1 << 20);
  assert.equal(src.read(0, 6), data);
  assert.throws(() => src.read(0, 100), (e: unknown) => e instanceof ZipFormatError && /inflates to only 6/.test(e.message));
});

/** An object-array .npy whose pickle (protocol 0 text) ends in the middle of a line. */
function npyObject(pickle: string): Buffer {
  let header = "{'descr': '|O', 'fortran_order': False, 'shape': (1,), }";
  header += ' '.repeat(63 - ((10 + header.length) % 64)) + '\n';
  const pre = Buffer.from('\x93NUMPY\x01\x00', 'latin1');
  const len = Buffer.alloc(2);
  len.writeUInt16LE(header.length);
  return Buffer.concat([pre, len, Buffer.from(header, 'latin1'), Buffer.from(pickle, 'latin1')]);
}

test('an npz member that declares more than it inflates to ends with a finding (issue 13: was a permanent hang)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mg-zip-'));
  try {
    const npy = npyObject('(lp0\ncos\nsys');
    const hang = join(dir, 'hang.npz');
    writeFileSync(hang, zip([{ name: 'a.npy', data: npy, deflate: true, declared: npy.length + 100_000 }]));
    // In a child process: a hang is a timeout here, not a test runner that never returns.
    const r = spawnSync(process.execPath, [CLI, 'scan', '--fast', '--format', 'json', hang], { encoding: 'utf8', timeout: 120_000 });
    assert.is(r.signal, null, 'the scan hung');
    const file = (JSON.parse(r.stdout) as { files: Array<{ verdict: string; findings: Array<{ rule: string }> }> }).files[0];
    assert.is(file?.verdict, 'invalid', r.stdout);
    assert.ok(file?.findings.some((f) => f.rule === 'zip/corrupt-member'));
    // not-flagged twin: the same array, its size declared honestly and its pickle complete
    const ok = npyObject("(lp0\nS'x'\np1\na.");
    const twin = join(dir, 'twin.npz');
    writeFileSync(twin, zip([{ name: 'a.npy', data: ok, deflate: true }]));
    const t = spawnSync(process.execPath, [CLI, 'scan', '--fast', '--format', 'json', twin], { encoding: 'utf8', timeout: 120_000 });
    const tf = (JSON.parse(t.stdout) as { files: Array<{ verdict: string }> }).files[0];
    assert.is(tf?.verdict, 'safe', t.stdout);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
