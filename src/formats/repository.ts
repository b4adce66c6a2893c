import { existsSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import type { Finding, FileReport, Report, Verdict } from '../report/model.js';
import { VERDICTS, maxVerdict, verdictOf } from '../report/model.js';
import { isJsonObject, parseJsonStrict } from './json-strict.js';
import { autoMapEntries, JSON_CONFIG_MAX_BYTES } from './json-config.js';

/**
 * Folder-level checks for a Hugging Face-style model repository: custom code that
 * `trust_remote_code=True` would import (config.json / tokenizer_config.json `auto_map`), Git LFS
 * pointers left in place of weights, and one summary of every file's verdict.
 */

const CONFIGS = ['config.json', 'tokenizer_config.json'];

export function directoryChecks(root: string, files: readonly FileReport[]): Report['repository'] | undefined {
  if (files.length === 0) return undefined;
  const findings: Finding[] = [];
  const rel = (p: string) => relative(root, p) || p;

  // Custom code named by auto_map.
  const codeFiles = new Map<string, string[]>();
  const remote = new Set<string>();
  for (const cfg of CONFIGS) {
    const path = join(root, cfg);
    try {
      if (!existsSync(path) || statSync(path).size > JSON_CONFIG_MAX_BYTES) continue;
      const parsed = parseJsonStrict(readFileSync(path, 'utf8'));
      if (!isJsonObject(parsed.value)) continue;
      for (const e of autoMapEntries(parsed.value.auto_map)) {
        if (e.repo !== undefined) remote.add(e.repo);
        else codeFiles.set(e.file, [...(codeFiles.get(e.file) ?? []), `${cfg}:${e.autoClass}`]);
      }
    } catch {
      // Unreadable configs are reported by their own file scan.
    }
  }
  if (codeFiles.size > 0 || remote.size > 0) {
    const present = [...codeFiles.keys()].filter((f) => existsSync(join(root, f)));
    const missing = [...codeFiles.keys()].filter((f) => !existsSync(join(root, f)));
    findings.push({
      rule: 'repository/custom-code',
      severity: 'medium',
      verdict: 'suspicious',
      message:
        `transformers with trust_remote_code=True would import repository code: ${[...codeFiles.keys()].join(', ') || 'none local'}` +
        `${missing.length > 0 ? ` (missing here: ${missing.join(', ')})` : ''}${remote.size > 0 ? `; code from other repositories: ${[...remote].join(', ')}` : ''}. ` +
        'Read those files before loading with trust_remote_code, or load without it.',
      evidence: [...codeFiles.entries()].map(([f, who]) => `${f} ← ${who.join(', ')}`).join('; ').slice(0, 300) || [...remote].join(', '),
    });
    if (present.length === 0 && remote.size === 0) {
      // Nothing local to read: the code would be fetched at load time.
    }
  }
  const pyFiles = files.filter((f) => f.path.endsWith('.py')).map((f) => rel(f.path));
  if (pyFiles.length > 0 && codeFiles.size === 0) {
    findings.push({ rule: 'repository/python-files', severity: 'info', verdict: 'safe', message: `repository ships Python files that no auto_map references: ${pyFiles.slice(0, 20).join(', ')}`, evidence: pyFiles.slice(0, 20).join(', ') });
  }

  // Git LFS pointers left unresolved.
  const pointers = files.filter((f) => f.format === 'git-lfs-pointer').map((f) => rel(f.path));
  if (pointers.length > 0) {
    findings.push({
      rule: 'repository/lfs-unresolved',
      severity: 'high',
      verdict: 'error',
      message: `${pointers.length} file(s) are Git LFS pointers: weights not downloaded, so they were not scanned (${pointers.slice(0, 10).join(', ')}${pointers.length > 10 ? ', …' : ''}). Run \`git lfs pull\` and scan again.`,
      evidence: pointers.slice(0, 20).join(', '),
    });
  }

  // Summary: one verdict per file, rolled up.
  const counts: Record<Verdict, number> = { safe: 0, suspicious: 0, invalid: 0, error: 0, malicious: 0 };
  let worst: Verdict = 'safe';
  for (const f of files) {
    counts[f.verdict]++;
    worst = maxVerdict(worst, f.verdict);
  }
  const formats = new Map<string, number>();
  for (const f of files) formats.set(f.format, (formats.get(f.format) ?? 0) + 1);
  const flagged = files.filter((f) => f.verdict !== 'safe').map((f) => `${rel(f.path)}: ${f.verdict}`);
  findings.push({
    rule: 'repository/summary',
    severity: 'info',
    verdict: 'safe',
    message:
      `${files.length} files: ${VERDICTS.filter((v) => counts[v] > 0).map((v) => `${counts[v]} ${v}`).join(', ')}; formats: ${[...formats.entries()].map(([k, n]) => `${k} ${n}`).join(', ')}` +
      `${flagged.length > 0 ? `; flagged: ${flagged.slice(0, 10).join('; ')}${flagged.length > 10 ? '; …' : ''}` : ''}`,
  });
  return { path: root, verdict: maxVerdict(worst, verdictOf(findings)), findings };
}
