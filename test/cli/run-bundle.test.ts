import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeChecked } from '../../src/cache.js';
import { currentRunBundle, loadRunBundle } from '../../src/cli/run-bundle.js';
import { GuardError } from '../../src/errors.js';
import { CLI, skipReason } from '../sandbox/helpers.js';
import { ROOT, withTempDir } from '../helpers/fixtures.js';

const BIN = join(ROOT, 'bin', 'guard');
const DIST = join(ROOT, 'dist');
const CACHE_NAME = `run-${process.version}-${process.arch}.cache`;

const withDir = (fn: (dir: string) => void): void => withTempDir('bundle', fn);

test('the build made a current run bundle', () => {
  const bundle = currentRunBundle(DIST);
  assert.ok(bundle, 'npm run build writes dist/bundle/run.cjs after tsc');
  assert.ok(bundle!.endsWith(join('dist', 'bundle', 'run.cjs')));
});

test('bin/guard works through a symbolic link, as npm installs it', () =>
  withDir((dir) => {
    const link = join(dir, 'guard');
    symlinkSync(BIN, link);
    const r = spawnSync(link, ['--version'], { encoding: 'utf8' });
    assert.is(r.status, 0, r.stderr);
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
    assert.is(r.stdout.trim(), pkg.version);
  }),
);

test('the bundle loads with a V8 code cache: written by the first load, reused after', () =>
  withDir((dir) => {
    const bundle = currentRunBundle(DIST)!;
    const cachePath = join(dir, 'v8', CACHE_NAME);
    const first = loadRunBundle(bundle, dir);
    assert.type(first.module.main, 'function');
    assert.not.ok(existsSync(cachePath));
    first.afterwards();
    assert.ok(existsSync(cachePath), 'the first load leaves a code cache');
    const written = statSync(cachePath).mtimeMs;
    loadRunBundle(bundle, dir).afterwards();
    assert.is(statSync(cachePath).mtimeMs, written, 'a cache V8 accepted is not rewritten');
  }),
);

test('errors from the bundled copy are GuardErrors to the rest of modelguard', () =>
  withDir((dir) => {
    const { module } = loadRunBundle(currentRunBundle(DIST)!, dir);
    const parse = (module as unknown as { parseRunArgs: (a: string[]) => unknown }).parseRunArgs;
    try {
      parse(['--no-such-option']);
      assert.unreachable('parseRunArgs accepted an unknown option');
    } catch (e) {
      assert.instance(e, GuardError);
      assert.is((e as GuardError).code, 'USAGE');
    }
    assert.not.instance(new Error('plain'), GuardError);
  }),
);

const skip = skipReason();
if (skip) {
  console.log(`skip: ${skip}`);
} else {
  test('`guard run` goes through the bundle: a run leaves the code cache in MODELGUARD_CACHE_DIR', () =>
    withDir((dir) => {
      const env = { ...process.env, MODELGUARD_CACHE_DIR: dir };
      const r = spawnSync(process.execPath, [CLI, 'run', '--', '/bin/true'], { encoding: 'utf8', env });
      assert.is(r.status, 0, r.stderr);
      assert.ok(existsSync(join(dir, 'v8', CACHE_NAME)), 'cli/main.js loaded dist/bundle/run.cjs');
      assert.ok(readdirSync(join(dir, 'bpf')).some((f) => f.endsWith('.bpf')), 'and the compiled filter was cached');
      const r2 = spawnSync(process.execPath, [CLI, 'run', '--', '/bin/sh', '-c', 'exit 7'], { encoding: 'utf8', env });
      assert.is(r2.status, 7, 'the exit code is the command’s');
    }),
  );

  test('bin/guard starts `guard run` from the bundled launcher: exit codes, usage errors, the code cache', () =>
    withDir((dir) => {
      const env = { ...process.env, MODELGUARD_CACHE_DIR: dir };
      const r = spawnSync(BIN, ['run', '--', '/bin/sh', '-c', 'echo out; echo err >&2; exit 9'], { encoding: 'utf8', env });
      assert.is(r.status, 9, r.stderr);
      assert.is(r.stdout, 'out\n');
      assert.match(r.stderr, /^err\n/);
      assert.match(r.stderr, /guard run: \/bin\/sh -c .* exit 9/);
      assert.ok(existsSync(join(dir, 'v8', CACHE_NAME)), 'the launcher loaded the bundle and cached its code');
      const bad = spawnSync(BIN, ['run', '--no-such-option', '--', '/bin/true'], { encoding: 'utf8', env });
      assert.is(bad.status, 2);
      assert.match(bad.stderr, /guard run: unknown option `--no-such-option`/);
      const killed = spawnSync(BIN, ['run', '--', '/bin/sh', '-c', 'kill -TERM $$'], { encoding: 'utf8', env });
      assert.is(killed.status, 128 + 15, 'killed by a signal: 128 + its number');
    }),
  );

  test('a code cache V8 rejects (intact file, foreign content) is rebuilt by the next run', () =>
    withDir((dir) => {
      const cachePath = join(dir, 'v8', CACHE_NAME);
      writeChecked(cachePath, Buffer.from('MGV8CC1\0', 'latin1'), Buffer.alloc(4096, 7));
      const r = spawnSync(process.execPath, [CLI, 'run', '--', '/bin/true'], { encoding: 'utf8', env: { ...process.env, MODELGUARD_CACHE_DIR: dir } });
      assert.is(r.status, 0, r.stderr);
      assert.ok(readFileSync(cachePath).length > 10_000, 'the rejected cache was replaced by a real one');
    }),
  );

  test('a bundle older than tsc\'s output is not used: `guard run` falls back to the modules', () =>
    withDir((dir) => {
      const bundle = currentRunBundle(DIST)!;
      const st = statSync(bundle);
      const old = new Date(statSync(join(ROOT, 'dist', 'src', 'cli', 'run.js')).mtimeMs - 3_600_000);
      utimesSync(bundle, old, old);
      try {
        assert.is(currentRunBundle(DIST), undefined);
        const r = spawnSync(process.execPath, [CLI, 'run', '--', '/bin/sh', '-c', 'exit 5'], { encoding: 'utf8', env: { ...process.env, MODELGUARD_CACHE_DIR: dir } });
        assert.is(r.status, 5, r.stderr);
        assert.not.ok(existsSync(join(dir, 'v8', CACHE_NAME)), 'the stale bundle was not loaded');
        const viaBin = spawnSync(BIN, ['run', '--', '/bin/sh', '-c', 'exit 6'], { encoding: 'utf8', env: { ...process.env, MODELGUARD_CACHE_DIR: dir } });
        assert.is(viaBin.status, 6, `the launcher hands over to main.js: ${viaBin.stderr}`);
        assert.not.ok(existsSync(join(dir, 'v8', CACHE_NAME)));
      } finally {
        utimesSync(bundle, st.atime, st.mtime);
      }
      assert.is(currentRunBundle(DIST), bundle);
    }),
  );

  test('bin/guard keeps NODE_EXTRA_CA_CERTS from its own Node and hands it unchanged to a command that asks for it (--env)', () =>
    withDir((dir) => {
      const show = ['/bin/sh', '-c', 'printf "%s|%s" "${NODE_EXTRA_CA_CERTS-unset}" "${MODELGUARD_NODE_EXTRA_CA_CERTS-unset}"'];
      const certs = join(dir, 'extra certs.pem');
      writeFileSync(certs, '');
      const set = spawnSync(BIN, ['run', '--env', 'NODE_EXTRA_CA_CERTS', '--', ...show], { encoding: 'utf8', env: { ...process.env, NODE_EXTRA_CA_CERTS: certs } });
      assert.is(set.status, 0, set.stderr);
      assert.is(set.stdout, `${certs}|unset`);
      const env = { ...process.env };
      delete env.NODE_EXTRA_CA_CERTS;
      const unset = spawnSync(BIN, ['run', '--env', 'NODE_EXTRA_CA_CERTS', '--', ...show], { encoding: 'utf8', env });
      assert.is(unset.status, 0, unset.stderr);
      assert.is(unset.stdout, 'unset|unset');
    }),
  );
}

test.run();
