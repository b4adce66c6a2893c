/**
 * Entry point of an unpickler worker process (forked by the pool). It holds one isolate, boots it
 * from the cached snapshot (building the snapshot on first use), and serves `run` requests one at a
 * time. An isolate that timed out or ran out of memory is disposed and replaced on the next call.
 * A V8 crash takes this process down, never the caller.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { loadAssets } from './assets.js';
import { VmIsolate } from './isolate.js';
import type { ProgressMessage, RunReply, RunRequest, WorkerConfig } from './protocol.js';
import { discardSnapshot, readSnapshot, writeSnapshot } from './snapshot.js';
import { GuardError } from '../errors.js';

const config = JSON.parse(process.env.MODELGUARD_WORKER_CONFIG ?? '{}') as Partial<WorkerConfig>;
let vm: VmIsolate | undefined;
let lastBoot: RunReply['boot'];
/** Set by walls.ts for walled serving workers: the snapshot cache is read-only to them. */
const cacheReadOnly = process.env.MODELGUARD_WORKER_CACHE_RO === '1';
/** The one-shot walled snapshot builder (walls.ts): the only worker allowed to write the cache. */
const snapshotOnly = process.env.MODELGUARD_WORKER_SNAPSHOT_ONLY === '1';

/** Set by the pool: the identity of the snapshot file as the host checked it (snapshot.ts verifySnapshot). */
const verifiedKey = process.env.MODELGUARD_WORKER_SNAPSHOT_KEY || undefined;

/** Tells the pool how far a cold boot is (it says so on stderr: a first use takes seconds). */
function progress(step: ProgressMessage['step']): void {
  try {
    process.send?.({ type: 'progress', step } satisfies ProgressMessage);
  } catch {
    /* the channel is gone: nobody to tell */
  }
}

function boot(): VmIsolate {
  const assets = loadAssets(config.maxPages);
  const dir = config.cacheDir ?? '';
  const opts = config.heapMb ? { heapMb: config.heapMb } : {};
  if (dir) {
    const snap = readSnapshot(assets, dir, cacheReadOnly, verifiedKey);
    if (snap) {
      try {
        const v = VmIsolate.boot(assets, { ...opts, snapshot: snap, transferSnapshot: true });
        lastBoot = { ms: v.bootMs, snapshot: true, built: false };
        return v;
      } catch {
        if (!cacheReadOnly) discardSnapshot(assets, dir);
      }
    }
    const started = Date.now();
    const maker = VmIsolate.boot(assets, { ...opts, forSnapshot: true, onStep: progress });
    progress('snapshot');
    const made = maker.makeSnapshot();
    maker.dispose();
    // A walled serving worker may not write: the pool has a one-shot walled builder repair the cache.
    if (!cacheReadOnly) {
      progress('write');
      writeSnapshot(assets, made, dir);
    }
    // The one-shot builder stops here: it serves nothing, so booting from what it made is wasted.
    if (snapshotOnly) return maker;
    progress('restore');
    const v = VmIsolate.boot(assets, { ...opts, snapshot: made, transferSnapshot: true });
    lastBoot = { ms: Date.now() - started, snapshot: true, built: true };
    return v;
  }
  const v = VmIsolate.boot(assets, opts);
  lastBoot = { ms: v.bootMs, snapshot: false, built: false };
  return v;
}

/**
 * Test-only (PoolOptions.testBreakout, passed as MODELGUARD_TEST_BREAKOUT, which the pool strips
 * from the environment it inherits): code in this process, outside the VM, does what an escape
 * from Pyodide and the isolate would: start a program, or dial out. Harmless payloads only.
 */
async function breakOut(kind: string): Promise<string> {
  try {
    if (kind === 'exec') return `exec ok: ${execFileSync('/bin/echo', ['modelguard-breakout'], { encoding: 'utf8' }).trim()}`;
    if (kind === 'connect') {
      return await new Promise<string>((resolve) => {
        const s = connect({ host: '192.0.2.1', port: 9 });
        const done = (r: string): void => {
          s.destroy();
          resolve(r);
        };
        s.setTimeout(1500, () => done('connect: timed out'));
        s.once('connect', () => done('connect ok'));
        s.once('error', (e: NodeJS.ErrnoException) => done(`connect failed: ${e.code ?? e.message}`));
      });
    }
    if (kind === 'read') return `read ok: ${readFileSync('/etc/hostname', 'utf8').trim().length} bytes`;
    if (kind === 'write') {
      const p = `/tmp/modelguard-breakout-${process.pid}`;
      writeFileSync(p, 'harmless');
      unlinkSync(p);
      return 'write ok';
    }
    return `unknown breakout ${kind}`;
  } catch (e) {
    return `${kind} failed: ${(e as NodeJS.ErrnoException).code ?? (e instanceof Error ? e.message : String(e))}`;
  }
}

async function handle(req: RunRequest): Promise<RunReply> {
  try {
    let fresh = false;
    if (!vm || !vm.usable) {
      vm = boot();
      fresh = true;
    }
    const started = Date.now();
    const out = await vm.run(req.pickle, req.config, req.timeoutMs);
    const reply: RunReply = { type: 'result', id: req.id, ok: true, json: out.json, blob: out.blob, runMs: Date.now() - started, cpuMs: out.cpuMs };
    if (fresh && lastBoot) reply.boot = lastBoot;
    return reply;
  } catch (e) {
    const code = e instanceof GuardError ? e.code : 'INTERNAL';
    const message = e instanceof Error ? e.message : String(e);
    if (vm && !vm.usable) vm = undefined;
    return { type: 'result', id: req.id, ok: false, error: { code, message } };
  }
}

process.on('message', (msg: RunRequest) => {
  if (!msg || msg.type !== 'run') return;
  const breakout = process.env.MODELGUARD_TEST_BREAKOUT;
  if (breakout) {
    void breakOut(breakout).then(async (outcome) => process.send?.({ ...(await handle(msg)), breakout: outcome }));
    return;
  }
  void handle(msg).then(serve);
});

function serve(reply: RunReply): void {
  process.send?.(reply);
  // A retired interpreter (timeout, memory, a graph too deep to free) is replaced right away,
  // off the caller's clock.
  if (vm && !vm.usable) vm = undefined;
  if (!vm) {
    setImmediate(() => {
      try {
        if (!vm) vm = boot();
      } catch {
        vm = undefined;
      }
    });
  }
}
process.on('disconnect', () => process.exit(0));
process.send?.({ type: 'ready' });
if (snapshotOnly) {
  // The one-shot walled build (walls.ts): the only worker allowed to write the cache; it serves nothing.
  try {
    boot();
  } finally {
    process.exit(0);
  }
}
if (process.env.MODELGUARD_WORKER_PREWARM === '1') {
  // Boot before the first request arrives; requests queue behind it in the event loop.
  setImmediate(() => {
    try {
      if (!vm) vm = boot();
    } catch {
      vm = undefined;
    }
  });
}
