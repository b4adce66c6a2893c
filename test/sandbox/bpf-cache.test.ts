import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { copyFileSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { compileFilterCached, filterCachePath } from '../../src/sandbox/bpf-cache.js';
import { compilePolicy } from '../../src/sandbox/filter.js';
import { loadNative, type NativeAddon, type NativeFilterSpec } from '../../src/sandbox/native.js';
import { loadProfile } from '../../src/sandbox/profile.js';
import { withTempDir } from '../helpers/fixtures.js';

let native: NativeAddon | undefined;
try {
  native = loadNative();
} catch (e) {
  console.log(`skipping the BPF cache tests: ${(e as Error).message}`);
}
const t = native ? test : test.skip;

const withDir = (fn: (dir: string) => void): void => withTempDir('bpf', fn);

/** The inference profile's spec, as run() compiles it. */
function inferenceSpec(n: NativeAddon): NativeFilterSpec {
  return compilePolicy(n, loadProfile('inference'), { reportNetwork: true, reportExec: true, reportWrites: true }).specs[0]!;
}

/** Counts libseccomp compilations behind compileFilterCached. */
function counting(n: NativeAddon): { addon: NativeAddon; calls: () => number } {
  let calls = 0;
  const addon = Object.create(n) as NativeAddon;
  addon.compileFilter = (spec) => {
    calls++;
    return n.compileFilter(spec);
  };
  return { addon, calls: () => calls };
}

t('a cached program is the one libseccomp builds, and a hit does not compile', () =>
  withDir((dir) => {
    const n = native!;
    const spec = inferenceSpec(n);
    const fresh = n.compileFilter(spec);
    const c = counting(n);
    const first = compileFilterCached(c.addon, spec, dir);
    assert.equal(c.calls(), 1);
    const second = compileFilterCached(c.addon, spec, dir);
    assert.equal(c.calls(), 1, 'the second call reads the cache');
    assert.ok(first.equals(fresh));
    assert.ok(second.equals(fresh), 'the cached program is byte for byte what libseccomp built');
  }),
);

t('another spec has another key', () => {
  const n = native!;
  const spec = inferenceSpec(n);
  const other: NativeFilterSpec = { ...spec, rules: spec.rules.slice(1) };
  const path = filterCachePath(n, spec, '/x');
  assert.ok(path.startsWith('/x/bpf/') && path.endsWith('.bpf'));
  assert.is.not(filterCachePath(n, other, '/x'), path);
  assert.is.not(filterCachePath(n, { ...spec, defaultAction: { action: 'allow' } }, '/x'), path);
});

t('a corrupt, truncated or misshapen cache file is compiled afresh and replaced', () =>
  withDir((dir) => {
    const n = native!;
    const spec = inferenceSpec(n);
    const good = n.compileFilter(spec);
    const path = filterCachePath(n, spec, dir);
    compileFilterCached(n, spec, dir);
    const intact = readFileSync(path);
    const damaged: Buffer[] = [
      Buffer.concat([intact.subarray(0, intact.length - 8), Buffer.alloc(8, 0xff)]), // payload changed, checksum stale
      intact.subarray(0, 20), // truncated inside the header
      Buffer.from('not a cache file at all'),
    ];
    for (const bad of damaged) {
      writeFileSync(path, bad);
      const c = counting(n);
      const out = compileFilterCached(c.addon, spec, dir);
      assert.equal(c.calls(), 1, 'a damaged file is not trusted');
      assert.ok(out.equals(good));
      assert.ok(readFileSync(path).equals(intact), 'and it is rewritten intact');
    }
  }),
);

t('a file made for another key under this key\'s name (a CRC-32 collision) is not used', () =>
  withDir((dir) => {
    const n = native!;
    const spec = inferenceSpec(n);
    const other: NativeFilterSpec = { ...spec, rules: spec.rules.slice(1) };
    compileFilterCached(n, other, dir);
    const path = filterCachePath(n, spec, dir);
    copyFileSync(filterCachePath(n, other, dir), path);
    const c = counting(n);
    const out = compileFilterCached(c.addon, spec, dir);
    assert.equal(c.calls(), 1, 'an intact file with a foreign key is compiled afresh');
    assert.ok(out.equals(n.compileFilter(spec)));
    assert.not.ok(out.equals(n.compileFilter(other)));
  }),
);

t('an unwritable cache folder only costs the compile', () => {
  const n = native!;
  const spec = inferenceSpec(n);
  const c = counting(n);
  const out = compileFilterCached(c.addon, spec, '/proc/modelguard-no-such-cache');
  assert.ok(out.equals(n.compileFilter(spec)));
  assert.equal(c.calls(), 1);
});

t('run() compiles through the cache: the inference profile is cached after a run', () =>
  withDir((dir) => {
    const n = native!;
    const spec = inferenceSpec(n);
    compileFilterCached(n, spec, dir);
    const path = filterCachePath(n, spec, dir);
    const before = statSync(path).mtimeMs;
    compileFilterCached(n, spec, dir);
    assert.is(statSync(path).mtimeMs, before, 'a hit leaves the file alone');
  }),
);

test.run();
