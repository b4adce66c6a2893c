/**
 * The entrypoint where users deploy it (issue 16): `guard entrypoint` as the ENTRYPOINT of an image
 * run by podman with runc, under each security option a user may pick. Needs the test image that
 * `npm run test:container` (scripts/test-container.sh) builds; without MODELGUARD_CONTAINER_IMAGE
 * this suite skips (plain `npm test` does not build images).
 *
 * In each mode: the model gate (a malicious pickle: exit 3 and the scan report; a clean model: the
 * server starts and answers), the walls line guard prints, the attack probes of issue 11 run inside
 * the running container (test/container/inside.ts: each attack fails and is reported), and
 * `podman stop` (SIGTERM to guard as PID 1): a clean exit and a written report.
 *
 * Every container runs with `--network none`: a network namespace of its own, made by podman for
 * this test, holding only loopback. The probes' targets are documentation addresses, `.invalid`
 * names and sockets made inside the container.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, tempDir } from '../sandbox/helpers.js';

const IMAGE = process.env.MODELGUARD_CONTAINER_IMAGE;
/** Bound on one podman call; the probe run inside a container is the longest (races included). */
const PODMAN_TIMEOUT_MS = 15 * 60 * 1000;
/** The bound the runtime's cgroup gets (`--pids-limit`), which guard reports when it cannot make its own. */
const PIDS_LIMIT = 700;

const DOCKER_PROFILE = join(ROOT, 'test', 'fixtures', 'sandbox', 'docker-default.json');

interface Mode {
  name: string;
  flags: string[];
}
const MODES: Mode[] = [
  { name: 'default', flags: [] },
  // Docker's default profile (the fixture is moby's profiles/seccomp/default.json): it refuses
  // unshare(CLONE_NEWUSER) without CAP_SYS_ADMIN, so no namespace of guard's own, and pidfd_getfd
  // without CAP_SYS_PTRACE, so the supervisor could make no permitted bind or connect: with that
  // one capability added (guard drops it before the server starts), checked without it below.
  { name: 'docker-default-seccomp', flags: ['--security-opt', `seccomp=${DOCKER_PROFILE}`, '--cap-add', 'SYS_PTRACE'] },
  { name: 'seccomp=unconfined', flags: ['--security-opt', 'seccomp=unconfined'] },
  { name: 'cap-add SYS_ADMIN', flags: ['--cap-add', 'SYS_ADMIN'] },
  { name: 'cap-add SYS_ADMIN,NET_ADMIN', flags: ['--cap-add', 'SYS_ADMIN,NET_ADMIN'] },
  { name: 'privileged', flags: ['--privileged'] },
].filter((m) => !process.env.MODELGUARD_CONTAINER_MODES || process.env.MODELGUARD_CONTAINER_MODES.split(',').includes(m.name.replace(/^cap-add /, '')));

function podman(args: string[], timeout = PODMAN_TIMEOUT_MS): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync('podman', args, { encoding: 'utf8', timeout, maxBuffer: 64 * 1024 * 1024 });
  return { status: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

/** The walls line and its `not here` line, as guard printed them. */
function wallsLines(text: string): string {
  return text.split('\n').filter((l) => /^\s+(walls|not here):/.test(l)).map((l) => l.trim()).join('\n');
}

if (!IMAGE) {
  console.log('skip: no test image (run `npm run test:container`, which builds one)');
  test.skip('container', () => {});
  test.run();
} else {
  const models = tempDir('ct-models');
  const evil = join(models, 'evil.pkl');
  const clean = join(models, 'clean.pkl');
  // Built, never loaded: the payload is harmless anyway (echo).
  const mk = spawnSync('/usr/bin/python3', ['-c', `import os, pickle, sys
class P:
    def __reduce__(self):
        return (os.system, ("echo PWNED",))
open(sys.argv[1], "wb").write(pickle.dumps({"w": 1, "p": P()}))
open(sys.argv[2], "wb").write(pickle.dumps({"w": [1.0, 2.0, 3.0], "step": 7}))
`, evil, clean], { encoding: 'utf8' });
  if (mk.status !== 0) throw new Error(mk.stderr);
  // A tiny server: what the image serves is beside the point, the walls and the gate are.
  const SERVER = `import http.server, signal, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(b"served")
    def log_message(self, *a): pass
s = http.server.HTTPServer(("127.0.0.1", 8000), H)
signal.signal(signal.SIGTERM, lambda n, f: (print("server got SIGTERM", flush=True), sys.exit(0)))
print("server ready", flush=True)
s.serve_forever()
`;
  const common = ['--network', 'none', '--pids-limit', String(PIDS_LIMIT)];
  const seen: string[] = [];

  for (const mode of MODES) {
    const name = `mg-ci-${process.pid}-${mode.name.replace(/[^a-z0-9]+/gi, '-').toLowerCase()}`;
    const reports = tempDir('ct-reports');
    chmodSync(reports, 0o777);
    const base = [...common, ...mode.flags, '-v', `${reports}:/reports`];

    test(`[${mode.name}] a malicious model stops the start: exit 3, the scan report names os.system`, () => {
      const r = podman(['run', '--rm', ...base, '-v', `${evil}:/models/evil.pkl:ro`, '-e', 'MODELGUARD_SCAN=/models', '-e', 'MODELGUARD_REPORT=/reports/gate.json', IMAGE, '/bin/echo', 'SERVER-STARTED']);
      assert.is(r.status, 3, r.stderr);
      assert.not.match(r.stdout, 'SERVER-STARTED');
      assert.match(r.stderr, 'refusing to start');
      assert.match(r.stderr, 'os.system');
      const rep = JSON.parse(readFileSync(join(reports, 'gate.json'), 'utf8')) as { exitCode: number; gate: { refused: boolean; failing: { path: string; verdict: string }[] } };
      assert.equal([rep.exitCode, rep.gate.refused, rep.gate.failing], [3, true, [{ path: '/models/evil.pkl', verdict: 'malicious' }]]);
    });

    test(`[${mode.name}] a clean model: the server starts behind the walls and answers`, () => {
      const r = podman(['run', '-d', '--name', name, ...base, '-v', `${clean}:/models/model.pkl:ro`, '-e', 'MODELGUARD_SCAN=/models', '-e', 'MODELGUARD_ALLOW_NET=*:8000', '-e', 'MODELGUARD_REPORT=/reports/serve.json', IMAGE, '/usr/bin/python3', '-c', SERVER]);
      assert.is(r.status, 0, r.stderr);
      let answer = '';
      for (let i = 0; i < 300 && answer !== 'served'; i++) {
        const a = podman(['exec', name, '/usr/bin/python3', '-c', 'import urllib.request; print(urllib.request.urlopen("http://127.0.0.1:8000/", timeout=2).read().decode(), end="")'], 60_000);
        answer = a.stdout;
        if (answer !== 'served') {
          const st = podman(['inspect', name, '--format', '{{.State.Running}}']);
          if (st.stdout.trim() !== 'true') break;
          spawnSync('sleep', ['0.2']);
        }
      }
      const logs = podman(['logs', name]);
      const out = logs.stdout + logs.stderr;
      assert.is(answer, 'served', out);
      // Said at start, in the log: the gate's verdict and the walls up.
      assert.match(out, 'guard entrypoint: scanned 1 file(s), none reached suspicious; starting');
      const line = wallsLines(out);
      seen.push(`[${mode.name}] entrypoint at start (MODELGUARD_ALLOW_NET=*:8000):\n${line}`);
      assert.match(line, /walls: seccomp\+notify, network (netns|seccomp\+landlock)/);
      // A process bound always: guard's own cgroup (--privileged) or the runtime's (--pids-limit).
      assert.match(line, mode.name === 'privileged' ? /cgroup pids\.max=\d+/ : `runtime cgroup pids.max=${PIDS_LIMIT}`);
      assert.not.match(line, 'pids: not bounded');
    });

    test(`[${mode.name}] the attack probes inside the container: each fails and is reported, with and without a network namespace`, () => {
      // Every probe once as `guard run` does by default; the egress probes again with --no-netns
      // (the walls of a served container, which keeps the container's network). In the default
      // mode, which matters most, both; elsewhere the namespace path is the host's (attacks.test.ts).
      const variants = mode.name === 'default' ? 'netns,no-netns' : mode.name.startsWith('docker') ? 'netns' : 'no-netns';
      // A container of their own (same options), so that they do not depend on the server's.
      // Docker's profile refuses AF_VSOCK sockets and clone(CLONE_NEWUSER) itself, before guard's filter is asked.
      const refused = mode.name.startsWith('docker') ? ['-e', 'MG_RUNTIME_REFUSES=vsock,clone-newuser'] : [];
      // The races (the slowest probes: thousands of tries each) where the supervisor's path differs:
      // the default profile and Docker's; with added capabilities it is the default's, less the filter.
      const which = mode.name === 'default' || mode.name.startsWith('docker') ? [] : ['^(?!races)'];
      const r = podman(['run', '--rm', ...base, ...refused, '--entrypoint', 'node', IMAGE, '/opt/modelguard/dist/test/container/inside.js', variants, ...which]);
      const lines = r.stdout.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { probe: string; variant: string; problems: string[]; walls?: Record<string, unknown>; stderr?: string });
      assert.ok(lines.length >= (variants === 'netns,no-netns' ? 17 : variants === 'netns' ? 11 : 5), `${r.stdout}${r.stderr}`);
      for (const v of new Set(lines.map((l) => l.variant))) {
        const w = lines.find((l) => l.variant === v)?.walls;
        seen.push(`[${mode.name}] guard run inside (inference, ${v}): network ${String(w?.network)}${w?.userNamespace ? ' in a user namespace' : ''}, dnsSink ${String(w?.dnsSink)}, tmp ${String(w?.tmp)}, landlock ${String(w?.landlock)}, pids ${String(w?.pids)}; not here: ${JSON.stringify(w?.unavailable ?? [])}`);
        if (v === 'no-netns') assert.is(w?.network, 'seccomp+landlock');
        // Docker's profile refuses the user namespace too: the line names what would give one.
        if (mode.name.startsWith('docker') && v === 'netns') {
          assert.is(w?.network, 'seccomp+landlock');
          assert.ok((w?.unavailable as string[] | undefined)?.some((u) => u.includes('no network namespace: --cap-add SYS_ADMIN, or --security-opt seccomp=unconfined')), JSON.stringify(w?.unavailable));
        }
        if (mode.name === 'default' && v === 'netns') assert.equal([w?.network, w?.userNamespace, w?.dnsSink], ['netns', true, true]);
      }
      const failed = lines.filter((l) => l.problems.length > 0);
      assert.equal(failed.map((l) => `[${l.variant}] ${l.probe}: ${l.problems.join(' | ')} ${l.stderr ?? ''}`), []);
    });

    test(`[${mode.name}] podman stop: SIGTERM reaches the server, guard exits 0 and writes its report; the walls line`, () => {
      const s = podman(['stop', '-t', '60', name]);
      assert.is(s.status, 0, s.stderr);
      const code = podman(['inspect', name, '--format', '{{.State.ExitCode}}']).stdout.trim();
      const logs = podman(['logs', name]);
      podman(['rm', '-f', name]);
      const out = logs.stdout + logs.stderr;
      assert.is(code, '0', out);
      assert.match(out, 'server got SIGTERM');
      const file = join(reports, 'serve.json');
      assert.ok(existsSync(file), out);
      const rep = JSON.parse(readFileSync(file, 'utf8')) as { exitCode: number; gate: { scanned: number }; walls: { network: string; unavailable: string[] } };
      assert.equal([rep.exitCode, rep.gate.scanned], [0, 1]);
      rmSync(reports, { recursive: true, force: true });
      assert.match(wallsLines(out), /walls: seccomp\+notify/);
    });
  }

  test('[docker-default-seccomp without SYS_PTRACE] the walls line says binds and connects cannot be made, and which flag gives them', () => {
    const r = podman(['run', '--rm', ...common, '--security-opt', `seccomp=${DOCKER_PROFILE}`, '-e', 'MODELGUARD_ALLOW_NET=*:8000', IMAGE, '/usr/bin/python3', '-c', 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 8000)); print("bound")']);
    const line = wallsLines(r.stderr);
    seen.push(`[docker-default-seccomp, no SYS_PTRACE] entrypoint at start (MODELGUARD_ALLOW_NET=*:8000):\n${line.split('\n').slice(0, 2).join('\n')}`);
    assert.not.match(r.stdout, 'bound', 'the bind was made');
    assert.match(line, 'not here: network: permitted connects, binds and sends fail too (EBADF)');
    assert.match(line, '--cap-add SYS_PTRACE');
  });

  test('the walls each mode gave (printed for the record)', () => {
    const file = process.env.MODELGUARD_CONTAINER_WALLS;
    if (file) writeFileSync(file, `${seen.join('\n')}\n`);
    console.log(seen.join('\n'));
    rmSync(models, { recursive: true, force: true });
  });

  test.run();
}
