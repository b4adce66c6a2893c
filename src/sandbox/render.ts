/** Text for people: one line per event, and the summary `guard run` prints at exit. */
import type { RunEvent } from './events.js';
import type { RunResult } from './run.js';

export function renderEventLine(e: RunEvent): string {
  const parts = [`${e.action.toUpperCase()} ${e.syscall}`, `pid ${e.pid}`];
  if (e.egress) {
    const host = e.egress.family === 'inet6' ? `[${e.egress.address}]` : e.egress.address;
    parts.push(`${e.egress.protocol} ${host}:${e.egress.port}`);
    if (e.egress.dnsName) parts.push(`dns ${e.egress.dnsType ?? ''} ${e.egress.dnsName}`.replace('  ', ' '));
  } else if (typeof e.args.address === 'string') {
    parts.push(`${String(e.args.family)} ${e.args.address}`);
  }
  if (e.argv) parts.push(`argv ${JSON.stringify(e.argv)}`);
  else if (e.path !== undefined) parts.push(e.path);
  if (e.errno) parts.push(`→ ${e.errno}`);
  if (e.reason) parts.push(`(${e.reason})`);
  return parts.join('  ');
}

export function renderRunText(r: RunResult): string {
  const s = r.summary;
  const lines: string[] = [];
  const how = r.signal ? `killed by ${r.signal} (exit ${r.exitCode})` : `exit ${r.exitCode}`;
  lines.push(`guard run: ${r.command.join(' ')} — ${how} in ${r.durationMs} ms, profile ${r.profile}`);
  lines.push(`  walls: seccomp${r.walls.notify ? '+notify' : ''}, network ${r.walls.network}${r.walls.dnsSink ? ' (DNS sink)' : ''}, landlock ${r.walls.landlock ? `ABI ${r.walls.landlock}` : 'off'}, ${r.walls.pids ?? 'no process bound'}`);
  const kinds = Object.entries(s.byKind).filter(([, n]) => n > 0).map(([k, n]) => `${k} ${n}`);
  lines.push(`  events: ${s.events} (${s.denied} denied, ${s.allowed} allowed, ${s.killed} killed)${kinds.length ? ` — ${kinds.join(', ')}` : ''}`);
  if (s.egress.length) lines.push(`  egress attempts: ${s.egress.join(', ')}`);
  if (s.dnsNames.length) lines.push(`  DNS names: ${s.dnsNames.join(', ')}`);
  for (const x of s.blockedExecs) lines.push(`  blocked exec: ${x.path ?? '?'} ${x.argv ? JSON.stringify(x.argv) : ''}`);
  for (const w of s.blockedWrites) lines.push(`  blocked write: ${w}`);
  if (s.deniedSyscalls.length) lines.push(`  denied syscalls: ${s.deniedSyscalls.join(', ')}`);
  if (s.events === 0) lines.push('  nothing was attempted beyond what the profile allows silently');
  return `${lines.join('\n')}\n`;
}
