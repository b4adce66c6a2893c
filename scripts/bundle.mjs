#!/usr/bin/env node
// Bundles the `guard run` path (cli/run → sandbox/* → execa) into one CommonJS file,
// dist/bundle/run.cjs, and cli/run-launch (what bin/guard starts for `guard run`: it loads that
// bundle with its code cache) into dist/bundle/guard-run.cjs.
//
// Why: `guard run` is a wrapper around somebody else's process, so its own start-up is pure
// overhead on every run. Unbundled, Node 20's ESM loader resolves and links ~150 modules of execa
// and its dependencies one by one (~80 ms here); as one file the same code loads in ~25 ms, and
// ~12 ms of that is compiling it, which cli/run-bundle.ts saves with a V8 code cache (which is why
// the bundle is CommonJS: vm.Script takes and produces code caches, Node 20's ESM loader does not).
// Only this path is bundled: the scanner locates worker scripts, Python sources and WebAssembly
// next to its own modules, and its start-up is small next to a scan.
//
// Input is tsc's output (dist/src), so the bundle is exactly the code the tests exercise.
// cli/main.js uses the bundle only when it is newer than tsc's output (see cli/run-bundle.ts).
import { build } from 'esbuild';
import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const outdir = join(root, 'dist', 'bundle');
mkdirSync(outdir, { recursive: true });

const common = {
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'cjs',
  // The sources are ES modules: strict, and locating files from import.meta.url.
  define: { 'import.meta.url': '__mgImportMetaUrl' },
  banner: { js: "'use strict';\nvar __mgImportMetaUrl = require('node:url').pathToFileURL(__filename).href;" },
  legalComments: 'inline',
  logLevel: 'warning',
};

await build({ ...common, entryPoints: [join(root, 'dist', 'src', 'cli', 'run.js')], outfile: join(outdir, 'run.cjs') });
// The launcher's fallback imports cli/main.js, an ES module: import() must stay import(), not
// become require().
await build({ ...common, entryPoints: [join(root, 'dist', 'src', 'cli', 'run-launch.js')], outfile: join(outdir, 'guard-run.cjs'), supported: { 'dynamic-import': true } });
