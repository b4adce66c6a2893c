// One error contract (issue 13): whatever bytes safeLoad() is given, it loads them or throws a
// GuardError with a stable code, never a parser's own error (NpyFormatError, ZipFormatError…)
// and never INTERNAL. A property over mutated tensor fixtures and generated files.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import fc from 'fast-check';
import { readFileSync } from 'node:fs';
import { GuardError } from '../../src/errors.js';
import { safeLoad } from '../../src/index.js';
import { closeDefaultPool } from '../../src/unpickler/index.js';
import { mutated, npyFile, npzFile, safetensorsFile } from '../../src/fuzz/generators.js';
import { seedFiles } from '../../src/fuzz/targets.js';
import { FIXTURES } from '../helpers/fixtures.js';

/** Inputs the property is checked on. */
const RUNS = 150;
const STABLE_CODES = new Set(['IO', 'NOT_FOUND', 'UNSAFE_MODEL', 'INVALID_MODEL', 'LIMIT_EXCEEDED', 'UNSUPPORTED', 'TIMEOUT']);

const contract = suite('safeLoad() error contract');
contract.after(() => closeDefaultPool());

contract('mutated npy, npz and safetensors files load or fail with a GuardError of a stable code', async () => {
  const seeds = seedFiles(FIXTURES, ['npy', 'npz', 'safetensors']).map((p) => readFileSync(p));
  assert.ok(seeds.length > 5, 'the fixtures seed the mutations');
  await fc.assert(
    fc.asyncProperty(fc.oneof(mutated(seeds), npyFile, npzFile, safetensorsFile), async (bytes) => {
      try {
        await safeLoad(bytes, { name: 'mutated' });
      } catch (e) {
        if (!(e instanceof GuardError)) throw new Error(`not a GuardError: ${(e as Error)?.name}: ${(e as Error)?.message}`);
        if (!STABLE_CODES.has(e.code)) throw new Error(`code ${e.code}: ${e.message}`);
      }
    }),
    { numRuns: RUNS, seed: 42 },
  );
});

contract.run();
