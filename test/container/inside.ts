/**
 * The attack probes, run inside a test container (test/container/container.test.ts starts it): each
 * is one `guard run` of test/fixtures/sandbox/attack.c or probe.c (compiled on the host by
 * scripts/test-container.sh and copied into the image at /opt/probes), under the `inference`
 * profile the entrypoint uses. This file runs as root inside the container, outside guard's walls
 * but inside the container's (its seccomp profile, capabilities and network namespace), as a
 * daemon beside the server would; it makes the targets itself (a TCP and a UDP listener on
 * loopback, unix sockets, victim files, secrets), checks afterwards that none of them was reached
 * or changed, and checks the report for each attempt. It prints one JSON line per probe:
 * `{"probe": NAME, "problems": [...], "status": N, "walls": "..."}`; the host test asserts on them.
 *
 * The container has no route out (`--network none`, a network namespace the host test makes):
 * documentation addresses (RFC 5737, RFC 3849), `.invalid` names and sockets made here are the
 * only targets. Races are bounded by their counts of tries (attack.c) and every run by a timeout.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { createSocket } from 'node:dgram';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { join } from 'node:path';
import { METADATA_ATTACKS } from '../sandbox/metadata-attacks.js';
import { unixStreamListener } from '../sandbox/listeners.js';

const ATTACK = '/opt/probes/attack';
const PROBE = '/opt/probes/probe';
const GUARD = process.env.MODELGUARD_GUARD ?? 'guard';
/** A hung probe is killed after this; the slowest (the connect race) takes seconds. */
const PROBE_TIMEOUT_MS = 120_000;
/** The races' counts of tries: those of test/sandbox/attacks.test.ts (2.6 to 7 times the most any won in). */
const RACE_TRIES = { connect: 15_000, chmod: 6_000, sendto: 2_000, sendmsg: 3_000 };

interface Event {
  syscall: string;
  action: string;
  args: Record<string, unknown>;
  path?: string;
  errno?: string;
  egress?: { protocol: string; address: string; port: number };
}
interface Report {
  exitCode: number;
  walls: Record<string, unknown>;
  events: Event[];
  summary: { blockedExecs: { argv?: string[] }[]; blockedWrites: string[]; egress: string[]; dnsNames: string[] };
}
interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
  report: Report | null;
}

const work = mkdtempSync('/var/tmp/mg-probes-');
/**
 * Attacks the runtime's own seccomp profile refuses before guard's filter is asked (stacked filters:
 * the most severe answer wins, and its errno outranks guard's notification), so guard never sees
 * them to report: MG_RUNTIME_REFUSES, set by the host test for Docker's profile. They must still fail.
 */
const refusedFirst = new Set((process.env.MG_RUNTIME_REFUSES ?? '').split(',').filter(Boolean));
let runs = 0;

/** Guard's flags for the variant being run: none, or `--no-netns` (the walls a served container gets, see below). */
let variantArgs: string[] = [];

function guardRun(cmd: string[], opts: { env?: NodeJS.ProcessEnv; args?: string[] } = {}): Run {
  const report = join(work, `report-${++runs}.json`);
  const r = spawnSync(GUARD, ['run', '--report', report, ...variantArgs, ...(opts.args ?? []), '--', ...cmd], { encoding: 'utf8', env: opts.env ?? process.env, timeout: PROBE_TIMEOUT_MS });
  let rep: Report | null = null;
  try {
    rep = JSON.parse(readFileSync(report, 'utf8')) as Report;
  } catch {
    rep = null;
  }
  return { status: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '', report: rep };
}

const denied = (r: Run, syscalls: readonly string[]): Event[] => (r.report?.events ?? []).filter((e) => syscalls.includes(e.syscall) && e.action === 'denied');

/** attack.c's verdict line: the attack must say it held, never that it won. */
function held(r: Run, mode: string, problems: string[]): void {
  if (!r.stdout.includes(`${mode} result=held`) || r.stdout.includes(`${mode} result=won`)) problems.push(`${mode}: not held: ${r.stdout.trim().slice(-300)}`);
}

function victim(): string {
  const dir = mkdtempSync(join(work, 'victim-'));
  // Longer than the sandbox's $TMPDIR plus a name, so the chmod race can swap one path for the other.
  const v = join(dir, `victim-${'x'.repeat(48)}`);
  writeFileSync(v, 'victim\n');
  chmodSync(v, 0o600);
  return v;
}

async function tcpListener(): Promise<{ port: number; accepted: () => number; close: () => Promise<void> }> {
  let n = 0;
  const server: Server = createServer((c) => {
    n++;
    c.destroy();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { port: (server.address() as AddressInfo).port, accepted: () => n, close: () => new Promise<void>((r) => server.close(() => r())) };
}

async function unixListener(): ReturnType<typeof unixStreamListener> {
  return unixStreamListener(join(mkdtempSync(join(work, 'sock-')), 'host.sock'));
}

async function udpListener(): Promise<{ port: number; got: () => number; close: () => void }> {
  const s = createSocket('udp4');
  let n = 0;
  s.on('message', () => n++);
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
  return { port: s.address().port, got: () => n, close: () => s.close() };
}

/** A unix datagram socket served by attack.c's own server mode, outside the walls. */
async function unixDgram(): Promise<{ path: string; got: () => Promise<number> }> {
  const path = join(mkdtempSync(join(work, 'dgram-')), 'host.dgram');
  const child: ChildProcess = spawn(ATTACK, ['serve-dgram', path, '120'], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  const end = Date.now() + 10_000;
  while (!out.includes('ready') && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
  return {
    path,
    got: async () => {
      spawnSync('rm', ['-f', path]);
      await new Promise<void>((r) => (child.exitCode !== null ? r() : child.once('exit', () => r())));
      return Number(/served got=(\d+)/.exec(out)?.[1] ?? -1);
    },
  };
}

/** `net`: the probe attempts egress, and runs in both variants; the others run once. */
type Probe = { name: string; net?: boolean; run: () => Promise<{ problems: string[]; r: Run }> };

const probes: Probe[] = [
  {
    name: 'exec: a second program is refused and reported',
    run: async () => {
      const problems: string[] = [];
      const r = guardRun([PROBE, 'exec', '/bin/echo', 'EXEC-RAN']);
      if (r.stdout.includes('EXEC-RAN')) problems.push('the second program ran');
      if (!(r.report?.summary.blockedExecs ?? []).some((x) => x.argv?.[0] === '/bin/echo')) problems.push(`not reported: ${JSON.stringify(r.report?.summary.blockedExecs)}`);
      return { problems, r };
    },
  },
  {
    net: true,
    name: 'egress TCP: connect to a listener on loopback (made here) never connects; reported',
    run: async () => {
      const problems: string[] = [];
      const l = await tcpListener();
      const r = guardRun([PROBE, 'connect4', '127.0.0.1', String(l.port)]);
      await new Promise((res) => setTimeout(res, 100));
      if (l.accepted() !== 0) problems.push(`the listener accepted ${l.accepted()}`);
      await l.close();
      if (!denied(r, ['connect']).some((e) => e.egress?.address === '127.0.0.1' && e.egress.port === l.port)) problems.push(`not reported: ${JSON.stringify(r.report?.events)}`);
      return { problems, r };
    },
  },
  {
    net: true,
    name: 'egress TCP: connect to 192.0.2.1:80 and [2001:db8::1]:443 refused; reported',
    run: async () => {
      const problems: string[] = [];
      const a = guardRun([PROBE, 'connect4', '192.0.2.1', '80']);
      if (!/connect4 errno=E/.test(a.stdout)) problems.push(`connect4: ${a.stdout}`);
      if (!denied(a, ['connect']).some((e) => e.egress?.address === '192.0.2.1' && e.egress.port === 80)) problems.push(`connect4 not reported: ${JSON.stringify(a.report?.events)}`);
      const b = guardRun([PROBE, 'connect6', '2001:db8::1', '443']);
      if (!/connect6 errno=E/.test(b.stdout)) problems.push(`connect6: ${b.stdout}`);
      if (!denied(b, ['connect']).some((e) => e.egress?.address === '2001:db8::1' && e.egress.port === 443)) problems.push(`connect6 not reported: ${JSON.stringify(b.report?.events)}`);
      return { problems, r: a };
    },
  },
  {
    net: true,
    name: 'egress UDP: sendto a loopback listener (made here) and sendmsg to 198.51.100.1 never arrive; reported',
    run: async () => {
      const problems: string[] = [];
      const u = await udpListener();
      const a = guardRun([PROBE, 'sendto4', '127.0.0.1', String(u.port), 'harmless']);
      await new Promise((res) => setTimeout(res, 100));
      if (u.got() !== 0) problems.push(`the UDP listener got ${u.got()}`);
      u.close();
      if (!denied(a, ['sendto']).some((e) => e.egress?.port === u.port)) problems.push(`sendto not reported: ${JSON.stringify(a.report?.events)}`);
      const b = guardRun([PROBE, 'sendmsg4', '198.51.100.1', '9', 'harmless']);
      if (!denied(b, ['sendmsg']).some((e) => e.egress?.address === '198.51.100.1')) problems.push(`sendmsg not reported: ${JSON.stringify(b.report?.events)}`);
      return { problems, r: a };
    },
  },
  {
    net: true,
    name: 'DNS: a lookup of a .invalid name gets no answer from outside; the attempt is reported',
    run: async () => {
      const problems: string[] = [];
      const r = guardRun([PROBE, 'getaddrinfo', 'exfil.example.invalid']);
      if (/gai=0\b/.test(r.stdout)) problems.push(`resolved: ${r.stdout}`);
      const s = r.report?.summary;
      const seen = (s?.dnsNames ?? []).some((n) => n.includes('exfil.example.invalid')) || (s?.egress ?? []).some((e) => /:53$/.test(e)) || denied(r, ['connect', 'sendto', 'sendmsg', 'sendmmsg']).length > 0;
      if (!seen) problems.push(`not reported: ${JSON.stringify(r.report?.summary)} ${JSON.stringify(r.report?.events)}`);
      return { problems, r };
    },
  },
  {
    net: true,
    name: 'unix sockets: connect, sendto and sendmmsg (17th message) to sockets made here never arrive; reported',
    run: async () => {
      const problems: string[] = [];
      const stream = await unixListener();
      const dgram = await unixDgram();
      const a = guardRun([ATTACK, 'connect-unix', stream.path]);
      held(a, 'connect-unix', problems);
      if (!denied(a, ['connect']).some((e) => e.args.address === stream.path)) problems.push('connect-unix not reported');
      const b = guardRun([ATTACK, 'sendto-unix', dgram.path]);
      held(b, 'sendto-unix', problems);
      if (!denied(b, ['sendto']).some((e) => e.args.address === dgram.path)) problems.push('sendto-unix not reported');
      const c = guardRun([ATTACK, 'sendmmsg-17', dgram.path]);
      held(c, 'sendmmsg-17', problems);
      if (!denied(c, ['sendmmsg']).some((e) => e.args.address === dgram.path && e.args.message === 16)) problems.push('sendmmsg 17th not reported');
      const got = await dgram.got();
      if (got !== 0) problems.push(`the datagram socket got ${got}`);
      if (stream.accepted() !== 0) problems.push(`the stream socket accepted ${stream.accepted()}`);
      await stream.close();
      return { problems, r: a };
    },
  },
  {
    net: true,
    name: 'races: connect flipping to a unix socket, sendto/sendmsg flipping to 192.0.2.1, chmod flipping to a victim: all held; reported',
    run: async () => {
      const problems: string[] = [];
      const host = await unixListener();
      const a = guardRun([ATTACK, 'race-connect-unix', host.path, String(RACE_TRIES.connect)]);
      held(a, 'race-connect-unix', problems);
      if (host.accepted() !== 0) problems.push(`race-connect-unix: the socket accepted ${host.accepted()}`);
      if (!denied(a, ['connect']).some((e) => e.args.address === host.path)) problems.push('race-connect-unix not reported');
      await host.close();
      const b = guardRun([ATTACK, 'race-sendto-inet', '192.0.2.1', '9', String(RACE_TRIES.sendto)]);
      held(b, 'race-sendto-inet', problems);
      if (!denied(b, ['sendto']).some((e) => e.egress?.address === '192.0.2.1')) problems.push('race-sendto-inet not reported');
      const c = guardRun([ATTACK, 'race-sendmsg-inet', '192.0.2.1', '9', String(RACE_TRIES.sendmsg)]);
      held(c, 'race-sendmsg-inet', problems);
      if (!denied(c, ['sendmsg']).some((e) => e.egress?.address === '192.0.2.1')) problems.push('race-sendmsg-inet not reported');
      const v = victim();
      const d = guardRun([ATTACK, 'race-chmod', v, String(RACE_TRIES.chmod)]);
      held(d, 'race-chmod', problems);
      if ((statSync(v).mode & 0o7777) !== 0o600) problems.push('race-chmod: the victim changed mode');
      if (!denied(d, ['chmod']).some((e) => e.path === v)) problems.push('race-chmod not reported');
      return { problems, r: a };
    },
  },
  {
    name: 'writes: a file outside the write list is not created; reported',
    run: async () => {
      const problems: string[] = [];
      const dir = mkdtempSync(join(work, 'write-'));
      const target = join(dir, 'planted');
      const r = guardRun([PROBE, 'write', target]);
      if (existsSync(target)) problems.push('the file was created');
      if (!(r.report?.summary.blockedWrites ?? []).includes(target)) problems.push(`not reported: ${JSON.stringify(r.report?.summary.blockedWrites)}`);
      const b = guardRun([ATTACK, 'bind-via-symlink', dir]);
      held(b, 'bind-via-symlink', problems);
      if (existsSync(join(dir, 'planted.sock'))) problems.push('a socket was bound through a symlink');
      if (!denied(b, ['bind']).some((e) => e.path === join(dir, 'planted.sock'))) problems.push('bind-via-symlink not reported');
      return { problems, r };
    },
  },
  {
    name: 'metadata: chmod/chown/utime/xattr in path and fd forms leave a file outside the write list as it was; each reported',
    run: async () => {
      const problems: string[] = [];
      let last: Run | undefined;
      for (const [mode, syscalls] of METADATA_ATTACKS) {
        const v = victim();
        const before = statSync(v);
        const r = (last = guardRun([ATTACK, mode, v]));
        held(r, mode, problems);
        const after = statSync(v);
        if (after.mode !== before.mode || after.mtimeMs !== before.mtimeMs || after.uid !== before.uid) problems.push(`${mode}: the victim changed`);
        if (!denied(r, syscalls).some((e) => e.path === v)) problems.push(`${mode}: not reported with the victim's path`);
      }
      return { problems, r: last! };
    },
  },
  {
    name: 'secrets: files in the home folder, /run/secrets and /etc/shadow unreadable; a token in the environment held back',
    run: async () => {
      const problems: string[] = [];
      const home = mkdtempSync(join(work, 'home-'));
      const files = [join(home, '.ssh', 'id_ed25519'), join(home, '.cache', 'huggingface', 'token'), '/run/secrets/mg-token'];
      for (const f of files) {
        mkdirSync(join(f, '..'), { recursive: true });
        writeFileSync(f, 'TOP-SECRET-MATERIAL');
      }
      const script = `import os\nfor p in ${JSON.stringify([...files, '/etc/shadow'])}:\n  try:\n    print(p, 'READ', open(p).read())\n  except OSError as e: print(p, 'errno', e.errno)\nprint('env', os.environ.get('HF_TOKEN'))`;
      const r = guardRun(['/usr/bin/python3', '-c', script], { env: { ...process.env, HOME: home, HF_TOKEN: 'hf_TOP-SECRET-MATERIAL' } });
      if (r.stdout.includes('TOP-SECRET-MATERIAL') || r.stdout.includes(' READ ')) problems.push(`read: ${r.stdout}`);
      for (const p of [...files, '/etc/shadow']) if (!r.stdout.includes(`${p} errno 13`)) problems.push(`${p}: ${r.stdout}`);
      if (!r.stdout.includes('env None')) problems.push('HF_TOKEN reached the command');
      // Reads are refused by Landlock in the kernel, which reports nothing: the report names what may be read instead.
      const read = r.report?.walls.read;
      if (!Array.isArray(read) || read.some((p) => typeof p === 'string' && (p === home || p.startsWith(`${home}/`) || p === '/run/secrets' || p === '/'))) problems.push(`the report's read list: ${JSON.stringify(read)}`);
      return { problems, r };
    },
  },
  {
    name: 'kernel surface: vsock/packet/netlink-audit sockets, clone(CLONE_NEWUSER), clone3, an x32 call: refused; reported',
    run: async () => {
      const problems: string[] = [];
      let last: Run | undefined;
      for (const mode of ['vsock', 'packet', 'netlink-audit']) {
        const r = (last = guardRun([ATTACK, mode]));
        held(r, mode, problems);
        if (denied(r, ['socket']).length !== 1 && !refusedFirst.has(mode)) problems.push(`${mode}: not reported`);
      }
      const a = guardRun([ATTACK, 'clone-newuser']);
      held(a, 'clone-newuser', problems);
      if (!denied(a, ['clone']).length && !refusedFirst.has('clone-newuser')) problems.push('clone-newuser not reported');
      const b = guardRun([ATTACK, 'clone3']);
      held(b, 'clone3', problems);
      const c = guardRun([ATTACK, 'x32-child']);
      held(c, 'x32-child', problems);
      if (!(c.report?.events ?? []).some((e) => e.args.abi === 'x32' && e.action === 'denied')) problems.push('x32 not reported');
      return { problems, r: last! };
    },
  },
];

/**
 * Variants (argv[2], comma-separated): `netns` runs every probe as `guard run` does by default (a
 * network namespace where one can be had: in a container, inside a user namespace of the run's
 * own, or with SYS_ADMIN); `no-netns` runs the egress probes again with `--no-netns`, the walls a
 * served container gets (MODELGUARD_ALLOW_NET keeps the container's network: denial decided in BPF
 * and Landlock, connects and sends performed by the supervisor). argv[3]: a regex over probe names.
 */
const variants = (process.argv[2] ?? 'netns,no-netns').split(',');
const only = process.argv[3] ? new RegExp(process.argv[3]) : null;
for (const variant of variants) {
  variantArgs = variant === 'no-netns' ? ['--no-netns'] : [];
  for (const p of probes) {
    if ((only && !only.test(p.name)) || (variant === 'no-netns' && !p.net)) continue;
    let out: { probe: string; variant: string; problems: string[]; status: number | null; walls?: unknown; stderr?: string };
    try {
      const { problems, r } = await p.run();
      out = { probe: p.name, variant, problems: problems.map((x) => x.slice(0, 600)), status: r.status, walls: r.report?.walls, ...(problems.length ? { stderr: r.stderr.slice(-1000) } : {}) };
    } catch (e) {
      out = { probe: p.name, variant, problems: [`threw: ${e instanceof Error ? e.stack : String(e)}`], status: null };
    }
    process.stdout.write(`${JSON.stringify(out)}\n`);
  }
}
spawnSync('rm', ['-rf', work]);
