import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Repository root (tests run from dist/test/…, fixtures stay in test/fixtures). */
export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const FIXTURES = join(ROOT, 'test', 'fixtures');
export const SCAN_FIXTURES = join(FIXTURES, 'scan');
export const CLI = join(ROOT, 'dist', 'src', 'cli', 'main.js');

/** Runs `fn` with a fresh temporary folder, removed afterwards. */
export function withTempDir(tag: string, fn: (dir: string) => void): void {
  const dir = mkdtempSync(join(tmpdir(), `mg-${tag}-`));
  try {
    fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export interface ScanCase {
  file: string;
  verdict: string;
  why: string;
  rule?: string;
}

export function scanCases(): ScanCase[] {
  return (JSON.parse(readFileSync(join(SCAN_FIXTURES, 'manifest.json'), 'utf8')) as { cases: ScanCase[] }).cases;
}
