// Every fuzz target, briefly: a fixed number of generated inputs each (bounded by count, never by
// wall-clock time), run by the same runner as `npm run fuzz` (child process, per-input deadline,
// RSS bound). Then every input a past run found (test/fixtures/fuzz/TARGET/*.bin) is replayed.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { runFuzz } from '../../src/fuzz/runner.js';
import { TARGETS, targetNamed } from '../../src/fuzz/targets.js';
import { FIXTURES } from '../helpers/fixtures.js';

/** Inputs per target in the suite (a long run is `npm run fuzz -- all --time N`). */
const RUNS_PER_TARGET = 48;
/** Fixed, so a failure here reproduces with `npm run fuzz -- TARGET --runs 48 --seed 13`. */
const SEED = 13;

const brief = suite('fuzz targets keep their contracts on generated inputs');

for (const t of TARGETS) {
  brief(`${t.name}: ${RUNS_PER_TARGET} inputs, no hang, no crash, no non-GuardError, RSS bounded`, async () => {
    const s = await runFuzz({ target: t.name, runs: RUNS_PER_TARGET, seed: SEED, fixtures: FIXTURES });
    assert.is(s.inputs, RUNS_PER_TARGET);
    assert.equal(
      s.failures.map((f) => `${f.kind}@${f.index}: ${f.message}`),
      [],
    );
    assert.is(s.failureCount, 0);
  });
}
brief.run();

const replay = suite('inputs fuzzing found stay fixed');
const DIR = join(FIXTURES, 'fuzz');
for (const target of existsSync(DIR) ? readdirSync(DIR).filter((d) => !d.includes('.')) : []) {
  for (const file of readdirSync(join(DIR, target)).filter((f) => f.endsWith('.bin'))) {
    const note = JSON.parse(readFileSync(join(DIR, target, file.replace(/\.bin$/, '.json')), 'utf8')) as { kind: string; message: string };
    // Replayed in the runner's child, so a hang that came back is caught by the input deadline.
    replay(`${target}/${file} (was ${note.kind}: ${note.message.slice(0, 80)})`, async () => {
      targetNamed(target);
      const s = await runFuzz({ target, replay: [join(DIR, target, file)], fixtures: FIXTURES });
      assert.is(s.inputs, 1);
      assert.equal(s.failures.map((f) => `${f.kind}: ${f.message}`), []);
    });
  }
}
replay.run();
