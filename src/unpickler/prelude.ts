/**
 * JavaScript evaluated first in every unpickler isolate. The isolate is bare V8: no console, no
 * timers, no TextEncoder, no crypto, no fetch. These stand-ins are pure JS, except
 * `crypto.getRandomValues`, which is backed by the host's `__mgRandom` callback. Pyodide's loader
 * takes its "shell" path because `read`/`load` exist; `readbuffer` hands it the stdlib zip.
 * WebAssembly compilation is made synchronous (isolated-vm's async compile can hang, issue #308):
 * an empty buffer stands for the Pyodide binary, compiled by the host and copied in as `__mgWasm`.
 */
export const PRELUDE = String.raw`
'use strict';
globalThis.self = globalThis;
globalThis.WorkerGlobalScope = function WorkerGlobalScope() {};
globalThis.__mgOut = [];
globalThis.read = function read(p) { throw new Error('read(' + p + ') not available'); };
globalThis.load = function load(p) { throw new Error('load(' + p + ') not available'); };
globalThis.readbuffer = function readbuffer(p) { if (String(p).endsWith('python_stdlib.zip')) return __mgStdlib; return new Uint8Array(0); };
globalThis.print = (s) => __mgOut.push(String(s));
globalThis.printErr = (s) => __mgOut.push(String(s));
globalThis.console = { log: (...a) => __mgOut.push(a.join(' ')), warn: (...a) => __mgOut.push(a.join(' ')), error: (...a) => __mgOut.push(a.join(' ')), info: () => {}, debug: () => {} };
globalThis.crypto = { getRandomValues(arr) { const b = __mgRandom(arr.byteLength); new Uint8Array(arr.buffer, arr.byteOffset, arr.byteLength).set(b); return arr; } };
(function () {
  const W = WebAssembly;
  const compileSync = (src) => (src instanceof W.Module ? src : src && src.byteLength === 0 ? __mgWasm : new W.Module(src));
  W.compile = function compile(src) { try { return Promise.resolve(compileSync(src)); } catch (e) { return Promise.reject(e); } };
  W.instantiate = function instantiate(src, imports) {
    try {
      const module = compileSync(src);
      const instance = new W.Instance(module, imports);
      return Promise.resolve(src instanceof W.Module ? instance : { instance, module });
    } catch (e) { return Promise.reject(e); }
  };
  W.instantiateStreaming = undefined;
  W.compileStreaming = undefined;
})();
globalThis.performance = { now() { return Date.now(); }, timeOrigin: 0 };
const timers = []; let timerId = 1;
globalThis.setTimeout = (fn, ms, ...args) => { const id = timerId++; timers.push({ id, fn, args }); return id; };
globalThis.clearTimeout = (id) => { const i = timers.findIndex((t) => t.id === id); if (i >= 0) timers.splice(i, 1); };
globalThis.setInterval = () => 0; globalThis.clearInterval = () => {};
globalThis.queueMicrotask = (fn) => Promise.resolve().then(fn);
globalThis.__mgPump = () => { const batch = timers.splice(0, timers.length); for (const t of batch) t.fn(...t.args); return timers.length; };
class TextEncoder { get encoding() { return 'utf-8'; } encode(s = '') { s = String(s); const out = []; for (let i = 0; i < s.length; i++) { let c = s.codePointAt(i); if (c > 0xffff) i++; if (c >= 0xd800 && c <= 0xdfff) c = 0xfffd;
  if (c < 0x80) out.push(c); else if (c < 0x800) out.push(0xc0 | (c >> 6), 0x80 | (c & 63)); else if (c < 0x10000) out.push(0xe0 | (c >> 12), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63)); else out.push(0xf0 | (c >> 18), 0x80 | ((c >> 12) & 63), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63)); } return new Uint8Array(out); }
  encodeInto(s, dest) { const b = this.encode(s); const n = Math.min(b.length, dest.length); dest.set(b.subarray(0, n)); return { read: s.length, written: n }; } }
class TextDecoder { constructor(label = 'utf-8', opts = {}) { this.fatal = !!opts.fatal; } get encoding() { return 'utf-8'; }
  decode(buf) { if (buf === undefined) return ''; const b = buf instanceof Uint8Array ? buf : ArrayBuffer.isView(buf) ? new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength) : new Uint8Array(buf);
    let s = ''; const parts = []; let i = 0; const n = b.length;
    while (i < n) { const c = b[i]; let cp, need;
      if (c < 0x80) { cp = c; need = 0; } else if (c >= 0xc2 && c < 0xe0) { cp = c & 31; need = 1; } else if (c >= 0xe0 && c < 0xf0) { cp = c & 15; need = 2; } else if (c >= 0xf0 && c < 0xf5) { cp = c & 7; need = 3; } else { if (this.fatal) throw new TypeError('invalid utf-8'); parts.push(0xfffd); i++; continue; }
      let j = 1, ok = true; for (; j <= need; j++) { const d = b[i + j]; if (i + j >= n || (d & 0xc0) !== 0x80) { ok = false; break; } cp = (cp << 6) | (d & 63); }
      if (ok && ((need === 2 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) || (need === 3 && (cp < 0x10000 || cp > 0x10ffff)))) ok = false;
      if (!ok) { if (this.fatal) throw new TypeError('invalid utf-8'); parts.push(0xfffd); i += Math.max(1, j); continue; }
      parts.push(cp); i += need + 1;
      if (parts.length > 8192) { s += String.fromCodePoint(...parts); parts.length = 0; } }
    return s + String.fromCodePoint(...parts); } }
globalThis.TextEncoder = TextEncoder; globalThis.TextDecoder = TextDecoder;
`;
