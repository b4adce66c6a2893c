import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseEntrypointArgs } from '../../src/cli/entrypoint.js';
import { expandScanTargets } from '../../src/sandbox/entrypoint.js';
import { CLI, probe, processesMatching, PYTHON, ROOT, skipReason, tempDir } from '../sandbox/helpers.js';
import { HANG_GUARD_MS } from '../helpers/budget.js';

test('reads MODELGUARD_* variables; flags win', () => {
  const env = { MODELGUARD_PROFILE: 'loader', MODELGUARD_SCAN: '/models/*.pt, /m/x.bin', MODELGUARD_FAIL_ON: 'malicious', MODELGUARD_REPORT: '-', MODELGUARD_ALLOW_NET: '192.0.2.1:80 192.0.2.2:443', MODELGUARD_WRITE: '/tmp/a:/tmp/b' };
  const p = parseEntrypointArgs(['--', 'python3', 'serve.py'], env);
  assert.equal([p.profile, p.scan, p.failOn, p.report, p.allowNet, p.write, p.command], ['loader', ['/models/*.pt', '/m/x.bin'], 'malicious', '-', ['192.0.2.1:80', '192.0.2.2:443'], ['/tmp/a', '/tmp/b'], ['python3', 'serve.py']]);
  const q = parseEntrypointArgs(['--profile', 'audit', '--scan', '/x', '--fail-on', 'invalid', '--', 'cmd'], env);
  assert.equal([q.profile, q.scan, q.failOn], ['audit', ['/x'], 'invalid']);
  assert.throws(() => parseEntrypointArgs(['--', 'x'], { MODELGUARD_FAIL_ON: 'bad' }), /fail-on must be/);
});

test('expands globs in scan targets', () => {
  const dir = tempDir('glob');
  for (const f of ['a.pt', 'b.pt', 'c.txt']) writeFileSync(join(dir, f), 'x');
  assert.equal(expandScanTargets([join(dir, '*.pt')]), [join(dir, 'a.pt'), join(dir, 'b.pt')]);
  assert.equal(expandScanTargets([join(dir, '**', 'c.*')]), [join(dir, 'c.txt')]);
  assert.throws(() => expandScanTargets([join(dir, '*.gguf')]), /matches no file/);
});

const skip = skipReason();
if (skip) {
  console.log(`skip: ${skip}`);
} else {
  /** Starts guard entrypoint as PID 1 of a new PID namespace (`unshare --pid --fork --mount-proc`). */
  function asPid1(args: string[], env: NodeJS.ProcessEnv = {}, netns = false): { child: ChildProcess; out: () => string; err: () => string; exit: Promise<number | null> } {
    const flags = [...(netns ? ['-n'] : []), '--pid', '--fork', '--mount-proc'];
    const child = spawn('unshare', [...flags, process.execPath, CLI, 'entrypoint', ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    const exit = new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
    return { child, out: () => out, err: () => err, exit };
  }
  const waitFor = async (fn: () => boolean, ms = HANG_GUARD_MS): Promise<void> => {
    const end = Date.now() + ms;
    while (!fn()) {
      if (Date.now() > end) throw new Error('timed out');
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  /** Host PID of guard (PID 1 inside): the only child of `unshare --fork`. */
  const guardPid = (unsharePid: number): number => Number(readFileSync(`/proc/${unsharePid}/task/${unsharePid}/children`, 'utf8').trim());

  const SERVER = `import os, signal, sys, time
def stop(sig, frame):
    print("handler ran for", sig, flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
print("pid1 is", open("/proc/1/cmdline").read().split("\\0")[1:3], flush=True)
print("ready", flush=True)
time.sleep(60)
`;

  test('SIGTERM to guard as PID 1 reaches the server, whose handler runs; guard exits 0', async () => {
    const dir = tempDir('ep-term');
    const report = join(dir, 'report.json');
    const g = asPid1(['--report', report, '--', PYTHON, '-c', SERVER]);
    await waitFor(() => g.out().includes('ready'));
    assert.match(g.out(), /pid1 is \[.*main\.js', 'entrypoint'\]/);
    process.kill(guardPid(g.child.pid!), 'SIGTERM');
    assert.is(await g.exit, 0, g.err());
    assert.match(g.out(), 'handler ran for 15');
    assert.is(JSON.parse(readFileSync(report, 'utf8')).exitCode, 0);
  });

  test('a server killed by SIGKILL makes guard exit 137', async () => {
    const tag = `mg-sigkill-${process.pid}-${Date.now()}`;
    const g = asPid1(['--', PYTHON, '-c', `import time, sys\nprint("ready", flush=True)\ntime.sleep(60)\n`, tag]);
    await waitFor(() => g.out().includes('ready'));
    const pids = processesMatching(tag).filter((p) => readFileSync(`/proc/${p}/comm`, 'utf8').startsWith('python'));
    assert.is(pids.length, 1);
    process.kill(pids[0]!, 'SIGKILL');
    assert.is(await g.exit, 137);
  });

  const ORPHANS = `import os, time
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    if os.fork() == 0:
        os.write(w, str(os.getpid()).encode())
        time.sleep(0.3)
        os._exit(0)
    os._exit(0)
os.waitpid(pid, 0)          # our own child is reaped by us; the grandchild is now an orphan
orphan = int(os.read(r, 32))
time.sleep(1.2)             # the orphan has exited by now
try:
    st = open("/proc/%d/stat" % orphan).read()
    state = st[st.rindex(")") + 2]
except OSError:
    state = "gone"
zombies = []
for p in os.listdir("/proc"):
    if p.isdigit():
        try:
            st = open("/proc/%s/stat" % p).read()
            if st[st.rindex(")") + 2] == "Z":
                zombies.append(p)
        except OSError:
            pass
print("orphan", state, flush=True)
print("zombies", zombies, flush=True)
`;

  test('an orphaned grandchild is reaped while guard runs (PID 1)', async () => {
    const g = asPid1(['--', PYTHON, '-c', ORPHANS]);
    assert.is(await g.exit, 0, g.err());
    assert.match(g.out(), 'orphan gone');
    assert.match(g.out(), 'zombies []'); // the whole PID namespace holds no zombie
  });

  test('an orphaned grandchild is reaped when guard is not PID 1 (subreaper)', () => {
    const r = spawnSync(process.execPath, [CLI, 'entrypoint', '--', PYTHON, '-c', ORPHANS], { encoding: 'utf8' });
    assert.is(r.status, 0, r.stderr);
    assert.match(r.stdout, 'orphan gone');
  });

  function models(): { evil: string; clean: string; dir: string } {
    const dir = tempDir('ep-models');
    const evil = join(dir, 'evil.pkl');
    const clean = join(dir, 'clean.pt');
    // Built, never loaded: the payload is harmless anyway (echo).
    const mk = spawnSync(PYTHON, ['-c', `import os, pickle, sys, torch
class P:
    def __reduce__(self):
        return (os.system, ("echo PWNED",))
open(sys.argv[1], "wb").write(pickle.dumps({"w": 1, "p": P()}))
torch.save({"w": torch.ones(4)}, sys.argv[2])
`, evil, clean], { encoding: 'utf8' });
    assert.is(mk.status, 0, mk.stderr);
    return { evil, clean, dir };
  }

  test('a malicious model under MODELGUARD_SCAN stops the start with exit 3 and the report', async () => {
    const m = models();
    const report = join(m.dir, 'report.json');
    const g = asPid1(['--', '/bin/echo', 'SERVER-STARTED'], { MODELGUARD_SCAN: join(m.dir, '*'), MODELGUARD_REPORT: report });
    assert.is(await g.exit, 3, g.err());
    assert.not.match(g.out(), 'SERVER-STARTED');
    assert.match(g.err(), 'refusing to start');
    assert.match(g.err(), 'os.system');
    const r = JSON.parse(readFileSync(report, 'utf8')) as { exitCode: number; gate: { refused: boolean; failing: { path: string; verdict: string }[] } };
    assert.is(r.exitCode, 3);
    assert.is(r.gate.refused, true);
    assert.equal(r.gate.failing, [{ path: m.evil, verdict: 'malicious' }]);
  });

  test('a clean model under MODELGUARD_SCAN lets the command start', async () => {
    const m = models();
    const g = asPid1(['--', '/bin/echo', 'SERVER-STARTED'], { MODELGUARD_SCAN: m.clean, MODELGUARD_REPORT: '-' });
    assert.is(await g.exit, 0, g.err());
    assert.match(g.out(), 'SERVER-STARTED');
    const line = g.out().split('\n').find((l) => l.startsWith('{'))!;
    const r = JSON.parse(line) as { gate: { refused: boolean; scanned: number }; exitCode: number };
    assert.equal([r.gate.refused, r.gate.scanned, r.exitCode], [false, 1, 0]);
  });

  test('an egress attempt by the server appears in the exit report (MODELGUARD_REPORT)', async () => {
    const dir = tempDir('ep-egress');
    const report = join(dir, 'exit-report.json');
    // The whole container stand-in runs in a network namespace this test creates (unshare -n).
    const g = asPid1(['--', probe(), 'connect4', '203.0.113.80', '443'], { MODELGUARD_REPORT: report }, true);
    assert.is(await g.exit, 111, g.err());
    const r = JSON.parse(readFileSync(report, 'utf8')) as { summary: { egress: string[] }; events: { syscall: string; action: string; egress?: { address: string; port: number } }[] };
    assert.ok(r.summary.egress.includes('tcp 203.0.113.80:443'));
    const ev = r.events.find((e) => e.syscall === 'connect')!;
    assert.equal([ev.action, ev.egress!.address, ev.egress!.port], ['denied', '203.0.113.80', 443]);
  });

  test('signals other than TERM are forwarded too (SIGUSR1, SIGHUP)', async () => {
    const prog = `import signal, sys, time
got = []
signal.signal(signal.SIGUSR1, lambda s, f: (got.append(s), print("usr1", flush=True)))
signal.signal(signal.SIGHUP, lambda s, f: (print("got", got + [s], flush=True), sys.exit(0)))
print("ready", flush=True)
time.sleep(60)
`;
    const g = asPid1(['--', PYTHON, '-c', prog]);
    await waitFor(() => g.out().includes('ready'));
    const pid = guardPid(g.child.pid!);
    process.kill(pid, 'SIGUSR1');
    // The program says when SIGUSR1 arrived: a fixed pause could end first on a busy machine.
    await waitFor(() => g.out().includes('usr1'));
    process.kill(pid, 'SIGHUP');
    assert.is(await g.exit, 0, g.err());
    assert.match(g.out(), 'got [10, 1]');
  });
  // ---- issue 16: `podman run IMAGE guard entrypoint -- CMD` runs guard entrypoint inside guard entrypoint ----
  test('guard entrypoint inside guard entrypoint (as PID 1, in its own network namespace): one line saying what to type, exit 2', async () => {
    const dir = tempDir('nest-ep');
    const marker = join(dir, 'ran');
    const GUARD_BIN = join(ROOT, 'bin', 'guard');
    const g = asPid1(['--', GUARD_BIN, 'entrypoint', '--', PYTHON, '-c', `open(${JSON.stringify(marker)}, "w")`], {}, true);
    const code = await g.exit;
    assert.is(code, 2, g.err());
    assert.not.ok(existsSync(marker), 'the inner command ran');
    const lines = g.err().split('\n').filter((l) => l.includes('already inside'));
    assert.is(lines.length, 1, g.err());
    assert.match(lines[0]!, "guard entrypoint: already inside guard's walls (profile inference), where guard cannot start again: give the image only the command (`podman run IMAGE");
    assert.match(lines[0]!, `${PYTHON} -c`);
  });
}

test.run();
