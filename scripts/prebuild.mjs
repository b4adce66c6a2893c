#!/usr/bin/env node
// Builds the prebuilt binaries that the package ships (npm pack and npm publish run this as
// `prepack`): the Node-API addon and guard-exec, built from source here and copied, stripped, to
// prebuilds/<platform>-<arch>/. One addon serves every Node line (Node-API, NAPI_VERSION pinned in
// binding.gyp), so a consumer on this platform compiles nothing. The result is checked the way
// the install script checks it, so a pack never ships a binary that does not load.
import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { checkNative, FILES, nodeGypRebuild, platformTag, PREBUILT_PLATFORMS, prebuiltDir, ROOT, sourceBuildDir } from './native-files.mjs';

const tag = platformTag();
rmSync(join(ROOT, 'prebuilds'), { recursive: true, force: true });
if (!PREBUILT_PLATFORMS.includes(tag)) {
  console.error(`prebuild: ${tag} is not a prebuilt platform (${PREBUILT_PLATFORMS.join(', ')}); the package will build from source on install`);
  process.exit(0);
}
const r = nodeGypRebuild();
if (r.error || r.status !== 0) {
  console.error(`prebuild: node-gyp rebuild failed (${r.error ? r.error.message : `exit ${r.status ?? r.signal}`})`);
  process.exit(1);
}
const out = prebuiltDir(tag);
mkdirSync(out, { recursive: true });
for (const f of FILES) {
  const to = join(out, f);
  copyFileSync(join(sourceBuildDir(), f), to);
  // Symbols are hidden already (binding.gyp); the debug info is half the file.
  spawnSync('strip', ['--strip-unneeded', to], { stdio: 'inherit' });
  chmodSync(to, 0o755);
}
const problem = checkNative(out);
if (problem) {
  console.error(`prebuild: the binaries built do not work here: ${problem}`);
  process.exit(1);
}
console.error(`prebuild: ${FILES.map((f) => join('prebuilds', tag, f)).join(', ')}`);
