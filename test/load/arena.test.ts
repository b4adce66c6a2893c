// The load's arena and its reads (src/load/reader.ts, native/addon/read_ranges.cc): tensors of a
// PyTorch zip checkpoint, read into one arena while the scan runs, come back bit-exact against
// torch.load of the same file, each owning its bytes; a refused load stops its reads and leaves no
// fd open; the native reader checks its plan and reports a file that ends early.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, mkdtempSync, openSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { GuardError } from '../../src/errors.js';
import { safeLoad, type Tensor } from '../../src/index.js';
import { closeDefaultPool } from '../../src/unpickler/index.js';
import { allocArena, SLOT_ALIGN_BYTES, startReads } from '../../src/load/reader.js';
import { loadNative } from '../../src/sandbox/native.js';

const PYTHON = '/usr/bin/python3';
const dir = mkdtempSync(join(tmpdir(), 'mg-arena-'));

/**
 * A checkpoint with what the arena has to get right: tensors over 2 MiB (the huge-page arena),
 * tied weights (two tensors, one storage; `same` is the very tensor `big`, one object in the graph), q/k/v chunks of one storage (disjoint views), a
 * transposed view (gathered), a slice at an offset, several dtypes, an empty tensor, a scalar.
 * The expected bytes are what torch.load returns, made contiguous.
 */
const MAKE = `
import sys, json, hashlib, torch
torch.manual_seed(1)
big = torch.randn(1024, 1024)
qkv = torch.randn(3 * 512, 700)
q, k, v = qkv.chunk(3)
base = torch.arange(40000, dtype=torch.int64)
sd = {
  'big': big, 'tied': big.view(1024, 1024), 'same': big,
  'q': q, 'k': k, 'v': v,
  't': torch.randn(300, 500).t(),
  'slice': base[1000:31000],
  'half': torch.randn(777, 513).half(),
  'bf16': torch.randn(1025, 3).bfloat16(),
  'empty': torch.zeros(0, 7),
  'scalar': torch.tensor(3.5, dtype=torch.float64),
  'bools': torch.rand(4099) > 0.5,
}
torch.save(sd, sys.argv[1])
out = {}
for name, t in torch.load(sys.argv[1], weights_only=True).items():
    c = t.contiguous()
    b = c.view(-1).view(torch.uint8).numpy().tobytes() if c.numel() > 0 else b''
    out[name] = {'shape': list(c.shape), 'sha256': hashlib.sha256(b).hexdigest()}
print(json.dumps(out))
`;

function sha(t: Tensor): string {
  return createHash('sha256').update(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength)).digest('hex');
}

function openFds(): number {
  return readdirSync('/proc/self/fd').length;
}

const arena = suite('safeLoad() arena: one allocation, reads under way during the scan');
arena.after(() => {
  rmSync(dir, { recursive: true, force: true });
  return closeDefaultPool();
});

arena('a torch-written checkpoint comes back bit-exact, every tensor owning its bytes', async () => {
  const file = join(dir, 'views.pt');
  const expected = JSON.parse(execFileSync(PYTHON, ['-c', MAKE, file], { encoding: 'utf8' })) as Record<string, { shape: number[]; sha256: string }>;
  const r = await safeLoad(file);
  assert.is(r.format, 'pytorch-zip');
  assert.equal([...r.tensors.keys()].sort(), Object.keys(expected).sort());
  for (const [name, e] of Object.entries(expected)) {
    const t = r.tensors.get(name) as Tensor;
    assert.equal(t.shape, e.shape, `${name} shape`);
    assert.is(sha(t), e.sha256, `${name} bytes`);
    // Typed arrays need their element alignment; slots start on SLOT_ALIGN_BYTES.
    assert.is(t.data.byteOffset % t.data.BYTES_PER_ELEMENT, 0, `${name} alignment`);
  }
  // One arena: the storages share a buffer (the tiny ones may sit in their own).
  const buffers = new Set([...r.tensors.values()].filter((t) => t.data.byteLength > 0).map((t) => t.data.buffer));
  assert.ok(buffers.size <= 2, `${buffers.size} buffers for ${r.tensors.size} tensors`);
  assert.is(r.tensors.get('same'), r.tensors.get('big'), 'one pickled tensor is one object');
  // No two tensor objects alias: writing one changes no other (tied weights share a storage in
  // PyTorch; here each tensor owns its bytes).
  const snapshot = new Map([...r.tensors].map(([k, t]) => [k, sha(t)]));
  for (const [name, t] of r.tensors) {
    if (t.data.byteLength === 0) continue;
    const bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    bytes[0] = (bytes[0] as number) ^ 0xff;
    for (const [other, s] of snapshot) {
      if (r.tensors.get(other) !== t) assert.is(sha(r.tensors.get(other) as Tensor), s, `writing ${name} changed ${other}`);
    }
    bytes[0] = (bytes[0] as number) ^ 0xff;
  }
});

arena('a refused checkpoint stops its reads and leaves no fd open', async () => {
  // The storages of a real checkpoint behind a data.pkl that calls os.system: the scan refuses it
  // (nothing runs it: the VM intercepts calls, and the payload would only echo).
  const file = join(dir, 'refused.pt');
  execFileSync(PYTHON, ['-c', `
import sys, io, zipfile, torch
torch.save({'w': torch.randn(4 * 1024 * 1024)}, sys.argv[1] + '.src')
src = zipfile.ZipFile(sys.argv[1] + '.src')
out = zipfile.ZipFile(sys.argv[1], 'w', zipfile.ZIP_STORED)
for info in src.infolist():
    data = src.read(info.filename)
    if info.filename.endswith('/data.pkl'):
        data = b"cos\\nsystem\\n(S'echo mg-arena'\\ntR."
    out.writestr(info, data)
out.close()
`, file]);
  const before = openFds();
  let err: unknown;
  try {
    await safeLoad(file);
  } catch (e) {
    err = e;
  }
  assert.instance(err, GuardError);
  assert.is((err as GuardError).code, 'UNSAFE_MODEL');
  assert.is(openFds(), before, 'the file (and nothing else) is closed');
});

arena('allocArena packs slots on SLOT_ALIGN_BYTES and refuses an impossible size by name', () => {
  const slots = allocArena([3, 5 * 1024 * 1024 + 1, 0, 17], (i) => `tensor t${i}`);
  assert.is(new Set(slots.map((s) => s.buffer)).size, 1);
  for (const s of slots) assert.is(s.byteOffset % SLOT_ALIGN_BYTES, 0);
  for (let i = 1; i < slots.length; i++) assert.ok((slots[i]?.byteOffset ?? 0) >= (slots[i - 1]?.byteOffset ?? 0) + (slots[i - 1]?.length ?? 0));
  try {
    allocArena([1, -4], (i) => `tensor t${i}`);
    assert.unreachable();
  } catch (e) {
    assert.instance(e, GuardError);
    assert.is((e as GuardError).code, 'INVALID_MODEL');
    assert.match((e as GuardError).message, /tensor t1/);
  }
});

for (const via of ['auto', 'libuv'] as const) {
  arena(`reads past the end of the file are IO errors naming the offset (${via === 'auto' ? 'addon threads' : 'fs.read'})`, async () => {
    const file = join(dir, 'short.bin');
    writeFileSync(file, Buffer.alloc(10_000, 7));
    const fd = openSync(file, 'r');
    try {
      const dest = new Uint8Array(allocArena([20_000], () => 'x')[0]?.buffer as ArrayBuffer);
      await startReads(fd, [{ fileOffset: 0, length: 20_000, dest, destOffset: 0 }], file, via).done;
      assert.unreachable();
    } catch (e) {
      assert.instance(e, GuardError);
      assert.is((e as GuardError).code, 'IO');
      assert.match((e as GuardError).message, /file ended at byte 10000/);
    } finally {
      closeSync(fd);
    }
  });
}

arena('the native reader refuses a plan row outside its buffer before reading anything', () => {
  const native = loadNative();
  const buf = new ArrayBuffer(4096);
  const fd = openSync(join(dir, 'short.bin'), 'r');
  try {
    for (const row of [[0, 4000, 0, 97], [1, 0, 0, 1], [0, -1, 0, 1], [0, 0.5, 0, 1], [0, 0, 0, 2 ** 53]]) {
      assert.throws(() => native.readRanges(fd, [buf], new Float64Array(row), 2, null), /readRanges: plan row 0/);
    }
  } finally {
    closeSync(fd);
  }
});

for (const via of ['auto', 'libuv'] as const) {
  arena(`reads fill exactly their ranges; a cancelled read settles without an error (${via === 'auto' ? 'addon threads' : 'fs.read'})`, async () => {
    const file = join(dir, 'pattern.bin');
    const size = 64 * 1024 * 1024;
    const pattern = Buffer.alloc(size);
    for (let i = 0; i < size; i += 4) pattern.writeUInt32LE(i, i);
    writeFileSync(file, pattern);
    const fd = openSync(file, 'r');
    try {
      const [a, b] = allocArena([size - 8, 1000], () => 'x');
      const destA = new Uint8Array(a?.buffer as ArrayBuffer, a?.byteOffset, a?.length);
      const destB = new Uint8Array(b?.buffer as ArrayBuffer, b?.byteOffset, b?.length);
      const jobs = [
        { fileOffset: 8, length: size - 8, dest: destA, destOffset: 0 },
        { fileOffset: 4, length: 1000, dest: destB, destOffset: 0 },
      ];
      await startReads(fd, jobs, file, via).done;
      assert.ok(Buffer.from(destA.buffer, destA.byteOffset, destA.byteLength).equals(pattern.subarray(8)));
      assert.ok(Buffer.from(destB.buffer, destB.byteOffset, destB.byteLength).equals(pattern.subarray(4, 1004)));
      const c = allocArena([size], () => 'x')[0];
      const pending = startReads(fd, [{ fileOffset: 0, length: size, dest: new Uint8Array(c?.buffer as ArrayBuffer, 0, size), destOffset: 0 }], file, via);
      pending.cancel();
      await pending.done; // resolves: a cancelled read is no error
    } finally {
      closeSync(fd);
    }
  });
}

arena('an arena never shows an earlier load\'s bytes between its slots (kept mappings are reused as they are)', async () => {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  const sizes = [100, 3 * 1024 * 1024, 1, 5 * 1024 * 1024 + 3];
  for (let round = 0; round < 4; round++) {
    const slots = allocArena(sizes, (i) => `tensor t${i}`);
    const all = new Uint8Array(slots[0]?.buffer as ArrayBuffer);
    let end = 0;
    for (const s of slots) {
      for (let i = end; i < s.byteOffset; i++) assert.is(all[i], 0, `gap byte ${i} in round ${round}`);
      end = s.byteOffset + s.length;
    }
    // What a load writes: every slot whole. Then dropped, so its mapping may be kept and reused.
    all.fill(0xab);
    gc();
    await new Promise((r) => setImmediate(r)); // the mapping's finalizer runs after the collection
  }
});

arena.run();
