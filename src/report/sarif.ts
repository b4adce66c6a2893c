import { pathToFileURL } from 'node:url';
import { isAbsolute, relative, resolve } from 'node:path';
import type { Finding, Report, Severity } from './model.js';

/** SARIF 2.1.0: one run, one result per finding, rules collected from the findings. */

const LEVEL: Record<Severity, 'none' | 'note' | 'warning' | 'error'> = {
  info: 'note',
  low: 'note',
  medium: 'warning',
  high: 'error',
  critical: 'error',
};

const SECURITY_SEVERITY: Record<Severity, string> = { info: '0.0', low: '3.0', medium: '5.5', high: '8.0', critical: '9.5' };

interface SarifOptions {
  /** Base folder for relative artifact URIs (default: cwd). */
  baseDir?: string;
}

function artifactUri(path: string, base: string): { uri: string; uriBaseId?: string } {
  const abs = resolve(path);
  const rel = relative(base, abs);
  if (!rel.startsWith('..') && !isAbsolute(rel)) return { uri: rel.split('\\').join('/').split('/').map(encodeURIComponent).join('/'), uriBaseId: '%SRCROOT%' };
  return { uri: pathToFileURL(abs).href };
}

export function renderSarif(report: Report, options: SarifOptions = {}): string {
  const base = resolve(options.baseDir ?? process.cwd());
  const ruleIndex = new Map<string, number>();
  const rules: Array<Record<string, unknown>> = [];
  const results: Array<Record<string, unknown>> = [];
  const addResult = (path: string, f: Finding, verdict: string, format: string) => {
    let idx = ruleIndex.get(f.rule);
    if (idx === undefined) {
      idx = rules.length;
      ruleIndex.set(f.rule, idx);
      rules.push({
        id: f.rule,
        name: f.rule.replace(/[^A-Za-z0-9]+(.)?/g, (_m, c: string | undefined) => (c ? c.toUpperCase() : '')),
        shortDescription: { text: f.rule },
        fullDescription: { text: f.message },
        defaultConfiguration: { level: LEVEL[f.severity] },
        properties: { tags: ['security', 'model-file'], 'security-severity': SECURITY_SEVERITY[f.severity] },
      });
    }
    const physical: Record<string, unknown> = { artifactLocation: artifactUri(path, base) };
    if (f.location?.offset !== undefined && !f.location.member) {
      physical.region = { byteOffset: f.location.offset, byteLength: 1 };
    }
    const location: Record<string, unknown> = { physicalLocation: physical };
    if (f.location?.member) {
      location.logicalLocations = [{ name: f.location.member, kind: 'member', fullyQualifiedName: `${path}!${f.location.member}` }];
      if (f.location.offset !== undefined) location.message = { text: `member ${f.location.member}, byte offset ${f.location.offset}` };
    }
    const text = f.evidence ? `${f.message} (${f.evidence})` : f.message;
    results.push({
      ruleId: f.rule,
      ruleIndex: idx,
      level: LEVEL[f.severity],
      message: { text },
      locations: [location],
      properties: { verdict: f.verdict, fileVerdict: verdict, format, severity: f.severity },
    });
  };
  for (const file of report.files) for (const f of file.findings) addResult(file.path, f, file.verdict, file.format);
  if (report.repository) for (const f of report.repository.findings) addResult(report.repository.path, f, report.repository.verdict, 'repository');
  const sarif = {
    $schema: 'https://json.schemastore.org/sarif-2.1.0.json',
    version: '2.1.0',
    runs: [
      {
        tool: { driver: { name: 'modelguard', version: report.tool.version, semanticVersion: report.tool.version, informationUri: 'https://github.com/modelguard/modelguard', rules } },
        originalUriBaseIds: { '%SRCROOT%': { uri: pathToFileURL(`${base}/`).href } },
        results,
        invocations: [
          report.interrupted
            ? {
                executionSuccessful: false,
                toolExecutionNotifications: [{ level: 'error', message: { text: 'the scan was interrupted before it finished: only the files with results were scanned' } }],
              }
            : { executionSuccessful: report.summary.verdicts.error === 0 },
        ],
        properties: report.interrupted ? { summary: report.summary, interrupted: true } : { summary: report.summary },
      },
    ],
  };
  return `${JSON.stringify(sarif, null, 2)}\n`;
}
