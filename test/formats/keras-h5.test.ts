import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { scan } from '../../src/index.js';
import { HDF5_MAX_CONFIG_CHARS } from '../../src/formats/keras-h5.js';
import { manifestTests } from './manifest-cases.js';
import { FIXTURES } from '../helpers/fixtures.js';

// Legacy HDF5 Keras models and plain HDF5 files: every keras/*.h5 fixture.
manifestTests('keras/', undefined, /^(?!.*\.h5$)/);

test('a model_config attribute declared beyond the cap is judged from its metadata, never read', async () => {
  // Generated here rather than committed: it is ~64 MB. h5py (Debian python3-h5py) writes it.
  const dir = mkdtempSync(join(tmpdir(), 'mg-h5big-'));
  try {
    const file = join(dir, 'big_config.h5');
    execFileSync('/usr/bin/python3', ['-c', [
      'import h5py, json, numpy as np, sys',
      `pad = 'x' * (${HDF5_MAX_CONFIG_CHARS} + 1024)`,
      "s = json.dumps({'class_name': 'Sequential', 'config': {'layers': [], 'pad': pad}}).encode()",
      "f = h5py.File(sys.argv[1], 'w', libver='latest')",
      "f.attrs.create('model_config', np.array(s, dtype='S%d' % len(s)))",
      "f.attrs['keras_version'] = '2.13.1'",
      'f.close()',
    ].join('\n'), file]);
    const f = (await scan(file)).files[0]!;
    assert.is(f.verdict, 'suspicious');
    const finding = f.findings.find((x) => x.rule === 'keras/config-too-large');
    assert.ok(finding, JSON.stringify(f.findings));
    assert.match(finding!.message, /declares \d+ bytes/, 'decided from the declared size, before reading');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/**
 * Issue 13: an HDF5 file on which h5wasm loops forever (found by fuzzing the fixtures). It is
 * legacy-dense.h5 with one field changed: the object header message after the model_config
 * attribute is a NIL message of 3864 bytes (header `00 00 | 18 0f | 00 | 00 00 00`); with its
 * size set to 0 the library never finishes reading the root group's attributes. Before, the scan
 * blocked the event loop for good; now the read runs on a worker that is stopped at the deadline.
 */
function loopingHdf5(): Buffer {
  const b = Buffer.from(readFileSync(join(FIXTURES, 'formats', 'keras', 'legacy-dense.h5')));
  const nil = Buffer.from([0x00, 0x00, 0x18, 0x0f, 0x00, 0x00, 0x00, 0x00]);
  const at = b.indexOf(nil, b.indexOf(Buffer.from('"units": 2}}]}}')));
  assert.ok(at > 0 && b.indexOf(nil, at + 1) < 0, 'the NIL message after model_config is where the fixture has it');
  b.writeUInt16LE(0, at + 2);
  return b;
}

/** A short deadline for the hostile file (the worker's start-up has its own, longer one). */
const HANG_SCAN_MS = 3000;

function h5TempDirs(): string[] {
  return readdirSync(tmpdir()).filter((n) => n.startsWith('modelguard-h5-'));
}

test('an HDF5 file on which h5wasm loops gets an error verdict with a timed-out finding, and the next file is still read', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'mg-h5loop-'));
  try {
    const file = join(dir, 'loop.h5');
    writeFileSync(file, loopingHdf5());
    const good = join(FIXTURES, 'formats', 'keras', 'legacy-lambda.h5');
    const r = await scan([good, file, good].map((p) => p), { limits: { maxScanMs: HANG_SCAN_MS } });
    const [before, hostile, after] = r.files;
    assert.is(before?.verdict, 'malicious');
    assert.is(hostile?.verdict, 'error', JSON.stringify(hostile?.findings));
    const f = hostile?.findings.find((x) => x.rule === 'hdf5/timeout');
    assert.ok(f, JSON.stringify(hostile?.findings));
    assert.match(f!.message, /timed out/);
    assert.is(after?.verdict, 'malicious', 'a fresh worker reads the next file');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the looping HDF5 nested in a tar leaves no modelguard-h5-* folder behind when its worker is stopped', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'mg-h5loop-'));
  const dirsBefore = h5TempDirs();
  try {
    writeFileSync(join(dir, 'loop.h5'), loopingHdf5());
    execFileSync('tar', ['-cf', join(dir, 'model.tar'), '-C', dir, 'loop.h5']);
    const r = await scan(join(dir, 'model.tar'), { limits: { maxScanMs: HANG_SCAN_MS } });
    const file = r.files[0]!;
    assert.is(file.verdict, 'error', JSON.stringify(file.findings));
    assert.ok(file.findings.some((x) => x.rule === 'hdf5/timeout'), JSON.stringify(file.findings));
    assert.equal(h5TempDirs(), dirsBefore);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
