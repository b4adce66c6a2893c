import type { FileReport, Finding, Report, Verdict } from './model.js';

const COLORS: Record<Verdict, string> = { safe: '32', suspicious: '33', invalid: '35', error: '35', malicious: '31' };

export interface TextOptions {
  color?: boolean;
  /** Show info-level findings too. */
  verbose?: boolean;
}

function paint(s: string, code: string, on: boolean): string {
  return on ? `\u001b[${code}m${s}\u001b[0m` : s;
}

function where(f: Finding): string {
  const l = f.location;
  if (!l) return '';
  const parts: string[] = [];
  if (l.member !== undefined) parts.push(l.member);
  if (l.offset !== undefined) parts.push(`@${l.offset}`);
  return parts.length ? ` [${parts.join(' ')}]` : '';
}

function renderFile(r: FileReport, o: TextOptions): string {
  const color = o.color ?? false;
  const head = `${paint(r.verdict.toUpperCase().padEnd(10), COLORS[r.verdict], color)} ${r.path} (${r.format})`;
  const lines = [r.verdict === 'safe' && r.basis ? `${head} — safe: ${r.basis}` : head];
  for (const f of r.findings) {
    if (f.severity === 'info' && !o.verbose && f.verdict === 'safe') continue;
    lines.push(`  ${f.severity.padEnd(8)} ${f.rule}${where(f)}: ${f.message}`);
    if (f.evidence) lines.push(`           ${f.evidence}`);
  }
  return lines.join('\n');
}

export function renderText(report: Report, options: TextOptions = {}): string {
  const out = report.files.map((f) => renderFile(f, options));
  if (report.repository) {
    const r = report.repository;
    out.push(`${paint(`REPOSITORY ${r.verdict.toUpperCase()}`, COLORS[r.verdict], options.color ?? false)} ${r.path}`);
    for (const f of r.findings) out.push(`  ${f.severity.padEnd(8)} ${f.rule}${where(f)}: ${f.message}${f.evidence ? `\n           ${f.evidence}` : ''}`);
  }
  const s = report.summary;
  const counts = (Object.keys(s.verdicts) as Verdict[]).filter((v) => s.verdicts[v] > 0).map((v) => `${s.verdicts[v]} ${v}`);
  out.push(`${s.files} file${s.files === 1 ? '' : 's'} scanned: ${counts.join(', ') || 'none'}; ${s.findings} finding${s.findings === 1 ? '' : 's'}; ${s.durationMs} ms`);
  if (report.walls) out.push(`walls: ${wallsLine(report.walls)}`);
  if (report.interrupted) out.push(`${paint('INTERRUPTED', COLORS.error, options.color ?? false)} the scan was stopped before it finished: only the files listed above were scanned`);
  return `${out.join('\n')}\n`;
}

export function wallsLine(w: NonNullable<Report['walls']>): string {
  const parts = [`mode=${w.mode}`, `isolate=${w.isolate ? 'yes' : 'no'}`];
  if (w.seccomp !== undefined) parts.push(`seccomp=${w.seccomp ?? 'none'}`);
  if (w.network !== undefined) parts.push(`network=${w.network ?? 'open'}`);
  if (w.landlock !== undefined) parts.push(`landlock=${w.landlock === null ? 'none' : `ABI ${w.landlock}`}`);
  if (w.rlimits) parts.push(`rlimits=${Object.entries(w.rlimits).map(([k, v]) => `${k}:${v}`).join(',')}`);
  if (w.reason) parts.push(`(${w.reason})`);
  if (w.events && w.events.length > 0) {
    const e = w.events[0]!;
    const what = e.argv ? `${e.syscall} ${e.argv.join(' ')}` : e.egress ? `${e.syscall} ${e.egress.address}:${e.egress.port}` : e.path ? `${e.syscall} ${e.path}` : e.syscall;
    parts.push(`stopped=${w.events.length} (${what} ${e.action}${e.errno ? ` ${e.errno}` : ''}${w.events.length > 1 ? ', …' : ''})`);
  }
  return parts.join(' ');
}
