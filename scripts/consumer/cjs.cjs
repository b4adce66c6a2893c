// Run in a fresh consumer project by scripts/consumer-check.mjs: the package as `require` sees it
// (Node's require(esm)): the same exports, and a scan through them.
'use strict';
const assert = require('node:assert/strict');
const { join } = require('node:path');
const mg = require('modelguard');

for (const name of ['scan', 'safeLoad', 'run', 'GuardError', 'isGuardError', 'renderText', 'closeUnpicklerPool']) {
  assert.equal(typeof mg[name], 'function', `require('modelguard').${name}`);
}
assert.ok(mg.BUILTIN_PROFILES.includes('inference'));
(async () => {
  const report = await mg.scan(join(process.argv[2], 'evil.pt'), { requireWalls: true });
  assert.equal(report.files[0].verdict, 'malicious');
  await mg.closeUnpicklerPool();
  console.log('require: exports present; scan calls evil.pt malicious');
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
