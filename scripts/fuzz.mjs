#!/usr/bin/env node
// npm run fuzz -- TARGET|all [--time SECONDS] [--runs N] [--seed S] [--save DIR]
// Fuzzes one parser target (or every one in turn) in a child process with a per-input deadline,
// and prints one JSON summary line per target: inputs, breaches, hangs, crashes, RSS growth.
// --save writes each breach's input as DIR/TARGET/<hash>.bin (test/fixtures/fuzz makes it a
// regression fixture: test/fuzz/targets.test.ts replays every file there).
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(fileURLToPath(new URL('.', import.meta.url)), '..');
const { runFuzz, saveFailures } = await import(join(root, 'dist/src/fuzz/runner.js'));
const { TARGETS } = await import(join(root, 'dist/src/fuzz/targets.js'));

const args = process.argv.slice(2);
const opt = (name) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : undefined;
};
const target = args.find((a, i) => !a.startsWith('--') && !(i > 0 && args[i - 1].startsWith('--')));
if (!target || args.includes('--help')) {
  process.stdout.write(`usage: npm run fuzz -- TARGET|all [--time SECONDS] [--runs N] [--seed S] [--save DIR]\ntargets:\n${TARGETS.map((t) => `  ${t.name.padEnd(14)} ${t.about}`).join('\n')}\n`);
  process.exit(target ? 0 : 2);
}
const names = target === 'all' ? TARGETS.map((t) => t.name) : [target];
const time = opt('time');
const runs = opt('runs');
let bad = 0;
for (const name of names) {
  const s = await runFuzz({
    target: name,
    fixtures: join(root, 'test', 'fixtures'),
    seed: Number(opt('seed') ?? Date.now() % 2 ** 31),
    ...(time ? { timeMs: (Number(time) * 1000) / (target === 'all' ? 1 : 1) } : {}),
    ...(runs ? { runs: Number(runs) } : {}),
  });
  const saved = opt('save') ? saveFailures(s, opt('save')) : [];
  bad += s.failureCount;
  process.stdout.write(`${JSON.stringify({ target: s.target, seed: s.seed, inputs: s.inputs, failures: s.failureCount, hangs: s.hangs, crashes: s.crashes, rssBaseline: s.rssBaseline, rssPeak: s.rssPeak, first: s.failures.slice(0, 5).map((f) => `${f.kind}@${f.index}: ${f.message.slice(0, 200)}`), saved })}\n`);
}
process.exit(bad > 0 ? 1 : 0);
