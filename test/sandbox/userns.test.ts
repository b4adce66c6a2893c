/**
 * Without CAP_SYS_ADMIN (root in a container the runtime gave none: podman's default), guard-exec
 * makes the network and mount namespaces inside a user namespace of the run's own. Here the
 * capability is taken away with `setpriv --bounding-set -sys_admin` (root's next execve then lacks
 * it), inside a network namespace this test creates first (`unshare -n`), so the probes' attempts
 * stay local either way. test/container/container.test.ts runs the same under podman itself.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { HANG_GUARD_MS } from '../helpers/budget.js';
import { CLI, hasUnshare, probe, PYTHON, tempDir, type ReportJson } from './helpers.js';

function withoutSysAdmin(guardArgs: string[], cmd: string[]): { status: number | null; stdout: string; stderr: string; report: ReportJson & { walls: { userNamespace?: boolean; tmp?: string; network?: string; dnsSink?: boolean } } } {
  const report = join(tempDir('userns'), 'report.json');
  const r = spawnSync('unshare', ['-n', 'setpriv', '--bounding-set', '-sys_admin', process.execPath, CLI, 'run', '--report', report, ...guardArgs, '--', ...cmd], { encoding: 'utf8', timeout: HANG_GUARD_MS });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr, report: JSON.parse(readFileSync(report, 'utf8')) };
}

const usable = process.getuid?.() === 0 && hasUnshare() && spawnSync('setpriv', ['--bounding-set', '-sys_admin', 'unshare', '-U', 'true']).status === 0;
if (!usable) {
  console.log('skip: needs root, unshare -n, setpriv and unprivileged user namespaces');
  test.skip('userns', () => {});
} else {
  test('without CAP_SYS_ADMIN: a network namespace with the DNS sink and a private /tmp, inside a user namespace; egress refused and reported', () => {
    const r = withoutSysAdmin([], [probe(), 'connect4', '192.0.2.1', '80']);
    assert.match(r.stdout, 'connect4 errno=E', r.stderr);
    const w = r.report.walls;
    assert.equal([w.network, w.userNamespace, w.dnsSink, w.tmp], ['netns', true, true, 'private']);
    assert.match(r.stderr, 'network netns (in a user namespace, DNS sink)');
    assert.ok(r.report.events.some((e) => e.syscall === 'connect' && e.action === 'denied' && e.egress?.address === '192.0.2.1'));
  });

  test('without CAP_SYS_ADMIN: ids read the same inside, no capability reaches the command, and a lookup lands in the sink', () => {
    const script = 'import os\nprint("ids", os.getuid(), os.getgid(), os.stat("/usr").st_uid)\nprint("caps", [l.split()[1] for l in open("/proc/self/status") if l.startswith(("CapEff", "CapBnd"))])';
    const r = withoutSysAdmin([], [PYTHON, '-c', script]);
    assert.is(r.status, 0, r.stderr);
    assert.match(r.stdout, 'ids 0 0 0');
    assert.match(r.stdout, "caps ['0000000000000000', '0000000000000000']");
    const d = withoutSysAdmin([], [probe(), 'getaddrinfo', 'exfil.example.invalid']);
    assert.ok(d.report.summary.dnsNames.some((n) => n.includes('exfil.example.invalid')), JSON.stringify(d.report.summary));
  });
}

test.run();
