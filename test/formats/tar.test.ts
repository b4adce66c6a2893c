// PyTorch's oldest checkpoint layout: a tar whose `storages` and `tensors` members hold pickles
// between raw bytes. No installable PyTorch still writes it, so the layout is built here from
// torch/serialization.py's legacy_load (what it unpickles, in what order, what it steps over),
// with Python's own tarfile and pickle.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { scan } from '../../src/index.js';

const WRITE_TAR_LAYOUT = String.raw`
import io, os, pickle, struct, sys, tarfile, types
out, where = sys.argv[1], sys.argv[2]

# Stand-in module so the pickles name torch.FloatStorage exactly as torch.save wrote it.
torch = types.ModuleType("torch")
class FloatStorage: pass
FloatStorage.__module__ = "torch"
torch.FloatStorage = FloatStorage
sys.modules["torch"] = torch

class Payload:
    # Harmless marker command; this file is scanned, never loaded.
    def __reduce__(self):
        return (os.system, ("echo modelguard-fixture",))

def dump(f, obj):
    pickle.dump(obj, f, protocol=2)

storages = io.BytesIO()
dump(storages, 2)
for key in ("0", "1"):
    dump(storages, (key, "cpu", FloatStorage))
    storages.write(struct.pack("<q", 3))
    storages.write(struct.pack("<3f", 1.0, 2.0, 3.0))
# storage_views: (target_cdata, root_cdata, offset, numel) per view, read after the raw storages.
dump(storages, [Payload()] if where == "storage_views" else [("2", "0", 1, 2)])

tensors = io.BytesIO()
dump(tensors, 1)
dump(tensors, ("t0", "0", Payload() if where == "tensors" else FloatStorage))
tensors.write(struct.pack("<i", 1) + b"\0" * 4 + struct.pack("<q", 3) + struct.pack("<q", 1) + struct.pack("<q", 0))

main = io.BytesIO()
dump(main, {"weight": 1})
sys_info = io.BytesIO()
dump(sys_info, {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}})

with tarfile.open(out, mode="w:", format=tarfile.PAX_FORMAT) as tar:
    for name, buf in (("sys_info", sys_info), ("pickle", main), ("tensors", tensors), ("storages", storages)):
        info = tarfile.TarInfo(name)
        info.size = len(buf.getvalue())
        tar.addfile(info, io.BytesIO(buf.getvalue()))
`;

function writeLayout(dir: string, where: 'none' | 'storage_views' | 'tensors'): string {
  const out = join(dir, `legacy-${where}.tar`);
  const r = spawnSync('/usr/bin/python3', ['-c', WRITE_TAR_LAYOUT, out, where], { encoding: 'utf8' });
  assert.is(r.status, 0, r.stderr);
  return out;
}

for (const where of ['storage_views', 'tensors'] as const) {
  test(`a payload in the ${where} pickle of the tar layout (after raw bytes) is found`, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'mg-tar-'));
    try {
      const report = await scan(writeLayout(dir, where), { fast: true });
      const f = report.files[0];
      assert.is(f?.format, 'pytorch-tar');
      assert.is(f?.verdict, 'malicious', JSON.stringify(f?.findings));
      const hit = f?.findings.find((x) => x.verdict === 'malicious');
      assert.is(hit?.location?.member, where === 'tensors' ? 'tensors' : 'storages');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

test('the same tar layout without a payload is safe: every pickle read, the raw bytes stepped over', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'mg-tar-'));
  try {
    const report = await scan(writeLayout(dir, 'none'));
    const f = report.files[0];
    assert.is(f?.verdict, 'safe', JSON.stringify(f?.findings));
    // storages: count, 2 × args, storage_views; tensors: count, 1 × args
    assert.is(f?.stats?.legacyPickles, 6);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
