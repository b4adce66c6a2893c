import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { scan } from '../src/index.js';
import { FIXTURES, SCAN_FIXTURES, scanCases } from './helpers/fixtures.js';
import { defaultPool } from '../src/unpickler/pool.js';

// The process-wide pool is made at the first VM call: two workers here whatever the machine, so
// the fan-out test below has two to spread over.
process.env.MODELGUARD_WORKERS ??= '2';

// Files in the PyTorch 2.x archive layout (test/fixtures/gen_tensors.py writes them from PyTorch
// 1.13's output): extra records and 64-byte alignment padding are no finding.
for (const f of ['checkpoint_torch2_layout.pt', 'all_dtypes_torch2_layout.pt']) {
  test(`${f} (PyTorch 2.x layout) is safe with no finding`, async () => {
    const report = await scan(join(FIXTURES, 'tensors', f));
    assert.is(report.files[0]!.verdict, 'safe', JSON.stringify(report.files[0]!.findings));
    assert.equal(report.files[0]!.findings, []);
  });
}

// One named test per fixture written by test/fixtures/generate.py (real libraries + crafted bypasses).
for (const c of scanCases()) {
  test(`${c.file} is ${c.verdict}${c.rule ? ` via ${c.rule}` : ''} (${c.why})`, async () => {
    const report = await scan(join(SCAN_FIXTURES, c.file));
    const file = report.files[0];
    assert.ok(file);
    const rules = file.findings.map((f) => f.rule);
    assert.is(file.verdict, c.verdict, `${c.file}: ${JSON.stringify(file.findings.map((f) => [f.rule, f.message]))}`);
    if (c.rule) assert.ok(rules.includes(c.rule), `${c.file} lacks ${c.rule}: ${rules.join(', ')}`);
  });
}

test('scan() accepts bytes and judges them by content', async () => {
  const bytes = readFileSync(join(SCAN_FIXTURES, 'bypass/gadget_pip_main.pkl'));
  const report = await scan(new Uint8Array(bytes), { name: 'upload.bin' });
  assert.is(report.files[0]?.verdict, 'malicious');
  assert.is(report.files[0]?.path, 'upload.bin');
});

test('a malicious finding names the call with its arguments and byte offset', async () => {
  const report = await scan(join(SCAN_FIXTURES, 'bypass/memo_confusion.pkl'));
  const f = report.files[0]?.findings.find((x) => x.rule === 'pickle/dangerous-global');
  assert.ok(f);
  assert.match(f.message, /os\.system/);
  assert.is(f.evidence, "would call os.system('echo modelguard-fixture')");
  assert.type(f.location?.offset, 'number');
});

test('findings inside a zip carry the member name', async () => {
  const report = await scan(join(SCAN_FIXTURES, 'attack/torch_renamed_root.pt'));
  const f = report.files[0]?.findings.find((x) => x.rule === 'pickle/dangerous-global');
  assert.is(f?.location?.member, 'not_archive/data.pkl');
  assert.is(report.files[0]?.format, 'pytorch-zip');
});

test('a safe verdict says what it rests on', async () => {
  const report = await scan(join(SCAN_FIXTURES, 'real/torch_state_dict.pt'));
  const file = report.files[0];
  assert.is(file?.verdict, 'safe');
  assert.match(file?.basis ?? '', /only allowlisted globals \(\d+\), 4 tensors/);
});

test('--allow accepts a user class that is otherwise suspicious', async () => {
  const path = join(SCAN_FIXTURES, 'bypass/unknown_class.pkl');
  assert.is((await scan(path)).files[0]?.verdict, 'suspicious');
  assert.is((await scan(path, { allow: ['mypackage.models.Config'] })).files[0]?.verdict, 'safe');
  assert.is((await scan(path, { allow: ['mypackage.*'] })).files[0]?.verdict, 'safe');
});

test('--allow never turns a dangerous import safe through a prefix of an unrelated module', async () => {
  const report = await scan(join(SCAN_FIXTURES, 'bypass/gadget_pip_main.pkl'), { allow: ['mypackage.*'] });
  assert.is(report.files[0]?.verdict, 'malicious');
});

test('a directory is scanned recursively with one report per file', async () => {
  const report = await scan(join(SCAN_FIXTURES, 'real'));
  assert.ok(report.files.length >= 8);
  assert.ok(report.files.every((f) => f.path.startsWith(join(SCAN_FIXTURES, 'real'))));
  assert.is(report.summary.files, report.files.length);
});

test('a folder scanned several files at a time gives every verdict as when scanned alone, in walk order', async () => {
  const report = await scan(SCAN_FIXTURES);
  const byPath = new Map(report.files.map((f) => [f.path, f]));
  const cases = scanCases();
  assert.ok(cases.length >= 20);
  for (const c of cases) {
    const f = byPath.get(join(SCAN_FIXTURES, c.file));
    assert.ok(f, `${c.file} is in the folder's report`);
    // A walk passes over files in no model format (`other`, safe) that alone are `invalid`: the
    // walk's rule, not the fan-out's.
    if (f.format === 'other') {
      assert.is(c.verdict, 'invalid', `${c.file} is skipped by the walk as no model format`);
      continue;
    }
    assert.is(f.verdict, c.verdict, `${c.file} in a folder scan: ${JSON.stringify(f.findings.map((x) => x.rule))}`);
  }
  const paths = report.files.map((f) => f.path);
  assert.equal(paths, [...paths].sort(), 'reports keep the walk order');
  assert.is(defaultPool().maxWorkers, 2, 'three lanes');
  assert.is(report.walls?.mode, 'walled');
});

test('a directory walk follows symbolic links (Hugging Face cache snapshots are links to blobs), once per real folder', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'mg-walk-'));
  try {
    mkdirSync(join(dir, 'blobs'));
    mkdirSync(join(dir, 'snapshot', 'sub'), { recursive: true });
    copyFileSync(join(SCAN_FIXTURES, 'bypass/gadget_pip_main.pkl'), join(dir, 'blobs', '9f2c'));
    symlinkSync('../blobs/9f2c', join(dir, 'snapshot', 'pytorch_model.bin'));
    symlinkSync('..', join(dir, 'snapshot', 'sub', 'loop'));
    symlinkSync('../blobs/missing', join(dir, 'snapshot', 'model.safetensors'));
    const report = await scan(join(dir, 'snapshot'), { fast: true });
    const byPath = new Map(report.files.map((f) => [f.path.slice(dir.length + 1), f]));
    assert.is(byPath.get('snapshot/pytorch_model.bin')?.verdict, 'malicious');
    assert.is(byPath.get('snapshot/model.safetensors')?.verdict, 'error');
    assert.ok(byPath.get('snapshot/model.safetensors')?.findings.some((f) => f.rule === 'walk/dangling-symlink'));
    assert.is(report.files.length, 2, [...byPath.keys()].join(', '));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('scan() rejects a missing path with a typed error', async () => {
  try {
    await scan(join(SCAN_FIXTURES, 'does-not-exist.pt'));
    assert.unreachable('should throw');
  } catch (e) {
    assert.is((e as { code?: string }).code, 'NOT_FOUND');
  }
});

// Issue 13 point 4: a stopped scan keeps what it finished and says it was stopped.
test('an aborted signal stops a folder scan between files: interrupted, with the files done so far', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'mg-abort-'));
  try {
    for (let i = 0; i < 5; i++) writeFileSync(join(dir, `f${i}.pkl`), Buffer.from([0x80, 2, 0x4b, i, 0x2e]));
    const ac = new AbortController();
    const report = await scan(dir, { fast: true, signal: ac.signal, onProgress: (done) => (done === 2 ? ac.abort() : undefined) });
    assert.is(report.interrupted, true);
    assert.equal(report.files.map((f) => basename(f.path)), ['f0.pkl', 'f1.pkl']);
    assert.is(report.summary.files, 2);
    const whole = await scan(dir, { fast: true, signal: new AbortController().signal });
    assert.is(whole.interrupted, undefined, 'a scan that ran to the end is not marked');
    assert.is(whole.files.length, 5);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

// Issue 12 point 1: what a loader would unpickle is analysed whatever it starts with. A file no
// format claims is `safe` only when CPython rejects its first opcode, or when both the static
// pass and CPython's own machine show it breaking before anything is imported or called.
const sbu = (s: string) => Buffer.concat([Buffer.from([0x8c, Buffer.byteLength(s)]), Buffer.from(s)]);
const frame = (body: Buffer) => {
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(body.length));
  return Buffer.concat([Buffer.from([0x95]), len, body]);
};
/** os.system('echo modelguard-fixture') without PROTO: scanned, never run. */
const CALL = Buffer.concat([sbu('os'), sbu('system'), Buffer.from([0x93]), sbu('echo modelguard-fixture'), Buffer.from('\x85R.', 'latin1')]);
// The twin's verdict: the INT one is `invalid` because the VM's CPython 3.14 reads INT in base 10
// and refuses `0x10` (3.11 loads 16): an honest disagreement, not a flag.
const NO_PROTO: Array<[string, Buffer, Buffer, string]> = [
  ['FRAME first', frame(CALL), frame(Buffer.from('}\x94.', 'latin1')), 'safe'],
  ['a string opcode first', Buffer.concat([Buffer.from("S'x'\n0", 'latin1'), CALL]), Buffer.from("S'x'\n.", 'latin1'), 'safe'],
  ['a base-prefixed INT first (I0x10)', Buffer.concat([Buffer.from('I0x10\n0', 'latin1'), CALL]), Buffer.from('I0x10\n.', 'latin1'), 'invalid'],
];
for (const [what, evil, twin, twinVerdict] of NO_PROTO) {
  test(`a pickle with no PROTO and ${what}, named pytorch_model.bin in a model folder, is analysed`, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'mg-detect-'));
    try {
      mkdirSync(join(dir, 'evil'));
      mkdirSync(join(dir, 'twin'));
      writeFileSync(join(dir, 'evil', 'pytorch_model.bin'), evil);
      writeFileSync(join(dir, 'twin', 'pytorch_model.bin'), twin);
      const bad = (await scan(join(dir, 'evil'))).files[0];
      assert.is(bad?.verdict, 'malicious', JSON.stringify(bad));
      const good = (await scan(join(dir, 'twin'))).files[0];
      assert.is(good?.verdict, twinVerdict, JSON.stringify(good));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

test('text files in a model folder stay safe: CPython rejects them before importing anything', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'mg-detect-'));
  try {
    // '#' is no opcode; "MIT License" starts with BININT2 and breaks at the space after it.
    writeFileSync(join(dir, 'README.md'), '# A model\n');
    writeFileSync(join(dir, 'LICENSE'), 'MIT License\n\nCopyright (c) 2026\n');
    const report = await scan(dir);
    for (const f of report.files) {
      assert.is(f.verdict, 'safe', JSON.stringify(f));
      assert.match(f.basis ?? '', /not a model format: CPython's unpickler rejects/);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a signal aborted before the scan starts yields an empty interrupted report, not an error', async () => {
  const ac = new AbortController();
  ac.abort();
  const report = await scan(join(SCAN_FIXTURES, 'real'), { fast: true, signal: ac.signal });
  assert.is(report.interrupted, true);
  assert.equal(report.files, []);
});

test.run();
