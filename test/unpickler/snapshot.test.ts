import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { crc32 } from 'node:zlib';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { PyodideAssets } from '../../src/unpickler/assets.js';
import { fileIdentity, pruneStaleSnapshots, readSnapshot, snapshotPath, STALE_SNAPSHOT_MS, verifiedRecordPath, verifySnapshot } from '../../src/unpickler/snapshot.js';

/** Only what the snapshot's file name is made of. */
const ASSETS = { version: '0.0.0', key: 'test' } as PyodideAssets;

/** A snapshot file in ../cache.ts's format: magic, CRC-32, length, payload. */
function snapshotFile(payload: Buffer, crc = crc32(payload)): Buffer {
  const header = Buffer.alloc(8);
  header.writeUInt32LE(crc, 0);
  header.writeUInt32LE(payload.length, 4);
  return Buffer.concat([Buffer.from('MGSNAP2\0', 'latin1'), header, payload]);
}

test('verifySnapshot() checks the CRC once, records the file identity, and checks again once the file changes', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mg-snap-'));
  try {
    const path = snapshotPath(ASSETS, dir);
    const payload = Buffer.alloc(4096, 7);
    writeFileSync(path, snapshotFile(payload));
    const first = verifySnapshot(path);
    assert.is(first.intact, true);
    assert.is(first.key, fileIdentity(statSync(path, { bigint: true })));
    assert.ok(existsSync(verifiedRecordPath(path)), 'the identity is recorded beside the snapshot');
    assert.equal(verifySnapshot(path), first, 'unchanged: the record answers');
    // Damaged in place (same size, same inode): the times change, so the CRC is checked again.
    const bytes = readFileSync(path);
    bytes[bytes.length - 1] ^= 0xff;
    writeFileSync(path, bytes);
    assert.equal(verifySnapshot(path), { intact: false });
    assert.equal(verifySnapshot(join(dir, 'missing.snap')), { intact: false });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('readSnapshot() skips the CRC only for the identity the host verified, and hands out a view the isolate can take', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mg-snap-'));
  try {
    const path = snapshotPath(ASSETS, dir);
    const payload = Buffer.alloc(4096, 9);
    // A wrong CRC: only a reader told that the host checked this very file accepts it.
    writeFileSync(path, snapshotFile(payload, 1234));
    assert.is(readSnapshot(ASSETS, dir, true), undefined, 'checked in full without a key');
    assert.is(readSnapshot(ASSETS, dir, true, '1:2:3:4:5'), undefined, 'a key for another file does not count');
    const key = fileIdentity(statSync(path, { bigint: true }));
    const view = readSnapshot(ASSETS, dir, true, key);
    assert.ok(view);
    assert.is(view.byteLength, 4096);
    assert.is(view.byteOffset, 16);
    assert.is(view.buffer.byteLength, 16 + 4096, 'the file in one allocation of its own');
    assert.ok(view.every((b) => b === 9));
    writeFileSync(path, snapshotFile(payload));
    assert.ok(readSnapshot(ASSETS, dir, true), 'an intact file reads without a key');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('pruneStaleSnapshots() removes old snapshots of other keys and keeps the current and recent ones', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mg-snap-'));
  try {
    const keep = join(dir, 'pyodide-314.0.7-aaaa.snap');
    const keepRecord = verifiedRecordPath(keep);
    const oldRecord = join(dir, 'pyodide-314.0.7-bbbb.snap.ok');
    const old = join(dir, 'pyodide-314.0.7-bbbb.snap');
    const oldTmp = join(dir, 'pyodide-314.0.7-cccc.snap.123.ab12.tmp');
    const recent = join(dir, 'pyodide-315.0.0-dddd.snap');
    const other = join(dir, 'notes.txt');
    for (const f of [keep, keepRecord, old, oldRecord, oldTmp, recent, other]) writeFileSync(f, 'x');
    const past = (Date.now() - STALE_SNAPSHOT_MS - 60_000) / 1000;
    for (const f of [keep, keepRecord, old, oldRecord, oldTmp, other]) utimesSync(f, past, past);
    const removed = pruneStaleSnapshots(dir, keep);
    assert.equal(removed.sort(), ['pyodide-314.0.7-bbbb.snap', 'pyodide-314.0.7-bbbb.snap.ok', 'pyodide-314.0.7-cccc.snap.123.ab12.tmp']);
    assert.ok(existsSync(keepRecord), 'the current snapshot keeps its record');
    assert.ok(existsSync(keep));
    assert.ok(existsSync(recent));
    assert.ok(existsSync(other));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('pruneStaleSnapshots() on a missing folder removes nothing', () => {
  assert.equal(pruneStaleSnapshots(join(tmpdir(), 'mg-no-such-dir-for-test'), 'x'), []);
});

test.run();
