import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { CLI, SCAN_FIXTURES, scanCases } from './helpers/fixtures.js';

// Acceptance bound from the issue: each hostile input gets a verdict within 2 s and 200 MB RSS,
// measured on a fresh `guard scan` process (so the whole CLI start-up is included).
const MAX_MS = 2000;
const MAX_RSS_KB = 200 * 1024;

const probe = `
const t = Date.now();
process.argv = [process.argv[0], ${JSON.stringify(CLI)}, 'scan', '--format', 'json', process.argv[1]];
const w = process.stdout.write.bind(process.stdout);
let out = '';
process.stdout.write = (s) => { out += s; return true; };
await import(${JSON.stringify(CLI)});
await new Promise((r) => setTimeout(r, 0));
process.on('exit', () => { w(JSON.stringify({ ms: Date.now() - t, rss: process.resourceUsage().maxRSS, verdict: JSON.parse(out).files[0].verdict }) + '\\n'); });
`;

for (const c of scanCases().filter((x) => x.file.startsWith('hostile/'))) {
  test(`${c.file}: verdict ${c.verdict} within ${MAX_MS} ms and ${MAX_RSS_KB / 1024} MB`, () => {
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', probe, join(SCAN_FIXTURES, c.file)], { encoding: 'utf8' });
    const line = r.stdout.trim().split('\n').pop() ?? '';
    let m: { ms: number; rss: number; verdict: string };
    try {
      m = JSON.parse(line) as typeof m;
    } catch {
      throw new Error(`no result: ${r.stdout} ${r.stderr}`);
    }
    assert.is(m.verdict, c.verdict);
    assert.ok(m.ms < MAX_MS, `${c.file} took ${m.ms} ms`);
    assert.ok(m.rss < MAX_RSS_KB, `${c.file} peaked at ${Math.round(m.rss / 1024)} MB`);
  });
}

test.run();
