import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { followPath, run, type RunEvent } from '../../src/sandbox/run.js';
import { loadProfile } from '../../src/sandbox/profile.js';
import { CLI, guardRun, probe, processesMatching, PYTHON, ROOT, skipReason, tempDir, type ReportJson } from './helpers.js';

const skip = skipReason();
if (skip) {
  console.log(`skip: ${skip}`);
  test.skip('sandbox run()', () => {});
  test.run();
} else {
  const events = (r: { events: RunEvent[] }, syscall: string) => r.events.filter((e) => e.syscall === syscall);

  // ---- egress: every test here runs guard inside `unshare -n` that it creates ----

  test('reports and denies a TCP connect to an IPv4 documentation address, decoded', () => {
    const r = guardRun([], [probe(), 'connect4', '192.0.2.10', '443'], { netns: true });
    assert.match(r.stdout, 'connect4 errno=ECONNREFUSED');
    assert.is(r.status, 111);
    const ev = r.report!.events.find((e) => e.syscall === 'connect')!;
    assert.is(ev.action, 'denied');
    assert.equal(ev.egress, { protocol: 'tcp', address: '192.0.2.10', port: 443, family: 'inet' } as typeof ev.egress);
    assert.ok(r.report!.summary.egress.includes('tcp 192.0.2.10:443'));
  });

  test('reports and denies a TCP connect to an IPv6 documentation address, decoded', () => {
    const r = guardRun([], [probe(), 'connect6', '2001:db8::7', '8443'], { netns: true });
    assert.match(r.stdout, 'connect6 errno=ECONNREFUSED');
    const ev = r.report!.events.find((e) => e.syscall === 'connect')!;
    assert.is(ev.action, 'denied');
    assert.is(ev.egress!.address, '2001:db8::7');
    assert.is(ev.egress!.port, 8443);
    assert.is(ev.egress!.protocol, 'tcp');
  });

  test('reports and denies a UDP sendto with its destination and a payload preview', () => {
    const r = guardRun([], [probe(), 'sendto4', '198.51.100.9', '5353', 'exfil-token-42'], { netns: true });
    assert.match(r.stdout, 'sendto4 errno=EPERM');
    const ev = r.report!.events.find((e) => e.syscall === 'sendto')!;
    assert.is(ev.action, 'denied');
    assert.equal([ev.egress!.protocol, ev.egress!.address, ev.egress!.port], ['udp', '198.51.100.9', 5353]);
    assert.match(String(ev.args.payload), 'exfil-token-42');
  });

  test('reports and denies a UDP sendmsg with its destination', () => {
    const r = guardRun([], [probe(), 'sendmsg4', '203.0.113.5', '9999', 'hello'], { netns: true });
    assert.match(r.stdout, 'sendmsg4 errno=EPERM');
    const ev = r.report!.events.find((e) => e.syscall === 'sendmsg')!;
    assert.equal([ev.action, ev.egress!.address, ev.egress!.port], ['denied', '203.0.113.5', 9999]);
  });

  test('puts the name of a getaddrinfo lookup in the report, and nothing leaves', () => {
    const name = 'exfil-probe.modelguard-test.invalid';
    const r = guardRun([], [probe(), 'getaddrinfo', name], { netns: true, timeout: 60_000 });
    assert.match(r.stdout, 'getaddrinfo gai=');
    assert.ok(r.report!.summary.dnsNames.includes(name), JSON.stringify(r.report!.summary));
    const dns = r.report!.events.filter((e) => e.egress?.dnsName === name);
    assert.ok(dns.length >= 1);
    assert.ok(dns.every((e) => e.action === 'denied'));
    assert.ok(dns.every((e) => e.egress!.port === 53));
  });

  test('a DNS query sent with write() or writev() on a connected socket (Go\'s way) reaches the DNS sink: named in the report, answered REFUSED at once', () => {
    for (const [addr, how, name] of [
      ['192.0.2.53', 'write', 'write-exfil.modelguard-test.invalid'],
      ['2001:db8::53', 'writev', 'writev-exfil.modelguard-test.invalid'],
    ] as const) {
      const r = guardRun([], [probe(), 'dnswrite', addr, name, how], { netns: true, timeout: 60_000 });
      assert.match(r.stdout, 'dnswrite reply id=1234 rcode=5', `${how} to ${addr}: ${r.stdout}${r.stderr}`);
      assert.ok(r.report!.walls.dnsSink, 'the sink was up');
      assert.ok(r.report!.summary.dnsNames.includes(name), JSON.stringify(r.report!.summary));
      const sunk = r.report!.events.find((e) => e.egress?.dnsName === name)!;
      assert.equal([sunk.action, sunk.egress!.protocol, sunk.egress!.address, sunk.egress!.port, sunk.egress!.dnsType], ['denied', 'udp', addr, 53, 'AAAA']);
      const connect = r.report!.events.find((e) => e.syscall === 'connect')!;
      assert.equal([connect.action, connect.egress!.address, connect.egress!.port], ['denied', addr, 53]);
    }
  });

  test('DNS over TCP (Go, `options use-vc`) reaches the TCP DNS sink: named in the report, answered REFUSED at once', () => {
    const script = [
      'import socket, struct, sys',
      'addr, name = sys.argv[1], sys.argv[2]',
      'q = struct.pack(">HHHHHH", 0x4321, 0x0100, 1, 0, 0, 0) + b"".join(bytes([len(l)]) + l.encode() for l in name.split(".")) + b"\\0" + struct.pack(">HH", 16, 1)',
      's = socket.create_connection((addr, 53), timeout=5)',
      's.sendall(struct.pack(">H", len(q)) + q)',
      'r = s.recv(600)',
      'print("tcp reply id=%x rcode=%d" % (struct.unpack(">H", r[2:4])[0], r[5] & 15))',
    ].join('\n');
    for (const [addr, name] of [
      ['198.51.100.53', 'tcp-exfil.modelguard-test.invalid'],
      ['2001:db8::5:53', 'tcp6-exfil.modelguard-test.invalid'],
    ] as const) {
      const r = guardRun([], [PYTHON, '-c', script, addr, name], { netns: true, timeout: 60_000 });
      assert.match(r.stdout, 'tcp reply id=4321 rcode=5', `${addr}: ${r.stdout}${r.stderr}`);
      assert.ok(r.report!.summary.dnsNames.includes(name), JSON.stringify(r.report!.summary));
      const sunk = r.report!.events.find((e) => e.egress?.dnsName === name)!;
      assert.equal([sunk.action, sunk.egress!.protocol, sunk.egress!.address, sunk.egress!.port, sunk.egress!.dnsType], ['denied', 'tcp', addr, 53, 'TXT']);
    }
    // glibc's own resolver over TCP: the name from getaddrinfo() is in the report.
    const name = 'use-vc.modelguard-test.invalid';
    const r = guardRun([], [probe(), 'getaddrinfo', name], { netns: true, timeout: 60_000, env: { ...process.env, RES_OPTIONS: 'use-vc' } });
    assert.match(r.stdout, 'getaddrinfo gai=');
    assert.ok(r.report!.summary.dnsNames.includes(name), JSON.stringify(r.report!.summary));
  });

  test('reports and denies bind and listen on a port', () => {
    const r = guardRun([], [probe(), 'bindlisten', '8089'], { netns: true });
    assert.match(r.stdout, 'bind errno=EPERM');
    assert.match(r.stdout, 'listen errno=EPERM');
    const bind = r.report!.events.find((e) => e.syscall === 'bind')!;
    const listen = r.report!.events.find((e) => e.syscall === 'listen')!;
    assert.equal([bind.action, bind.args.port, listen.action, listen.args.port], ['denied', 8089, 'denied', 8089]);
  });

  test('without a network namespace, seccomp + Landlock still deny and report egress', () => {
    const r = guardRun(['--no-netns'], [probe(), 'connect4', '192.0.2.12', '80'], { netns: true });
    assert.match(r.stdout, 'connect4 errno=ECONNREFUSED');
    assert.match(String(r.report!.walls.network), /^seccomp/);
    assert.is(r.report!.walls.landlockNet, true);
    const u = guardRun(['--no-netns'], [probe(), 'sendto4', '198.51.100.12', '53', 'x'], { netns: true });
    assert.match(u.stdout, 'sendto4 errno=EPERM');
    assert.is(u.report!.events.find((e) => e.syscall === 'sendto')!.action, 'denied');
  });

  test('an unprivileged user gets a network namespace inside a user namespace of its own, a private /dev/shm, and RLIMIT_NPROC', () => {
    const dir = tempDir('nobody');
    chmodSync(dir, 0o777);
    const p = join(dir, 'probe');
    copyFileSync(probe(), p);
    chmodSync(p, 0o755);
    const report = join(dir, 'r.json');
    const asNobody = (args: string[]) => spawnSync('unshare', ['-n', 'setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', 'env', `HOME=${dir}`, process.execPath, CLI, 'run', '--report', report, ...args], { encoding: 'utf8', cwd: dir });
    const r = asNobody(['--', p, 'connect4', '192.0.2.21', '80']);
    assert.match(r.stdout, 'connect4 errno=ECONNREFUSED');
    const rep = JSON.parse(readFileSync(report, 'utf8')) as { walls: { network: string; userNamespace: boolean; pids: string } };
    assert.equal([rep.walls.network, rep.walls.userNamespace], ['netns', true]);
    assert.match(rep.walls.pids, 'RLIMIT_NPROC');
    // The mount namespace too (inside the user namespace): /dev/shm is the run's own, gone with it.
    const shm = `/dev/shm/mg-nobody-${process.pid}`;
    const w = asNobody(['--', p, 'write', shm]);
    assert.match(w.stdout, 'write errno=0');
    assert.not.ok(existsSync(shm));
    assert.is((JSON.parse(readFileSync(report, 'utf8')) as { walls: { tmp: string } }).walls.tmp, 'private');
    const b = asNobody(['--profile', 'loader', '--', p, 'forkbomb']);
    const m = /forkbomb children=(\d+) errno=EAGAIN/.exec(b.stdout);
    assert.ok(m && Number(m[1]) < 512, b.stdout + b.stderr);
  });

  test('the text summary names every egress destination and DNS name', () => {
    const r = guardRun([], [PYTHON, '-c', "import socket\ntry:\n socket.create_connection(('192.0.2.44', 80), timeout=2)\nexcept OSError as e: print('refused', e.errno)\ntry:\n socket.getaddrinfo('summary.modelguard-test.invalid', 80)\nexcept OSError: print('no name')\n"], { netns: true, timeout: 60_000 });
    assert.match(r.stdout, 'refused 111');
    assert.match(r.stderr, 'egress attempts: tcp 192.0.2.44:80');
    assert.match(r.stderr, 'DNS names: summary.modelguard-test.invalid');
  });

  // ---- exec, writes, always-denied calls: run() in-process, no egress attempted ----

  test('denies and reports execve of /bin/sh from Python; its output never appears', async () => {
    const r = await run([PYTHON, '-c', "import os; print('status', os.system('echo SHELL-RAN'))"], { stdio: 'pipe' });
    assert.not.match(r.stdout ?? '', 'SHELL-RAN');
    assert.match(r.stdout ?? '', 'status');
    const ex = events(r, 'execve').filter((e) => e.action === 'denied');
    assert.is(ex.length, 1);
    assert.equal(ex[0]!.argv, ['sh', '-c', 'echo SHELL-RAN']);
    assert.is(ex[0]!.path, '/bin/sh');
    assert.is(ex[0]!.errno, 'EPERM');
    assert.equal(r.summary.blockedExecs[0]!.argv, ['sh', '-c', 'echo SHELL-RAN']);
  });

  test('allows the first execve (the command itself) and denies a later one with EPERM', async () => {
    const r = await run([probe(), 'exec', '/bin/echo', 'second'], { stdio: 'pipe' });
    assert.match(r.stdout ?? '', 'exec errno=EPERM');
    assert.is(r.exitCode, 1);
    const ex = events(r, 'execve');
    assert.equal(ex.map((e) => e.action), ['allowed', 'denied']);
  });

  test('denies a write outside the allowed folders: path reported, file not created', async () => {
    const dir = tempDir('nowrite');
    const target = join(dir, 'marker.txt');
    const r = await run([probe(), 'write', target], { stdio: 'pipe' });
    assert.match(r.stdout ?? '', 'write errno=EPERM');
    assert.not.ok(existsSync(target));
    const w = r.events.find((e) => e.path === target)!;
    assert.is(w.action, 'denied');
    assert.ok(r.summary.blockedWrites.includes(target));
  });

  test('mkdir, rename, link, symlink, unlink, chmod, truncate outside the write list: each denied, reported with its path, nothing changed', async () => {
    const dir = tempDir('nomutate');
    const keep = join(dir, 'keep.txt');
    writeFileSync(keep, 'original');
    chmodSync(keep, 0o644);
    const script = [
      'import os, sys',
      `d, keep = ${JSON.stringify(dir)}, ${JSON.stringify(keep)}`,
      'tmp = os.environ["TMPDIR"]',
      'steps = [',
      '  ("mkdir", lambda: os.mkdir(d + "/newdir")),',
      '  ("rename", lambda: os.rename(keep, d + "/renamed.txt")),',
      '  ("link", lambda: os.link(keep, d + "/hard.txt")),',
      '  ("symlink", lambda: os.symlink("/etc/shadow", d + "/soft")),',
      '  ("unlink", lambda: os.unlink(keep)),',
      '  ("chmod", lambda: os.chmod(keep, 0o777)),',
      '  ("truncate", lambda: os.truncate(keep, 0)),',
      '  ("inside", lambda: (os.mkdir(tmp + "/in"), os.rename(tmp + "/in", tmp + "/in2"))),',
      '  ("out-of-tmp", lambda: open(tmp + "/f", "w").close() or os.rename(tmp + "/f", d + "/smuggled")),',
      ']',
      'for name, f in steps:',
      '  try: f(); print(name, "ok")',
      '  except OSError as e: print(name, "errno", e.errno)',
    ].join('\n');
    const r = await run([PYTHON, '-c', script], { stdio: 'pipe', profile: 'inference' });
    const out = r.stdout ?? '';
    for (const step of ['mkdir', 'rename', 'link', 'symlink', 'unlink', 'chmod', 'truncate', 'out-of-tmp']) assert.match(out, `${step} errno 1`, out);
    assert.match(out, 'inside ok');
    assert.equal(readFileSync(keep, 'utf8'), 'original');
    assert.equal(spawnSync('ls', ['-A', dir], { encoding: 'utf8' }).stdout.trim(), 'keep.txt', 'nothing was created, moved or removed');
    const denied = (sc: string) => r.events.find((e) => e.syscall === sc && e.action === 'denied');
    assert.is(denied('mkdir')?.path, join(dir, 'newdir'));
    assert.is(denied('rename')?.path, join(dir, 'renamed.txt'));
    assert.is(denied('rename')?.args.from, keep);
    assert.is(denied('link')?.path, join(dir, 'hard.txt'));
    assert.is(denied('symlink')?.args.target, '/etc/shadow');
    assert.is(denied('unlink')?.path, keep);
    assert.is(denied('chmod')?.path, keep);
    assert.is(denied('truncate')?.path, keep);
    assert.ok(r.events.some((e) => e.syscall === 'rename' && e.action === 'denied' && e.path === join(dir, 'smuggled')), 'a move out of $TMPDIR is a write outside');
    assert.ok(r.events.some((e) => e.syscall === 'rename' && e.action === 'allowed' && e.path?.endsWith('/in2')), 'a rename inside $TMPDIR is allowed');
    for (const p of [join(dir, 'newdir'), keep, join(dir, 'soft')]) assert.ok(r.summary.blockedWrites.includes(p), p);
  });

  test('allows a write inside a --write folder, and inside $TMPDIR', async () => {
    const dir = tempDir('yeswrite');
    const target = join(dir, 'ok.txt');
    const r = await run([probe(), 'write', target], { stdio: 'pipe', write: [dir] });
    assert.match(r.stdout ?? '', 'write errno=0');
    assert.ok(existsSync(target));
    assert.is(r.summary.denied, 0);
    const r2 = await run(['/bin/sh', '-c', `${probe()} write "$TMPDIR/x"`], { stdio: 'pipe', profile: 'audit' });
    assert.match(r2.stdout ?? '', 'write errno=0');
  });

  test('x-modelguard fs.read confines reads with Landlock', async () => {
    const { parseProfile, loadProfile } = await import('../../src/sandbox/profile.js');
    const base = loadProfile('loader');
    const dir = dirname(probe());
    const json = JSON.parse(readFileSync(base.source, 'utf8')) as { 'x-modelguard': { fs: { read: string[] } } };
    json['x-modelguard'].fs.read = [dir, '/usr', '/lib', '/lib64', '/etc'];
    const p = parseProfile(json, 'read-confined.json');
    const ok = await run([probe(), 'read', '/etc/hostname'], { stdio: 'pipe', profile: p });
    assert.match(ok.stdout ?? '', 'read errno=0');
    const no = await run([probe(), 'read', '/proc/self/status'], { stdio: 'pipe', profile: p });
    assert.match(no.stdout ?? '', 'read errno=EACCES');
  });

  test('reads stay allowed everywhere and are not reported', async () => {
    const r = await run([probe(), 'read', '/etc/hostname'], { stdio: 'pipe' });
    assert.match(r.stdout ?? '', 'read errno=0');
    assert.is(r.summary.denied, 0);
  });

  const always: [string, string][] = [
    ['ptrace', 'ptrace'],
    ['ptrace_traceme', 'ptrace'],
    ['seccomp', 'seccomp'],
    ['prctl_seccomp', 'prctl'],
    ['unshare', 'unshare'],
    ['mount', 'mount'],
    ['bpf', 'bpf'],
    ['personality', 'personality'],
    ['tiocsti', 'ioctl'],
  ];
  for (const [op, syscall] of always) {
    test(`denies ${op} with EPERM and reports it`, async () => {
      const r = await run([probe(), op], { stdio: 'pipe' });
      assert.match(r.stdout ?? '', `${op} errno=EPERM`);
      assert.is(r.exitCode, 1);
      const ev = events(r, syscall).find((e) => e.action === 'denied');
      assert.ok(ev, `no denied ${syscall} event: ${JSON.stringify(r.events)}`);
      assert.is(ev!.reason, 'always denied');
    });
  }

  test('denies io_uring_setup and ptrace even under the audit profile', async () => {
    for (const op of ['ptrace', 'seccomp']) {
      const r = await run([probe(), op], { stdio: 'pipe', profile: 'audit' });
      assert.match(r.stdout ?? '', `${op} errno=EPERM`);
    }
    // io_uring answers ENOSYS, so a runtime that probes it falls back; it is reported as a probe.
    for (const profile of ['audit', 'inference']) {
      const r = await run([probe(), 'io_uring_setup'], { stdio: 'pipe', profile });
      assert.match(r.stdout ?? '', 'io_uring_setup errno=ENOSYS');
      const ev = events(r, 'io_uring_setup')[0]!;
      assert.equal([ev.action, ev.runtimeProbe, ev.errno], ['denied', true, 'ENOSYS']);
    }
  });

  test('lets personality(0xffffffff) (a query) through', async () => {
    const r = await run([probe(), 'personality_query'], { stdio: 'pipe' });
    assert.match(r.stdout ?? '', 'personality_query errno=0');
  });

  test('reports a call the profile does not allow, denied with the profile’s errno', async () => {
    const r = await run([probe(), 'raw', '103'], { stdio: 'pipe', profile: 'loader' }); // syslog(2)
    assert.match(r.stdout ?? '', 'raw errno=EPERM');
    const ev = r.events.find((e) => e.syscall === 'syslog')!;
    assert.equal([ev.action, ev.reason, ev.errno], ['denied', 'denied by the profile', 'EPERM']);
    assert.ok(r.summary.deniedSyscalls.includes('syslog'));
  });

  test("runs PyTorch under Docker's default profile unchanged, reporting what Docker silently denies", async () => {
    const docker = join(ROOT, 'test', 'fixtures', 'sandbox', 'docker-default.json');
    const code = "import torch\nprint(float(torch.ones(3, 3).sum()))";
    const r = await run([PYTHON, '-c', code], { stdio: 'pipe', profile: docker });
    assert.is(r.exitCode, 0, r.stderr);
    assert.is((r.stdout ?? '').trim(), '9.0');
    assert.is(r.profile, 'docker-default');
    // Docker allows mbind/get_mempolicy only with CAP_SYS_NICE; libtorch tries them at start-up.
    for (const e of r.events.filter((x) => x.action === 'denied' && x.syscall !== 'connect')) assert.is(e.reason, 'denied by the profile');
  });

  test('answers ENOSYS for syscalls newer than the profile knows', async () => {
    for (const nr of ['460', '1000']) {
      const r = await run([probe(), 'newer_syscall', nr], { stdio: 'pipe' });
      assert.match(r.stdout ?? '', 'newer_syscall errno=ENOSYS');
    }
  });

  test('answers an x32 system call ENOSYS and reports it with its ABI', async () => {
    const r = await run([probe(), 'x32'], { stdio: 'pipe' });
    assert.is(r.signal, null);
    const ev = r.events.find((e) => e.args.abi === 'x32')!;
    assert.equal([ev.action, ev.errno], ['denied', 'ENOSYS']);
  });

  test('bounds a fork bomb (pids cgroup / RLIMIT_NPROC) and leaves no process behind', async () => {
    const r = await run([probe(), 'forkbomb'], { stdio: 'pipe', profile: 'loader' });
    const m = /forkbomb children=(\d+) errno=(\w+)/.exec(r.stdout ?? '');
    assert.ok(m, r.stdout);
    assert.ok(Number(m![1]) < 512, `got ${m![1]} children`);
    assert.is(m![2], 'EAGAIN');
    assert.equal(processesMatching(`${probe()} forkbomb`), []);
  });

  test('the command keeps no capability, even as root; no_new_privs and seccomp are on', async () => {
    const r = await run([probe(), 'caps'], { stdio: 'pipe' });
    const out = r.stdout ?? '';
    for (const k of ['CapInh', 'CapPrm', 'CapEff', 'CapBnd', 'CapAmb']) assert.match(out, new RegExp(`${k}:\\s+0000000000000000`), k);
    assert.match(out, /NoNewPrivs:\s+1/);
    assert.match(out, /Seccomp:\s+2/);
    // AF_PACKET is closed to `inference` in BPF (EAFNOSUPPORT); opened to it, the kernel still
    // refuses: no CAP_NET_RAW.
    const open = loadProfile('inference');
    open.modelguard.socketFamilies = [...open.modelguard.socketFamilies, 'packet'];
    const p = await run([probe(), 'packet'], { stdio: 'pipe', profile: open });
    assert.match(p.stdout ?? '', 'packet errno=EPERM');
    const closed = await run([probe(), 'packet'], { stdio: 'pipe' });
    assert.match(closed.stdout ?? '', 'packet errno=EAFNOSUPPORT');
  });

  test('leaks no file descriptor into the command', async () => {
    const r = await run([probe(), 'fds'], { stdio: 'pipe' });
    assert.equal((r.stdout ?? '').trim().split('\n'), ['fd 0', 'fd 1', 'fd 2']);
  });

  test('reaps an orphaned grandchild and stops it when the command exits', async () => {
    const r = await run([probe(), 'orphan'], { stdio: 'pipe' });
    assert.is(r.exitCode, 0);
    assert.equal(processesMatching(`${probe()} orphan`), []);
  });

  test('streams events to onEvent as they happen', async () => {
    const seen: RunEvent[] = [];
    const r = await run([probe(), 'exec', '/bin/true'], { stdio: 'pipe', onEvent: (e) => seen.push(e) });
    assert.is(seen.length, r.events.length);
    assert.ok(seen.some((e) => e.syscall === 'execve' && e.action === 'denied'));
  });

  test('exit code is the command’s own, 128 + signal when it is killed', async () => {
    const r = await run(['/bin/sh', '-c', 'exit 7'], { stdio: 'pipe', profile: 'audit' });
    assert.is(r.exitCode, 7);
    const k = await run(['/bin/sh', '-c', 'kill -TERM $$'], { stdio: 'pipe', profile: 'audit' });
    assert.is(k.exitCode, 143);
    assert.is(k.signal, 'SIGTERM');
  });

  test('a command that does not exist is a setup error naming execve, not exit 1', async () => {
    try {
      await run(['/nonexistent/modelguard-command'], { stdio: 'pipe' });
      assert.unreachable('should have thrown');
    } catch (e) {
      const err = e as { code: string; context: { step: string }; result: { failed: boolean } };
      assert.is(err.code, 'SANDBOX_SETUP');
      assert.is(err.context.step, 'execve');
      assert.is(err.result.failed, true);
    }
  });

  test('the report JSON has the contract’s fields', async () => {
    const r = await run([probe(), 'exec', '/bin/true'], { stdio: 'pipe' });
    for (const k of ['command', 'profile', 'exitCode', 'signal', 'durationMs', 'walls', 'events', 'summary']) assert.ok(k in r, k);
    const ev = r.events[0]!;
    for (const k of ['time', 'pid', 'syscall', 'action', 'args']) assert.ok(k in ev, k);
    assert.is(r.walls.notify, true);
    assert.is(r.walls.noNewPrivs, true);
    assert.ok(r.walls.landlock >= 1);
    writeFileSync(join(tempDir('json'), 'r.json'), JSON.stringify(r));
  });


  test('followPath() walks a path as the kernel does: relative and absolute links, .., a missing tail, a loop', () => {
    const d = tempDir('follow');
    mkdirSync(join(d, 'real', 'sub'), { recursive: true });
    symlinkSync('real/sub', join(d, 'rel'));
    symlinkSync(join(d, 'real'), join(d, 'abs'));
    symlinkSync('../outside-file', join(d, 'real', 'up'));
    symlinkSync('loop', join(d, 'loop'));
    assert.equal(followPath('', join(d, 'rel', 'new.txt'), true), { path: join(d, 'real', 'sub', 'new.txt'), viaLink: true });
    assert.equal(followPath('', join(d, 'abs', 'sub', '..', 'x'), true), { path: join(d, 'real', 'x'), viaLink: true });
    assert.equal(followPath('', join(d, 'real', 'up'), true), { path: join(d, 'outside-file'), viaLink: true });
    assert.equal(followPath('', join(d, 'real', 'up'), false), { path: join(d, 'real', 'up'), viaLink: false }, 'unlink, rename… act on the link itself');
    assert.equal(followPath('', join(d, 'real', 'plain'), true), { path: join(d, 'real', 'plain'), viaLink: false });
    assert.is(followPath('', join(d, 'loop', 'x'), true), undefined);
  });

  // ---- issue 11: what the child can take, and a report that cannot be blinded ----
  // Every attack here runs inside `unshare -n` (guardRun's netns) with its victim files in a temp folder.

  type Report11 = Omit<ReportJson, 'events' | 'summary' | 'walls'> & {
    walls: { env: string[]; envHeldBack: number; read: string[] | 'everywhere'; tmp: string; limits: { memory: number; memoryHow: string; disk: number } | null };
    limitsHit?: string[];
    events: (ReportJson['events'][number] & { count?: number; resolvedPath?: string; reason?: string })[];
    summary: ReportJson['summary'] & { events: number; distinct: number; unlisted?: { distinct: number } };
  };
  const rep = (r: { report: ReportJson | null }): Report11 => r.report as unknown as Report11;
  /** The size of the report file `guard run --report` writes (pretty JSON and a newline). */
  const reportBytes = (r: { report: ReportJson | null }): number => Buffer.byteLength(`${JSON.stringify(r.report, null, 2)}\n`);

  // Each attack under both profiles, and with the network denied without a namespace (--no-netns) too.
  for (const [profile, netnsFlag] of [['inference', []], ['loader', ['--no-netns']]] as const) {
    test(`${profile}${netnsFlag.length ? ' --no-netns' : ''}: tokens in the environment never reach the command; --env passes one by its exact name; the report names what passed`, () => {
      const env = { ...process.env, HF_TOKEN: 'hf_secret', AWS_SECRET_ACCESS_KEY: 'aws-secret', GITHUB_TOKEN: 'gh', MY_SERVICE_API_KEY: 'k', CUDA_SECRET_TOKEN: 'c', OMP_NUM_THREADS: '3', LC_ALL: 'C.UTF-8', MG_PLAIN: 'plain' };
      const show = 'import os, json; print(json.dumps(dict(os.environ)))';
      const r = guardRun(['--profile', profile, ...netnsFlag, '--env', 'MG_PLAIN', '--env', 'MG_SET=value'], [PYTHON, '-c', show], { netns: true, env });
      assert.is(r.status, 0, r.stderr);
      const seen = JSON.parse(r.stdout) as Record<string, string>;
      for (const k of ['HF_TOKEN', 'AWS_SECRET_ACCESS_KEY', 'GITHUB_TOKEN', 'MY_SERVICE_API_KEY', 'CUDA_SECRET_TOKEN']) assert.not.ok(k in seen, `${k} reached the command`);
      assert.not.match(r.stdout, /hf_secret|aws-secret/);
      assert.equal([seen.OMP_NUM_THREADS, seen.LC_ALL, seen.MG_PLAIN, seen.MG_SET], ['3', 'C.UTF-8', 'plain', 'value']);
      assert.is(seen.HOME, seen.TMPDIR, 'the command’s home is its private temporary folder');
      const w = rep(r).walls;
      assert.ok(w.env.includes('MG_PLAIN') && !w.env.includes('HF_TOKEN'));
      assert.ok(w.envHeldBack >= 5);
      const named = guardRun(['--profile', profile, '--env', 'HF_TOKEN'], [PYTHON, '-c', show], { netns: true, env });
      assert.is((JSON.parse(named.stdout) as Record<string, string>).HF_TOKEN, 'hf_secret', 'named exactly, it passes');
    });

    test(`${profile}${netnsFlag.length ? ' --no-netns' : ''}: secrets in the home folder (~/.ssh, ~/.aws, the Hugging Face token) and /etc/shadow cannot be read; the report says what may be read`, () => {
      const home = tempDir('home');
      const secrets = [join(home, '.ssh', 'id_ed25519'), join(home, '.aws', 'credentials'), join(home, '.cache', 'huggingface', 'token')];
      for (const f of secrets) {
        mkdirSync(dirname(f), { recursive: true });
        writeFileSync(f, 'TOP-SECRET-MATERIAL');
      }
      // The paths are in the script's text, not on the command line (paths named there are readable).
      const script = `import os\nfor p in ${JSON.stringify([...secrets, '/etc/shadow', home])}:\n  try:\n    print(p, 'READ', open(p).read() if os.path.isfile(p) else os.listdir(p))\n  except OSError as e: print(p, 'errno', e.errno)\nprint('hostname', bool(open('/etc/hostname').read()), 'cpuinfo', bool(open('/proc/cpuinfo').read(64)))`;
      const r = guardRun(['--profile', profile, ...netnsFlag], [PYTHON, '-c', script], { netns: true, env: { ...process.env, HOME: home } });
      assert.is(r.status, 0, r.stderr);
      assert.not.match(r.stdout, 'TOP-SECRET-MATERIAL');
      assert.not.match(r.stdout, ' READ ');
      for (const p of [...secrets, '/etc/shadow', home]) assert.match(r.stdout, `${p} errno 13`);
      assert.match(r.stdout, 'hostname True cpuinfo True', 'system files stay readable');
      const read = rep(r).walls.read;
      assert.ok(Array.isArray(read), 'reads are confined');
      assert.not.ok((read as string[]).some((p) => p === home || p.startsWith(`${home}/`) || p === '/' || p === '/etc/shadow'), 'nothing under the home folder is granted');
      assert.ok((read as string[]).includes(PYTHON), 'the interpreter is');
    });

    test(`${profile}${netnsFlag.length ? ' --no-netns' : ''}: /dev/shm and $TMPDIR are the run's own (a private tmpfs): what the command leaves there is gone afterwards`, () => {
      const name = `mg-leftover-${process.pid}-${Date.now()}`;
      const script = `import os\nopen('/dev/shm/${name}', 'w').write('x')\nopen(os.environ['TMPDIR'] + '/${name}', 'w').write('x')\nprint('wrote', sorted(os.listdir('/dev/shm')))`;
      const r = guardRun(['--profile', profile, ...netnsFlag], [PYTHON, '-c', script], { netns: true });
      assert.is(r.status, 0, r.stderr);
      assert.match(r.stdout, `wrote ['${name}']`, 'the command sees an empty /dev/shm of its own');
      assert.not.ok(existsSync(`/dev/shm/${name}`), 'nothing outlives the run');
      assert.is(rep(r).walls.tmp, 'private');
      assert.ok(rep(r).events.some((e) => e.path === `/dev/shm/${name}`), 'the write is in the report');
    });

    test(`${profile}${netnsFlag.length ? ' --no-netns' : ''}: a write through a symbolic link in $TMPDIR to a file outside is refused, and reported as refused, with the file it led to`, () => {
      const victim = tempDir('linkvictim');
      const target = join(victim, 'via-link');
      const r = guardRun(['--profile', profile, ...netnsFlag], [probe(), 'linkwrite', 'innocent', target], { netns: true });
      assert.match(r.stdout, 'linkwrite errno=EACCES');
      assert.not.ok(existsSync(target), 'the file was not created');
      const open = rep(r).events.find((e) => e.syscall === 'openat' && e.path?.endsWith('/innocent'))!;
      assert.ok(open, JSON.stringify(rep(r).events));
      assert.equal([open.action, open.resolvedPath, open.errno], ['denied', target, 'EACCES']);
      assert.ok(rep(r).summary.blockedWrites.includes(target));
      assert.match(r.stderr, `write through a symbolic link: `);
      assert.match(r.stderr, `→ ${target} (denied)`);
    });
  }

  test('a memory hog beyond --memory is stopped by the kernel, and the report says the ceiling was reached', () => {
    const r = guardRun(['--memory', '256M'], [probe(), 'hog', '2048'], { netns: true });
    assert.not.match(r.stdout, 'reached=2048');
    assert.is(r.status, 137, r.stderr);
    const x = rep(r);
    assert.equal([x.walls.limits?.memory, x.walls.limits?.memoryHow], [256 * 1024 ** 2, 'cgroup']);
    assert.ok(x.limitsHit?.some((h) => h.startsWith('memory ceiling of 256 MiB')), JSON.stringify(x.limitsHit));
    assert.match(r.stderr, 'LIMIT REACHED: memory ceiling');
  });

  test('filling the disk beyond --disk fails (private tmpfs quota, RLIMIT_FSIZE), and the report says the quota was reached', () => {
    const script = "import os, errno\nn = 0\nchunk = b'x' * (1 << 20)\ntry:\n  for i in range(64):\n    with open(os.path.join(os.environ['TMPDIR'], 'f%d' % i), 'wb') as f:\n      for j in range(8):\n        f.write(chunk); f.flush(); n += 1\nexcept OSError as e: print('stopped errno', errno.errorcode[e.errno], 'after MiB', n)\nelse: print('filled', n)";
    const r = guardRun(['--disk', '32M'], [PYTHON, '-c', script], { netns: true });
    assert.match(r.stdout, /stopped errno (ENOSPC|EFBIG) after MiB (\d+)/, r.stdout + r.stderr);
    assert.ok(Number(/after MiB (\d+)/.exec(r.stdout)![1]) <= 32);
    const x = rep(r);
    assert.is(x.walls.limits?.disk, 32 * 1024 ** 2);
    assert.ok(x.limitsHit?.some((h) => h.startsWith('disk quota of 32 MiB')), JSON.stringify(x.limitsHit));
    assert.match(r.stderr, 'LIMIT REACHED: disk quota');
    const shm = guardRun(['--disk', '16M'], [probe(), 'fill', '/dev/shm/mg-fill', '512'], { netns: true });
    assert.match(shm.stdout, /fill wrote=(\d+) MiB errno=(ENOSPC|EFBIG)/);
    assert.ok(rep(shm).limitsHit?.some((h) => h.includes('/dev/shm')), JSON.stringify(rep(shm).limitsHit));
  });

  test('a burst of 150,000 junk calls cannot hide an exec, a DNS lookup and a write made after it', () => {
    const victim = tempDir('burst');
    const marker = join(victim, 'after-burst');
    const name = 'after-burst.modelguard-test.invalid';
    const r = guardRun([], [probe(), 'burst', '150000', '/bin/echo', name, marker], { netns: true, timeout: 600_000 });
    assert.match(r.stdout, 'burst done n=150000');
    assert.not.match(r.stdout, 'burst-exec-ran');
    assert.not.ok(existsSync(marker));
    const x = rep(r);
    assert.ok(x.summary.events >= 150_000, String(x.summary.events));
    assert.ok(x.summary.distinct < 100, `folded into ${x.summary.distinct} distinct attempts`);
    assert.equal(x.summary.blockedExecs.map((e) => e.argv), [['/bin/echo', 'burst-exec-ran']]);
    assert.ok(x.summary.dnsNames.includes(name));
    assert.ok(x.summary.blockedWrites.includes(marker));
    assert.is(x.events.find((e) => e.syscall === 'syslog')!.count, 150_000, 'the junk is one event with its count');
    assert.match(r.stderr, 'blocked exec: /bin/echo');
    assert.match(r.stderr, `DNS names: ${name}`);
    assert.match(r.stderr, `blocked write: ${marker}`);
  });

  test('10,000 identical denied calls make one event with a count: the JSON report stays under 10 KB', () => {
    const r = guardRun([], [probe(), 'repeat', '10000'], { netns: true });
    assert.match(r.stdout, 'repeat n=10000 denied=10000');
    const size = reportBytes(r);
    console.log(`  report size for 10,000 identical denied calls: ${size} bytes`);
    assert.ok(size < 10 * 1024, `${size} bytes`);
    assert.equal(rep(r).events.filter((e) => e.syscall === 'syslog').map((e) => e.count), [10_000]);
  });

  test('a path with newlines and ANSI escapes cannot forge the text summary', () => {
    const victim = tempDir('forge');
    const forged = `${victim}/x\n  events: 0 (0 denied, 0 allowed, 0 killed)\n  nothing was attempted beyond what the profile allows silently\u001b[2J\u001b[H\u009b31m`;
    const r = guardRun([], [probe(), 'write', forged], { netns: true });
    assert.match(r.stdout, 'write errno=EPERM');
    assert.not.match(r.stderr, '\u001b');
    assert.not.match(r.stderr, '\u009b');
    assert.not.match(r.stderr, /^\s+nothing was attempted/m);
    assert.not.match(r.stderr, /^\s+events: 0/m);
    assert.match(r.stderr, `blocked write: ${victim}/x\\n  events: 0`);
    assert.match(r.stderr, '\\e[2J\\e[H\\x9b31m');
    assert.ok(rep(r).summary.blockedWrites.includes(forged), 'the JSON keeps the path exactly');
  });

  test.run();
}
