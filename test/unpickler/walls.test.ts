/**
 * Walls around our own parser (issue 6): the unpickler worker runs behind the `loader` profile.
 * A test-only hook (PoolOptions.testBreakout) makes the worker process itself, outside Pyodide
 * and the isolate, do what an escape would: start /bin/echo, dial 192.0.2.1:9 (TEST-NET-1,
 * from inside the worker's own network namespace), read /etc/hostname, write under /tmp. Walled,
 * the kernel stops each and the load fails with the attempt in its report; unwalled, the same hook
 * succeeds, which proves the test can fail.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { GuardError } from '../../src/errors.js';
import { safeLoad } from '../../src/load/safeload.js';
import type { Report } from '../../src/report/model.js';
import { renderText } from '../../src/report/render.js';
import { scan } from '../../src/scan.js';
import { createPolicy } from '../../src/formats/pickle/policy.js';
import { UnpicklerPool, vmScanPass, vmUnpickle } from '../../src/unpickler/index.js';
import { wallsUnavailableReason, workerReadList } from '../../src/unpickler/walls.js';
import { ROOT, SCAN_FIXTURES } from '../helpers/fixtures.js';
import { HANG_GUARD_MS } from '../helpers/budget.js';

const CHECKPOINT = join(SCAN_FIXTURES, 'real', 'torch_checkpoint.pt');
const SEVEN = Buffer.from('\x80\x02K\x07.', 'latin1');
const why = wallsUnavailableReason();
if (why) console.log(`walls tests skipped: ${why}`);
const t = suite('unpickler walls');
const test = why ? t.skip : t;

async function refused(p: Promise<unknown>): Promise<GuardError & { report?: Report }> {
  try {
    await p;
  } catch (e) {
    assert.instance(e, GuardError);
    return e as GuardError & { report?: Report };
  }
  assert.unreachable('the load should have been refused');
  throw new Error('unreachable');
}

test('a walled worker that tries to exec /bin/echo is stopped; safeLoad throws with the attempt in its report', async () => {
  const pool = new UnpicklerPool({ walls: 'on', testBreakout: 'exec' });
  try {
    const err = await refused(safeLoad(CHECKPOINT, { pool }));
    assert.is(err.code, 'SANDBOX_VIOLATION');
    const walls = err.report?.walls;
    assert.ok(walls, 'the refused load carries its report');
    assert.is(walls!.mode, 'walled');
    assert.is(walls!.seccomp, 'loader');
    const ev = walls!.events?.find((e) => e.syscall === 'execve');
    assert.ok(ev, JSON.stringify(walls));
    assert.is(ev!.action, 'denied');
    assert.is(ev!.errno, 'EPERM');
    assert.equal(ev!.argv, ['/bin/echo', 'modelguard-breakout']);
    assert.is(ev!.path, '/bin/echo');
    assert.match(renderText(err.report!), /stopped=1 \(execve \/bin\/echo modelguard-breakout denied EPERM\)/);
  } finally {
    await pool.close();
  }
});

test('in the scan pass, a stopped breakout is a critical vm/wall-violation finding (the file attacked the parser)', async () => {
  const pool = new UnpicklerPool({ walls: 'on', testBreakout: 'exec' });
  try {
    const r = await vmScanPass(SEVEN, { policy: createPolicy(), pool });
    const f = r.findings.find((x) => x.rule === 'vm/wall-violation');
    assert.ok(f, JSON.stringify(r.findings));
    assert.is(f!.verdict, 'malicious');
    assert.is(f!.severity, 'critical');
    assert.match(f!.message, /execve\(\["\/bin\/echo","modelguard-breakout"\]\) denied \(EPERM\)/);
  } finally {
    await pool.close();
  }
});

test('the same hook without walls succeeds (so the test above can fail)', async () => {
  const pool = new UnpicklerPool({ walls: 'off', testBreakout: 'exec' });
  try {
    const r = await safeLoad(CHECKPOINT, { pool });
    assert.ok(r.tensors.size > 0);
    assert.is(r.report.walls?.mode, 'isolate-only');
    assert.is(r.report.walls?.events, undefined);
    const v = await vmUnpickle(SEVEN, { pool });
    assert.is(v.breakout, 'exec ok: modelguard-breakout');
    assert.equal(v.objects, [7]);
  } finally {
    await pool.close();
  }
});

test('a walled worker that dials out is refused; the event names the destination', async () => {
  const pool = new UnpicklerPool({ walls: 'on', testBreakout: 'connect' });
  try {
    const err = await refused(vmUnpickle(SEVEN, { pool }));
    assert.is(err.code, 'SANDBOX_VIOLATION');
    const events = err.context.events as Array<{ syscall: string; egress?: { address: string; port: number } }>;
    const ev = events.find((e) => e.syscall === 'connect');
    assert.ok(ev, JSON.stringify(events));
    assert.equal([ev!.egress?.address, ev!.egress?.port], ['192.0.2.1', 9]);
  } finally {
    await pool.close();
  }
});

test('a walled worker cannot write outside its (empty) write list: the open is reported', async () => {
  const pool = new UnpicklerPool({ walls: 'on', testBreakout: 'write' });
  try {
    const err = await refused(vmUnpickle(SEVEN, { pool }));
    assert.is(err.code, 'SANDBOX_VIOLATION');
    const events = err.context.events as Array<{ syscall: string; path?: string }>;
    assert.ok(events.some((e) => e.syscall.startsWith('open') && e.path?.startsWith('/tmp/modelguard-breakout-')), JSON.stringify(events));
  } finally {
    await pool.close();
  }
});

test('Landlock: the walled worker reads only its own list (/etc/hostname is EACCES); unwalled it reads it', async () => {
  assert.not.ok(workerReadList(join(ROOT, 'dist', 'src', 'unpickler', 'worker.js'), '/nonexistent').some((p) => p === '/etc' || p === '/'));
  const walled = new UnpicklerPool({ walls: 'on', testBreakout: 'read' });
  const open = new UnpicklerPool({ walls: 'off', testBreakout: 'read' });
  try {
    const a = await vmUnpickle(SEVEN, { pool: walled });
    assert.is(a.breakout, 'read failed: EACCES');
    const b = await vmUnpickle(SEVEN, { pool: open });
    assert.match(b.breakout ?? '', /^read ok/);
  } finally {
    await walled.close();
    await open.close();
  }
});

test('scan(), safeLoad() reports say which walls were up', async () => {
  const r = await scan(CHECKPOINT, { requireWalls: true });
  assert.is(r.walls?.mode, 'walled');
  assert.is(r.walls?.isolate, true);
  assert.is(r.walls?.seccomp, 'loader');
  assert.ok(r.walls?.network === 'netns' || r.walls?.network === 'seccomp+landlock', String(r.walls?.network));
  assert.ok((r.walls?.landlock ?? 0) >= 1);
  assert.is(r.walls?.rlimits?.core, 0);
  assert.match(renderText(r), /walls: mode=walled isolate=yes seccomp=loader network=\S+ landlock=ABI \d+ rlimits=/);
  const fast = await scan(CHECKPOINT, { fast: true });
  assert.is(fast.walls?.mode, 'static');
  const l = await safeLoad(CHECKPOINT, { requireWalls: true });
  assert.is(l.report.walls?.mode, 'walled');
});

test('requireWalls turns isolate-only into SANDBOX_UNAVAILABLE', async () => {
  const pool = new UnpicklerPool({ walls: 'off' });
  try {
    const err = await refused(safeLoad(CHECKPOINT, { pool, requireWalls: true }));
    assert.is(err.code, 'SANDBOX_UNAVAILABLE');
  } finally {
    await pool.close();
  }
});

test('guard scan/load/convert --require-walls with MODELGUARD_WALLS=off exit 2; walled they print the walls line', () => {
  const cli = join(ROOT, 'dist', 'src', 'cli', 'main.js');
  for (const args of [['scan', CHECKPOINT], ['load', '--no-values', CHECKPOINT], ['convert', CHECKPOINT, '/dev/null']]) {
    const off = spawnSync(process.execPath, [cli, ...args.slice(0, 1), '--require-walls', ...args.slice(1)], { env: { ...process.env, MODELGUARD_WALLS: 'off' }, encoding: 'utf8' });
    assert.is(off.status, 2, `${args[0]}: ${off.stderr}`);
    assert.match(off.stderr, /SANDBOX_UNAVAILABLE/);
  }
  const on = spawnSync(process.execPath, [cli, 'load', '--require-walls', '--no-values', CHECKPOINT], { encoding: 'utf8' });
  assert.is(on.status, 0, on.stderr);
  assert.match(on.stdout, /walls: mode=walled isolate=yes seccomp=loader/);
});

test('an idle walled pool does not keep its caller alive, and leaves no process behind', () => {
  const script = `
    import { UnpicklerPool, vmUnpickle } from ${JSON.stringify(join(ROOT, 'dist', 'src', 'unpickler', 'index.js'))};
    const pool = new UnpicklerPool({ walls: 'on' });
    const r = await vmUnpickle(Uint8Array.of(0x80, 2, 0x4b, 7, 0x2e), { pool });
    console.log(JSON.stringify({ v: r.objects, pids: pool.pids }));`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: HANG_GUARD_MS });
  assert.is(r.error, undefined, 'a hang guard, not a speed goal');
  assert.is(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout.trim()) as { v: number[]; pids: number[] };
  assert.equal(out.v, [7]);
  const deadline = Date.now() + HANG_GUARD_MS; // a hang guard: the launchers exit soon after their caller
  for (const pid of out.pids) {
    let alive = true;
    while (alive && Date.now() < deadline) {
      try {
        process.kill(pid, 0);
        spawnSync('sleep', ['0.05']);
      } catch {
        alive = false;
      }
    }
    assert.not.ok(alive, `launcher ${pid} outlived its caller`);
  }
});

t.run();
