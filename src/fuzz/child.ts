/**
 * The fuzz loop, in a child process of runner.ts so a hang or a crash is seen from outside.
 * Before each input it writes the input to `current.bin` (what the parent keeps if this process
 * stops answering) and tells the parent it started; breaches are sent with their input.
 */
import fc from 'fast-check';
import { ftruncateSync, openSync, readFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { inputsFor, targetNamed } from './targets.js';
import type { ChildMessage, ChildStart } from './protocol.js';

/** Inputs generated per fast-check sample call (each batch has its own derived seed). */
const BATCH = 64;
/** Inputs between RSS reports. */
const RSS_EVERY = 100;
/** The parent hears which input is running at most this often: its deadline is far longer. */
const TICK_MS = 20;
/** Breaches sent at most per run (the first ones matter; the rest are counted). */
const MAX_FAILURES_SENT = 25;

function send(m: ChildMessage): Promise<void> {
  return new Promise((resolve) => (process.send ? process.send(m, () => resolve()) : resolve()));
}

async function main(): Promise<void> {
  const start = JSON.parse(process.argv[2] as string) as ChildStart;
  const target = targetNamed(start.target);
  const replay = start.replay?.map((p) => readFileSync(p));
  const arb = inputsFor(target, start.fixtures);
  const stopAt = start.timeMs > 0 ? Date.now() + start.timeMs : Infinity;
  // The current input, rewritten in place before each run: what the parent keeps on a hang.
  const current = openSync(join(start.workdir, 'current.bin'), 'w');
  const index = openSync(join(start.workdir, 'current.idx'), 'w');
  const indexBuf = Buffer.alloc(8);
  let lastTick = 0;
  let i = start.first;
  let sent = 0;
  let failures = 0;
  for (let batch = Math.floor(start.first / BATCH); i < start.first + start.runs && Date.now() < stopAt; batch++) {
    const inputs = replay ? replay.slice(batch * BATCH, (batch + 1) * BATCH) : fc.sample(arb, { numRuns: BATCH, seed: (start.seed + batch * 7919) | 0 });
    if (inputs.length === 0) break;
    for (let k = i % BATCH; k < inputs.length && i < start.first + start.runs && Date.now() < stopAt; k++, i++) {
      const input = inputs[k] as Buffer;
      ftruncateSync(current, 0);
      writeSync(current, input, 0, input.length, 0);
      indexBuf.writeDoubleLE(i);
      writeSync(index, indexBuf, 0, 8, 0);
      const now = Date.now();
      if (now - lastTick >= TICK_MS) {
        lastTick = now;
        process.send?.({ t: 'start', i } satisfies ChildMessage);
      }
      try {
        await target.exec(input);
      } catch (e) {
        failures++;
        if (sent < MAX_FAILURES_SENT) {
          sent++;
          const err = e as Error;
          await send({ t: 'fail', i, kind: (err as { kind?: string }).kind ?? 'threw', message: `${err?.name ?? 'Error'}: ${String(err?.message ?? err).slice(0, 500)}`, input: input.toString('base64') });
        }
      }
      if (i % RSS_EVERY === 0) process.send?.({ t: 'rss', i, rss: process.memoryUsage().rss } satisfies ChildMessage);
    }
  }
  await send({ t: 'done', next: i, failures });
  process.exit(0);
}

void main();
