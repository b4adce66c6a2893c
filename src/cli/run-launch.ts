/**
 * `guard run` as bin/guard starts it. scripts/bundle.mjs turns this file into
 * dist/bundle/guard-run.cjs, a CommonJS script: Node starts a CommonJS entry without setting up its
 * ES module loader, ~7 ms less on every run. It runs the run bundle beside it; when that is missing
 * or stale it hands over to cli/main.js, which does the same the slower way.
 */
import { basename, dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { finish, quietOnClosedStdout, restoreSetAsideEnv } from './finish.js';
import { currentRunBundle, runFromBundle } from './run-bundle.js';

const here = dirname(fileURLToPath(import.meta.url));
/** dist: the bundle's parent once bundled (dist/bundle), two up from dist/src/cli otherwise. */
const dist = basename(here) === 'bundle' ? dirname(here) : join(here, '..', '..');

restoreSetAsideEnv();
quietOnClosedStdout();
const bundle = currentRunBundle(dist);
// process.argv: node, this file, 'run', then run's own arguments.
if (bundle && process.argv[2] === 'run') finish(runFromBundle(bundle, process.argv.slice(3)));
else void import(pathToFileURL(join(dist, 'src', 'cli', 'main.js')).href);
