// Issue 13: the VM's time limit is CPU time, not wall-clock time, so a verdict does not depend on
// how busy the machine is. Each test runs CPU hogs beside it (child processes spinning on every
// core, bounded in time and killed afterwards) and asserts by CPU time, never by wall time.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { createPolicy } from '../../src/formats/pickle/policy.js';
import { scan } from '../../src/scan.js';
import { closeDefaultPool, defaultPool, UnpicklerPool, vmScanPass, vmUnpickle } from '../../src/unpickler/index.js';
import { startHogs, stopHogs, treeCpuMs } from '../helpers/hogs.js';
import { TENSORS } from './helpers.js';

const cpu = suite('the VM time limit is CPU time');

// Through calls the VM's cost checks let run: set(range(900_000)) built 200 times over, seconds
// of CPU, far more than the budgets below.
const SLOW = Buffer.concat([
  Buffer.from('\x80\x02c__builtin__\nset\nq\x00c__builtin__\nrange\nq\x01', 'latin1'),
  ...Array.from({ length: 200 }, () => Buffer.from('h\x00h\x01J\xa0\xbb\x0d\x00\x85R\x85R0', 'latin1')),
  Buffer.from('00N.', 'latin1'),
]);
const SEVEN = Buffer.from('\x80\x02K\x07.', 'latin1');
cpu('a pickle that burns CPU is stopped once it has used its CPU budget, however busy the machine', async () => {
  const budget = 1000;
  const p = new UnpicklerPool();
  const hogs: ChildProcess[] = [];
  try {
    assert.equal((await vmUnpickle(SEVEN, { pool: p })).objects, [7]); // booted, off the budget
    const pid = p.pids[0] as number;
    hogs.push(...startHogs());
    const before = treeCpuMs(pid);
    const r = await vmScanPass(SLOW, { policy: createPolicy(), pool: p, timeoutMs: budget });
    const used = treeCpuMs(pid) - before;
    assert.equal(r.findings.map((f) => f.rule), ['vm/timeout'], JSON.stringify(r.findings));
    assert.match(r.findings[0]!.message, /timed out/);
    assert.match(r.findings[0]!.message, /CPU time/);
    // A wall-clock limit would have stopped it after far less CPU with every core contended; a CPU
    // limit stops it only after the whole budget (less the clock's 10 ms resolution).
    assert.ok(used >= budget - 20, `the worker used ${used} ms of CPU before it was stopped; its budget was ${budget} ms`);
    const m = /used (\d+) ms of CPU time, past its budget of (\d+) ms/.exec(r.findings[0]!.message);
    assert.ok(m, r.findings[0]!.message);
    assert.ok(Number(m![1]) >= budget, `reported ${m![1]} ms of CPU, budget ${budget} ms`);
    const hogCpu = await stopHogs(hogs.splice(0));
    assert.ok(hogCpu > 0, 'the hogs ran beside the call');
    assert.equal((await vmUnpickle(SEVEN, { pool: p })).objects, [7], 'the pool recovers');
  } finally {
    await stopHogs(hogs);
    await p.close();
  }
});

cpu('a benign checkpoint scanned beside CPU hogs is safe with a CPU budget a few times what it needs', async () => {
  const file = join(TENSORS, 'checkpoint.pt');
  const hogs: ChildProcess[] = [];
  try {
    // Unloaded: the worker boots (off any budget), then the same scan once more to measure what
    // it costs in CPU (the worker's; the static pass in this process costs far less).
    assert.is((await scan(file)).files[0]!.verdict, 'safe');
    const pid = defaultPool().pids[0] as number;
    const before = treeCpuMs(pid);
    const cpuBefore = process.cpuUsage();
    assert.is((await scan(file)).files[0]!.verdict, 'safe');
    const d = process.cpuUsage(cpuBefore);
    const cost = treeCpuMs(pid) - before + (d.user + d.system) / 1000;
    const budget = Math.max(500, Math.ceil(4 * cost));
    hogs.push(...startHogs());
    for (let i = 0; i < 3; i++) {
      const report = await scan(file, { limits: { maxScanMs: budget } });
      const f = report.files[0]!;
      assert.is(f.verdict, 'safe', `run ${i + 1} with ${hogs.length} hogs, budget ${budget} ms of CPU (cost ${cost} ms): ${JSON.stringify(f.findings)}`);
    }
    assert.ok((await stopHogs(hogs.splice(0))) > 0, 'the hogs ran beside the scans');
  } finally {
    await stopHogs(hogs);
    await closeDefaultPool();
  }
});

cpu.run();
