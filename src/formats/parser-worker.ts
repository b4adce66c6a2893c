/**
 * The worker side of deadline-worker.ts: runs the synchronous WebAssembly parsers (h5wasm,
 * 7-Zip) one request at a time. Only reading happens here; every judgement is made on the main
 * thread from the plain values returned.
 */
import { parentPort } from 'node:worker_threads';
import type { WorkerHello, WorkerReply, WorkerRequest } from './deadline-worker.js';
import { currentThreadId } from '../cpu-time.js';
import { loadH5, readHdf5Attrs, type Hdf5AttrRequest } from './keras-h5-read.js';
import { sevenZipOps } from './sevenzip-remote.js';

type Op = (args: never) => unknown;

const OPS: Record<string, Op> = {
  'h5.read': (a: Hdf5AttrRequest) => readHdf5Attrs(a),
  'h5.ready': () => loadH5().then(() => undefined),
  ...sevenZipOps,
};

const port = parentPort;
if (port) {
  // First, this thread's kernel id: the main thread counts the deadlines in its CPU time.
  const hello: WorkerHello = { tid: currentThreadId() };
  port.postMessage(hello);
  // Requests run strictly one after another: the parsers keep state between calls (7-Zip's file system).
  let queue: Promise<void> = Promise.resolve();
  port.on('message', (req: WorkerRequest) => {
    queue = queue.then(async () => {
      let reply: WorkerReply;
      const transfer: ArrayBuffer[] = [];
      try {
        const op = OPS[req.op];
        if (!op) throw new Error(`unknown operation ${req.op}`);
        const value = await op(req.args as never);
        if (value instanceof Uint8Array && value.byteOffset === 0 && value.byteLength === value.buffer.byteLength && value.buffer instanceof ArrayBuffer) transfer.push(value.buffer);
        reply = { id: req.id, ok: true, value };
      } catch (e) {
        const err = e instanceof Error ? e : new Error(String(e));
        const code = (err as { code?: unknown }).code;
        reply = { id: req.id, ok: false, name: err.name === 'Error' ? (err.constructor?.name ?? 'Error') : err.name, message: err.message, ...(typeof code === 'string' ? { code } : {}) };
      }
      try {
        port.postMessage(reply, transfer);
      } catch (e) {
        // A value that cannot be cloned is this module's bug; answer it rather than die unexplained.
        port.postMessage({ id: req.id, ok: false, name: 'Error', message: `reply to ${req.op} could not be posted: ${(e as Error).message}` });
      }
    });
  });
}
