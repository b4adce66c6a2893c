import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { decodeDnsQuery, EventLog, preview, summarize, toRunEvent, type RunEvent } from '../../src/sandbox/events.js';
import { printable, renderRunText } from '../../src/sandbox/render.js';
import type { RunResult } from '../../src/sandbox/run.js';
import type { NativeEvent } from '../../src/sandbox/native.js';

function query(name: string, type: number, id = 0x1234): Buffer {
  const labels = name.split('.').flatMap((l) => [Buffer.from([l.length]), Buffer.from(l)]);
  return Buffer.concat([Buffer.from([id >> 8, id & 255, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0]), ...labels, Buffer.from([0, type >> 8, type & 255, 0, 1])]);
}

test('decodes the name and type of a DNS query', () => {
  assert.equal(decodeDnsQuery(query('exfil.example.invalid', 1)), { name: 'exfil.example.invalid', type: 'A' });
  assert.equal(decodeDnsQuery(query('a.b.invalid', 28)), { name: 'a.b.invalid', type: 'AAAA' });
  const tcp = Buffer.concat([Buffer.from([0, 30]), query('t.invalid', 16)]);
  assert.equal(decodeDnsQuery(tcp, true), { name: 't.invalid', type: 'TXT' });
});

test('refuses truncated, response and over-long-label packets', () => {
  assert.is(decodeDnsQuery(Buffer.alloc(5)), null);
  const resp = query('x.invalid', 1);
  resp[2] = 0x81;
  assert.is(decodeDnsQuery(resp), null);
  const bad = query('x.invalid', 1);
  bad[12] = 64;
  assert.is(decodeDnsQuery(bad), null);
});

test('previews payloads as printable text', () => {
  assert.is(preview(Buffer.from('GET / HTTP/1.1\r\n')), 'GET / HTTP/1.1..');
});

const names: Record<number, string> = { 42: 'connect', 44: 'sendto', 59: 'execve', 257: 'openat', 101: 'ptrace' };
const ctx = { syscallName: (n: number) => names[n] ?? `syscall_${n}` };
const base = (nr: number, extra: Partial<NativeEvent>): NativeEvent => ({ type: 'syscall', time: 0, pid: 7, nr, action: 'denied', errno: 1, args: [0n, 0n, 0n, 0n, 0n, 0n], ...extra });

test('turns a notified sendto to port 53 into an egress event with the DNS name', () => {
  const e = toRunEvent(base(44, { sockaddr: { family: 'inet', address: '192.0.2.53', port: 53 }, sockType: 'udp', payload: query('leak.invalid', 1) }), ctx);
  assert.equal(e.egress, { protocol: 'udp', address: '192.0.2.53', port: 53, family: 'inet', dnsName: 'leak.invalid', dnsType: 'A' });
  assert.is(e.errno, 'EPERM');
  assert.is(e.reason, 'network denied');
});

test('exec and write events carry argv and path; summaries list them', () => {
  const ex = toRunEvent(base(59, { path: '/bin/sh', argv: ['sh', '-c', 'id'] }), ctx);
  const wr = toRunEvent(base(257, { path: '/etc/x', flags: 0o101 }), ctx);
  const pt = toRunEvent(base(101, { alwaysDenied: true }), ctx);
  assert.equal(wr.args.flags, ['O_WRONLY', 'O_CREAT']);
  assert.is(pt.reason, 'always denied');
  const s = summarize([ex, wr, pt]);
  assert.equal(s.blockedExecs, [{ path: '/bin/sh', argv: ['sh', '-c', 'id'] }]);
  assert.equal(s.blockedWrites, ['/etc/x']);
  assert.equal(s.deniedSyscalls, ['ptrace']);
  assert.is(s.denied, 3);
});

test('identical attempts fold into one event with a count, whatever their raw arguments', () => {
  const log = new EventLog();
  for (let i = 0; i < 10_000; i++) log.add(toRunEvent(base(103, { byProfile: true, args: [BigInt(i), 1n, 2n, 0n, 0n, 0n], pid: 7 + (i % 3) }), { syscallName: () => 'syslog' }));
  assert.is(log.events.length, 1);
  assert.is(log.events[0]!.count, 10_000);
  const s = log.summary();
  assert.equal([s.events, s.distinct, s.denied, s.unlisted], [10_000, 1, 10_000, undefined]);
  assert.ok(Buffer.byteLength(JSON.stringify({ events: log.events, summary: s }, null, 2)) < 2048);
});

test('each kind keeps its own distinct attempts up to the bound; past it the summary and the text say how many were not listed', () => {
  const log = new EventLog(3);
  const write = (p: string): RunEvent => toRunEvent(base(257, { path: p, flags: 0o101 }), ctx);
  for (let i = 0; i < 10; i++) log.add(write(`/etc/junk-${i}`));
  log.add(write('/etc/junk-9'));
  const exec = toRunEvent(base(59, { path: '/bin/sh', argv: ['sh', '-c', 'id'] }), ctx);
  log.add(exec);
  const s = log.summary();
  assert.equal(s.blockedWrites, ['/etc/junk-0', '/etc/junk-1', '/etc/junk-2']);
  assert.equal(s.blockedExecs, [{ path: '/bin/sh', argv: ['sh', '-c', 'id'] }], 'a flood of one kind does not crowd out another');
  assert.equal(s.unlisted, { distinct: 7, events: 8, byKind: { write: 7 }, limitPerKind: 3 });
  const text = renderRunText({ command: ['x'], profile: 'inference', exitCode: 0, signal: null, durationMs: 1, walls: { notify: true, network: 'netns', dnsSink: false, landlock: 7, pids: null }, events: log.events, summary: s } as unknown as RunResult);
  assert.match(text, 'NOT LISTED: 7 distinct attempts (8 calls) beyond the 3 kept per kind — 7 write');
});

test('the same write through a symbolic link that led elsewhere is another attempt', () => {
  const log = new EventLog();
  const a = toRunEvent(base(257, { path: '/tmp/run/link', flags: 0o101 }), ctx);
  const b = { ...toRunEvent(base(257, { path: '/tmp/run/link', flags: 0o101 }), ctx), resolvedPath: '/etc/passwd' };
  log.add(a);
  log.add(b);
  assert.is(log.events.length, 2);
  assert.equal(log.summary().blockedWrites, ['/tmp/run/link', '/etc/passwd']);
});

test('printable() writes every control character, newline and escape as inert text on one line', () => {
  assert.is(printable('a\nb\r\tc\u001b[2J\u009b\u007f\\'), 'a\\nb\\r\\tc\\e[2J\\x9b\\x7f\\\\');
  assert.is(printable('evil\u202etxt.exe'), 'evil\\u202etxt.exe');
  assert.is(printable('/plain/päth'), '/plain/päth');
});

test.run();
