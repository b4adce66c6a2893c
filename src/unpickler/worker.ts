/**
 * Entry point of an unpickler worker process (forked by the pool). It holds one isolate, boots it
 * from the cached snapshot (building the snapshot on first use), and serves `run` requests one at a
 * time. An isolate that timed out or ran out of memory is disposed and replaced on the next call.
 * A V8 crash takes this process down, never the caller.
 */
import { loadAssets } from './assets.js';
import { VmIsolate } from './isolate.js';
import type { RunReply, RunRequest, WorkerConfig } from './protocol.js';
import { discardSnapshot, readSnapshot, writeSnapshot } from './snapshot.js';
import { GuardError } from '../errors.js';

const config = JSON.parse(process.env.MODELGUARD_WORKER_CONFIG ?? '{}') as Partial<WorkerConfig>;
let vm: VmIsolate | undefined;
let lastBoot: RunReply['boot'];

function boot(): VmIsolate {
  const assets = loadAssets(config.maxPages);
  const dir = config.cacheDir ?? '';
  const opts = config.heapMb ? { heapMb: config.heapMb } : {};
  if (dir) {
    const snap = readSnapshot(assets, dir);
    if (snap) {
      try {
        const v = VmIsolate.boot(assets, { ...opts, snapshot: snap });
        lastBoot = { ms: v.bootMs, snapshot: true, built: false };
        return v;
      } catch {
        discardSnapshot(assets, dir);
      }
    }
    const started = Date.now();
    const maker = VmIsolate.boot(assets, { ...opts, forSnapshot: true });
    const made = maker.makeSnapshot();
    maker.dispose();
    writeSnapshot(assets, made, dir);
    const v = VmIsolate.boot(assets, { ...opts, snapshot: made });
    lastBoot = { ms: Date.now() - started, snapshot: true, built: true };
    return v;
  }
  const v = VmIsolate.boot(assets, opts);
  lastBoot = { ms: v.bootMs, snapshot: false, built: false };
  return v;
}

function handle(req: RunRequest): RunReply {
  try {
    let fresh = false;
    if (!vm || !vm.usable) {
      vm = boot();
      fresh = true;
    }
    const started = Date.now();
    const out = vm.run(req.pickle, req.config, req.timeoutMs);
    const reply: RunReply = { type: 'result', id: req.id, ok: true, json: out.json, blob: out.blob, runMs: Date.now() - started };
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
  const reply = handle(msg);
  process.send?.(reply);
});
process.on('disconnect', () => process.exit(0));
process.send?.({ type: 'ready' });
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
