import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { frameFilters, launcherArgs, parseControlLine, type LauncherExit, type LauncherReady } from '../../src/sandbox/launcher.js';
import { loadProfile } from '../../src/sandbox/profile.js';

function parse(line: string): { ready?: LauncherReady; error?: [string, number]; exit?: LauncherExit } {
  const out: { ready?: LauncherReady; error?: [string, number]; exit?: LauncherExit } = {};
  parseControlLine(line, { onReady: (r) => (out.ready = r), onSetupError: (s, e) => (out.error = [s, e]), onExit: (x) => (out.exit = x) });
  return out;
}

test('reads guard-exec\'s L, E and X lines, old and new', () => {
  assert.equal(parse('L 42 scm netns=1 landlock=7 pids=1 sinks=4 mem=cgroup tmp=1').ready, { pid: 42, netns: true, landlock: 7, pidsCgroup: true, sinks: 4, memory: 'cgroup', privateTmp: true, userns: false, getfd: true });
  assert.equal(parse('L 42 scm netns=0 landlock=3 pids=0 sinks=9').ready, { pid: 42, netns: false, landlock: 3, pidsCgroup: false, sinks: 4, memory: 'none', privateTmp: false, userns: false, getfd: true });
  assert.equal(parse('L 42 scm netns=1 landlock=7 pids=0 sinks=2 mem=rlimit tmp=1 userns=1 getfd=0').ready, { pid: 42, netns: true, landlock: 7, pidsCgroup: false, sinks: 2, memory: 'rlimit', privateTmp: true, userns: true, getfd: false });
  assert.equal(parse('E unshare(CLONE_NEWNET) 22').error, ['unshare(CLONE_NEWNET)', 22]);
  assert.equal(parse('X 137 9 - oom=1 mempeak=268435456 tmpfs0=1024/67108864:/tmp/modelguard-run-a%20b').exit, { code: 137, signal: 9, oomKills: 1, memoryPeak: 268435456, tmpfs: [{ used: 1024, size: 67108864, path: '/tmp/modelguard-run-a b' }] });
  assert.equal(parse('X 0 0').exit, { code: 0, signal: 0, oomKills: 0, memoryPeak: 0, tmpfs: [] });
  assert.equal(parse('Z what'), {});
});

test('frames filters as guard-exec reads them: a count, then a length and the bytes of each', () => {
  const f = frameFilters([Buffer.alloc(8, 1), Buffer.alloc(16, 2)]);
  assert.is(f.readUInt32LE(0), 2);
  assert.is(f.readUInt32LE(4), 8);
  assert.is(f.readUInt32LE(16), 16);
  assert.is(f.length, 4 + 4 + 8 + 4 + 16);
});

test('one argument list for run() and the workers: walls as asked, nothing more', () => {
  const profile = loadProfile('loader');
  const worker = launcherArgs({ profile, netns: true, dnsSink: false, netDeny: true, write: ['/dev/null'], read: ['/usr'], allowPorts: [], rlimits: { nofile: 64 }, keepFds: [5] });
  assert.equal(worker, ['--ctl', '3', '--listener-sock', '4', '--keep-fd', '5', '--netns', '--landlock', '--write', '/dev/null', '--read', '/usr', '--landlock-net', '--landlock-scope', '--rlimit', 'nofile=64']);
  const run = launcherArgs({ profile, netns: true, dnsSink: true, netDeny: true, write: ['/tmp/r'], read: undefined, allowPorts: [443], rlimits: {}, pidsMax: 512, memoryMax: 1024, tmpfs: { paths: ['/tmp/r'], orDeny: ['/dev/shm'], size: 4096 }, hold: true });
  for (const a of ['--dns-sinkhole', '--pids-max', '--memory-max', '--hold']) assert.ok(run.includes(a), a);
  assert.equal(run.slice(run.indexOf('--tmpfs'), run.indexOf('--tmpfs') + 4), ['--tmpfs', '/tmp/r=4096', '--tmpfs-or-deny', '/dev/shm=4096']);
});

test.run();
