#!/usr/bin/env node
/**
 * `npm run corpus -- DIR`: scores `guard scan` against a folder of labelled files
 * (`manifest.json`: `{ cases: [{ file, label }] }`, labels malicious | benign | invalid | unscannable).
 *
 * A miss: a malicious file judged safe, an invalid or unscannable file judged safe.
 * A false alarm: a benign file judged anything but safe.
 * Exit 1 on any miss or false alarm, or when fewer than 95 % of malicious files are `malicious`.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { scan } from '../scan.js';
import type { Verdict } from '../report/model.js';

interface Case {
  file: string;
  label: 'malicious' | 'benign' | 'invalid' | 'unscannable';
  why?: string;
}

export const MALICIOUS_RATIO_GOAL = 0.95;

async function main(argv: string[]): Promise<number> {
  const dir = argv.find((a) => !a.startsWith('-'));
  const fast = argv.includes('--fast');
  if (!dir) {
    process.stderr.write('usage: npm run corpus -- DIR [--fast]\n');
    return 2;
  }
  const manifest = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as { cases: Case[] };
  const misses: string[] = [];
  const falseAlarms: string[] = [];
  const weak: string[] = [];
  const counts: Record<string, Record<Verdict, number>> = {};
  for (const c of manifest.cases) {
    const report = await scan(join(dir, c.file), { fast });
    const file = report.files[0];
    const v: Verdict = file?.verdict ?? 'error';
    counts[c.label] ??= { safe: 0, suspicious: 0, invalid: 0, error: 0, malicious: 0 };
    (counts[c.label] as Record<Verdict, number>)[v]++;
    const line = `${c.file}: ${c.label} → ${v}${c.why ? ` (${c.why})` : ''}`;
    if (c.label === 'benign' && v !== 'safe') falseAlarms.push(line);
    else if (c.label !== 'benign' && v === 'safe') misses.push(line);
    else if (c.label === 'malicious' && v !== 'malicious') weak.push(line);
  }
  const mal = counts.malicious ? Object.values(counts.malicious).reduce((a, b) => a + b, 0) : 0;
  const malHit = counts.malicious?.malicious ?? 0;
  const ratio = mal ? malHit / mal : 1;
  for (const [label, vs] of Object.entries(counts)) {
    const parts = Object.entries(vs).filter(([, n]) => n > 0).map(([k, n]) => `${n} ${k}`);
    process.stdout.write(`${label.padEnd(12)} ${parts.join(', ')}\n`);
  }
  if (weak.length) process.stdout.write(`\nmalicious files judged below malicious:\n${weak.map((l) => `  ${l}`).join('\n')}\n`);
  if (misses.length) process.stdout.write(`\nMISSES:\n${misses.map((l) => `  ${l}`).join('\n')}\n`);
  if (falseAlarms.length) process.stdout.write(`\nFALSE ALARMS:\n${falseAlarms.map((l) => `  ${l}`).join('\n')}\n`);
  process.stdout.write(
    `\n${manifest.cases.length} files: ${misses.length} misses, ${falseAlarms.length} false alarms, malicious recognised as malicious ${malHit}/${mal} (${(ratio * 100).toFixed(1)} %, goal ≥ ${MALICIOUS_RATIO_GOAL * 100} %)\n`,
  );
  return misses.length || falseAlarms.length || ratio < MALICIOUS_RATIO_GOAL ? 1 : 0;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    process.stderr.write(`corpus: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exitCode = 2;
  },
);
