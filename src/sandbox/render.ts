/**
 * Text for people: one line per event, and the summary `guard run` prints at exit.
 *
 * Everything the command chose (paths, argv, DNS names, addresses, notes) goes through
 * `printable()`: a path with a newline, a carriage return or an ANSI escape could otherwise print
 * a fake summary line ("events: 0 …") or clear the terminal over the real one.
 */
import type { RunEvent } from './events.js';
import type { RunResult, RunWalls } from './run.js';

/* eslint-disable no-control-regex */
/** C0 and C1 controls, DEL, the backslash itself, and Unicode's line separators and bidirectional overrides. */
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\\\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;
const NAMED: Record<string, string> = { '\n': '\\n', '\r': '\\r', '\t': '\\t', '\u001b': '\\e', '\\': '\\\\' };

/** `s` with every control character written as an escape, so it prints as exactly one line of inert text. */
export function printable(s: string): string {
  return s.replace(UNSAFE, (c) => NAMED[c] ?? (c.charCodeAt(0) < 0x100 ? `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}` : `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`));
}

/** JSON escapes C0 controls and quotes; DEL, C1 controls and bidirectional overrides are escaped here too. */
function argvText(argv: readonly string[]): string {
  return JSON.stringify(argv).replace(/[\u007f-\u009f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

function pathText(e: RunEvent): string {
  if (e.path === undefined) return '';
  let t = printable(e.path);
  if (e.resolvedPath !== undefined) t += ` → ${printable(e.resolvedPath)} (through a symbolic link)`;
  else if (e.pathAsWritten) t += ' (as written by the caller; symbolic links not followed)';
  return t;
}

export function renderEventLine(e: RunEvent): string {
  const parts = [`${e.action.toUpperCase()} ${printable(e.syscall)}`, `pid ${e.pid}`];
  if (e.egress) {
    const host = e.egress.family === 'inet6' ? `[${printable(e.egress.address)}]` : printable(e.egress.address);
    parts.push(`${printable(e.egress.protocol)} ${host}:${e.egress.port}`);
    if (e.egress.dnsName) parts.push(`dns ${e.egress.dnsType ? `${printable(e.egress.dnsType)} ` : ''}${printable(e.egress.dnsName)}`);
  } else if (typeof e.args.address === 'string') {
    parts.push(`${printable(String(e.args.family))} ${printable(e.args.address)}`);
  }
  if (e.argv) parts.push(`argv ${argvText(e.argv)}`);
  else if (e.path !== undefined) parts.push(pathText(e));
  if (e.errno) parts.push(`→ ${e.errno}`);
  if (e.reason) parts.push(`(${printable(e.reason)})`);
  if (e.count !== undefined && e.count > 1) parts.push(`×${e.count}`);
  return parts.join('  ');
}

const KIND_WORDS: Record<string, string> = { network: 'network', dns: 'DNS', exec: 'exec', write: 'write', 'denied-syscall': 'denied-call', syscall: 'call' };

function netNotes(w: RunWalls): string {
  const notes = [...(w.network === 'netns' && w.userNamespace ? ['in a user namespace'] : []), ...(w.dnsSink ? ['DNS sink'] : [])];
  return notes.length ? ` (${notes.join(', ')})` : '';
}

/** The walls line, and the `not here` line naming what could not be had and the flag that gives it. */
export function renderWallsLines(w: RunWalls): string[] {
  const lines = [`  walls: seccomp${w.notify ? '+notify' : ''}, network ${w.network}${netNotes(w)}, landlock ${w.landlock ? `ABI ${w.landlock}` : 'off'}, ${w.pids ?? 'no process bound'}`];
  if (w.unavailable?.length) lines.push(`  not here: ${w.unavailable.join('; ')}`);
  return lines;
}

export function renderRunText(r: RunResult): string {
  const s = r.summary;
  const lines: string[] = [];
  const how = r.signal ? `killed by ${r.signal} (exit ${r.exitCode})` : `exit ${r.exitCode}`;
  lines.push(`guard run: ${r.command.map(printable).join(' ')} — ${how} in ${r.durationMs} ms, profile ${printable(r.profile)}`);
  lines.push(...renderWallsLines(r.walls));
  if (r.walls.limits) lines.push(`  limits: ${r.walls.limits.text}`);
  if (r.limitsHit?.length) for (const h of r.limitsHit) lines.push(`  LIMIT REACHED: ${h}`);
  const kinds = Object.entries(s.byKind).filter(([, n]) => n > 0).map(([k, n]) => `${k} ${n}`);
  lines.push(`  events: ${s.events} (${s.denied} denied, ${s.allowed} allowed, ${s.killed} killed; ${s.distinct ?? s.events} distinct)${kinds.length ? ` — ${kinds.join(', ')}` : ''}`);
  if (s.unlisted) {
    const by = Object.entries(s.unlisted.byKind).map(([k, n]) => `${n} ${KIND_WORDS[k] ?? k}`).join(', ');
    lines.push(`  NOT LISTED: ${s.unlisted.distinct} distinct attempts (${s.unlisted.events} calls) beyond the ${s.unlisted.limitPerKind} kept per kind — ${by}. The command made more distinct attempts than any report lists; treat it as hostile.`);
  }
  if (s.egress.length) lines.push(`  egress attempts: ${s.egress.map(printable).join(', ')}`);
  if (s.dnsNames.length) lines.push(`  DNS names: ${s.dnsNames.map(printable).join(', ')}`);
  for (const x of s.blockedExecs) lines.push(`  blocked exec: ${x.path !== undefined ? printable(x.path) : '?'} ${x.argv ? argvText(x.argv) : ''}`);
  for (const w of s.blockedWrites) lines.push(`  blocked write: ${printable(w)}`);
  const through = r.events.filter((e) => e.resolvedPath !== undefined && e.path !== undefined);
  for (const e of through.slice(0, MAX_LINK_LINES)) lines.push(`  write through a symbolic link: ${printable(e.path!)} → ${printable(e.resolvedPath!)} (${e.action})`);
  if (through.length > MAX_LINK_LINES) lines.push(`  … and ${through.length - MAX_LINK_LINES} more writes through symbolic links (see the JSON report)`);
  if (s.deniedSyscalls.length) lines.push(`  denied syscalls: ${s.deniedSyscalls.map(printable).join(', ')}`);
  if (s.events === 0) lines.push('  nothing was attempted beyond what the profile allows silently');
  return `${lines.join('\n')}\n`;
}

/** Lines naming writes that went through a symbolic link; the JSON report has them all. */
const MAX_LINK_LINES = 50;
