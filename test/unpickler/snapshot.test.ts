import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pruneStaleSnapshots, STALE_SNAPSHOT_MS } from '../../src/unpickler/snapshot.js';

test('pruneStaleSnapshots() removes old snapshots of other keys and keeps the current and recent ones', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mg-snap-'));
  try {
    const keep = join(dir, 'pyodide-314.0.7-aaaa.snap');
    const old = join(dir, 'pyodide-314.0.7-bbbb.snap');
    const oldTmp = join(dir, 'pyodide-314.0.7-cccc.snap.123.ab12.tmp');
    const recent = join(dir, 'pyodide-315.0.0-dddd.snap');
    const other = join(dir, 'notes.txt');
    for (const f of [keep, old, oldTmp, recent, other]) writeFileSync(f, 'x');
    const past = (Date.now() - STALE_SNAPSHOT_MS - 60_000) / 1000;
    for (const f of [keep, old, oldTmp, other]) utimesSync(f, past, past);
    const removed = pruneStaleSnapshots(dir, keep);
    assert.equal(removed.sort(), ['pyodide-314.0.7-bbbb.snap', 'pyodide-314.0.7-cccc.snap.123.ab12.tmp']);
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
