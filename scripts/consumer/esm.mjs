// Run in a fresh consumer project by scripts/consumer-check.mjs: the package as `import` sees it.
// safeLoad of the benign checkpoint returns bit-exact tensors, the evil one is refused with its
// report attached, and the walls were up for both.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as mg from 'modelguard';

const dir = process.argv[2];
const expected = JSON.parse(readFileSync(join(dir, 'expected.json'), 'utf8'));
const r = await mg.safeLoad(join(dir, 'benign.pt'), { requireWalls: true });
assert.equal(r.format, 'pytorch-zip');
assert.deepEqual([...r.tensors.keys()].sort(), Object.keys(expected).sort());
for (const [name, want] of Object.entries(expected)) {
  const t = r.tensors.get(name);
  assert.equal(t.dtype, want.dtype, name);
  assert.deepEqual(t.shape, want.shape, name);
  const sha = createHash('sha256').update(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength)).digest('hex');
  assert.equal(sha, want.sha256, `${name}: bytes differ`);
}
assert.equal(r.report.files[0].verdict, 'safe');

let refused;
try {
  await mg.safeLoad(join(dir, 'evil.pt'), { requireWalls: true });
} catch (e) {
  refused = e;
}
assert.ok(mg.isGuardError(refused), `evil.pt was not refused: ${refused}`);
assert.equal(refused.code, 'UNSAFE_MODEL', refused.message);
assert.equal(refused.report.files[0].verdict, 'malicious');
await mg.closeUnpicklerPool();
console.log(`import: safeLoad ${r.tensors.size} tensors bit-exact; evil.pt refused (UNSAFE_MODEL, malicious)`);
