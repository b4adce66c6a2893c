#!/usr/bin/env node
// modelguard's install script. The addon is Node-API, so the binary that `npm pack` built
// (scripts/prebuild.mjs) serves every Node line: where it works, nothing is compiled. Elsewhere
// (another platform, an older glibc, MODELGUARD_BUILD_FROM_SOURCE=1, or a git checkout, which has
// no prebuilds/) the addon and guard-exec are built from source with node-gyp.
//
// A failed build does not fail the install: the scanner and safeLoad work without the kernel
// layer (walls `auto`), and the first use that needs it (guard run, walls `on`) says what is
// missing and how to fix it (src/sandbox/native.ts).
import { checkNative, nodeGypRebuild, platformTag, prebuiltDir, sourceBuildDir } from './native-files.mjs';

const forced = process.env.MODELGUARD_BUILD_FROM_SOURCE === '1';
const prebuiltProblem = forced ? 'MODELGUARD_BUILD_FROM_SOURCE=1' : checkNative(prebuiltDir());
if (!prebuiltProblem) process.exit(0);

if (!forced) console.error(`modelguard: no usable prebuilt binary for ${platformTag()} (${prebuiltProblem}); building from source`);
const r = nodeGypRebuild();
const builtProblem = r.error ? `node-gyp did not start: ${r.error.message}` : r.status !== 0 ? `node-gyp exited ${r.status ?? r.signal}` : checkNative(sourceBuildDir());
if (builtProblem) {
  console.error(
    `modelguard: the kernel sandbox (guard run, walls) could not be built: ${builtProblem}.\n` +
      '  Scanning and safeLoad still work without it. To build it: install python3, make and a C++ compiler\n' +
      '  (Debian/Ubuntu: apt-get install python3 make g++), then run `npm rebuild modelguard`.',
  );
}
process.exit(0);
