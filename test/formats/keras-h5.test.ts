import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { scan } from '../../src/index.js';
import { HDF5_MAX_CONFIG_CHARS } from '../../src/formats/keras-h5.js';
import { manifestTests } from './manifest-cases.js';

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

test.run();
