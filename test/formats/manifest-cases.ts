import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { scan } from '../../src/scan.js';
import type { FileReport } from '../../src/report/model.js';
import { cpuMsOfAsync } from '../helpers/budget.js';

/** Where gen_formats.py writes the part-2 fixtures. */
export const FIXTURES = fileURLToPath(new URL('../../../test/fixtures/formats/', import.meta.url));

export interface Case {
  file: string;
  verdict: string;
  rule?: string;
  absent?: string[];
  why?: string;
}

export function cases(prefix: string): Case[] {
  const manifest = JSON.parse(readFileSync(join(FIXTURES, 'manifest.json'), 'utf8')) as { cases: Case[] };
  return manifest.cases.filter((c) => c.file.startsWith(prefix));
}

export const fixture = (file: string) => join(FIXTURES, file);

/** Scans one fixture and checks the bounds every hostile input must respect: 2 s of this process's CPU, 200 MB. */
export async function scanFixture(file: string): Promise<FileReport> {
  const rss = process.memoryUsage().rss;
  let report!: Awaited<ReturnType<typeof scan>>;
  const ms = await cpuMsOfAsync(async () => {
    report = await scan(fixture(file));
  });
  const grown = process.memoryUsage().rss - rss;
  assert.ok(ms < 2000, `${file}: scan took ${ms} ms of CPU`);
  assert.ok(grown < 200 * 1024 * 1024, `${file}: RSS grew by ${Math.round(grown / 1048576)} MB`);
  assert.is(report.files.length, 1, `${file}: one file report`);
  return report.files[0] as FileReport;
}

/** One named test per manifest case under `prefix`: exact verdict, the rule that must fire, the rules that must not. */
export function manifestTests(prefix: string, format?: string, exclude?: RegExp): void {
  for (const c of cases(prefix)) {
    if (exclude?.test(c.file)) continue;
    const what = c.rule ? `${c.verdict} by ${c.rule}` : c.verdict;
    test(`${c.file} is ${what}${c.why ? ` (${c.why})` : ''}`, async () => {
      const f = await scanFixture(c.file);
      const rules = f.findings.map((x) => `${x.rule}:${x.verdict}`).join(', ');
      assert.is(f.verdict, c.verdict, `${c.file}: verdict ${f.verdict}, findings: ${rules}`);
      if (format) assert.ok(f.format.startsWith(format) || f.format === 'json-config' || f.format === 'git-lfs-pointer', `${c.file}: format ${f.format}`);
      if (c.rule) assert.ok(f.findings.some((x) => x.rule === c.rule), `${c.file}: expected rule ${c.rule}, got ${rules}`);
      for (const r of c.absent ?? []) assert.not.ok(f.findings.some((x) => x.rule === r), `${c.file}: rule ${r} must not fire`);
    });
  }
}
