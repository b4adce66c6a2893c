import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { join } from 'node:path';
import { AUDIT_ARCH_I386, AUDIT_ARCH_X86_64, evaluate } from '../../src/sandbox/bpf.js';
import { compilePolicy, expandArgs } from '../../src/sandbox/filter.js';
import { loadNative } from '../../src/sandbox/native.js';
import { loadProfile, parseProfile } from '../../src/sandbox/profile.js';
import { ROOT, skipReason } from './helpers.js';

const skip = skipReason();
if (skip || process.arch !== 'x64') {
  console.log(`skip: ${skip ?? 'BPF expectations are written for x86_64'}`);
  test.skip('compilePolicy()', () => {});
  test.run();
} else {
  const native = loadNative();
  const nr = (n: string): number => native.resolveSyscall(n);
  const opts = { reportNetwork: true, reportExec: true, reportWrites: true };
  /** The kernel keeps the most severe answer of all installed filters. */
  const PRECEDENCE = ['kill_process', 'kill_thread', 'trap', 'errno', 'notify', 'trace', 'log', 'allow'];
  const combined = (filters: Buffer[], name: string | number, args: bigint[] = [], arch = AUDIT_ARCH_X86_64) => {
    const n = typeof name === 'number' ? name : nr(name);
    const vs = filters.map((f) => evaluate(f, { nr: n, arch, args }));
    vs.sort((a, b) => PRECEDENCE.indexOf(a.action) - PRECEDENCE.indexOf(b.action));
    return vs[0]!;
  };

  test('expandArgs: different indexes AND, a repeated index ORs (runc)', () => {
    const c = (index: number, value: bigint) => ({ index, value, valueTwo: 0n, op: 'SCMP_CMP_EQ' as const });
    const sets = expandArgs([c(1, 1n), c(1, 2n), c(0, 9n)]);
    assert.equal(sets.map((s) => s.map((x) => `${x.index}=${x.a}`)), [['0=9', '1=1'], ['0=9', '1=2']]);
    assert.equal(expandArgs([]), [[]]);
  });

  test('hot syscalls never leave BPF; network, exec and write-opens are notified', () => {
    const { filters } = compilePolicy(native, loadProfile('inference'), opts);
    for (const hot of ['read', 'write', 'futex', 'mmap', 'close', 'epoll_wait', 'clock_gettime']) assert.is(combined(filters, hot).action, 'allow', hot);
    for (const rare of ['connect', 'sendto', 'sendmsg', 'sendmmsg', 'bind', 'listen', 'socket', 'execve', 'execveat']) assert.is(combined(filters, rare).action, 'notify', rare);
    const O_RDONLY = 0n, O_WRONLY = 1n, O_RDWR = 2n, O_CREAT = 0o100n, O_CLOEXEC = 0o2000000n;
    assert.is(combined(filters, 'openat', [0n, 0n, O_RDONLY | O_CLOEXEC]).action, 'allow');
    assert.is(combined(filters, 'openat', [0n, 0n, O_WRONLY | O_CREAT]).action, 'notify');
    assert.is(combined(filters, 'openat', [0n, 0n, O_RDWR]).action, 'notify');
    assert.is(combined(filters, 'openat2').action, 'notify');
  });

  test('always-denied calls reach the supervisor even where the profile allows them', () => {
    const docker = loadProfile(join(ROOT, 'test', 'fixtures', 'sandbox', 'docker-default.json'));
    for (const p of [loadProfile('inference'), loadProfile('audit'), docker]) {
      const { filters } = compilePolicy(native, p, opts);
      for (const n of ['ptrace', 'io_uring_setup', 'io_uring_enter', 'seccomp', 'bpf', 'mount', 'unshare', 'setns', 'userfaultfd', 'perf_event_open', 'keyctl', 'process_vm_readv', 'kexec_load', 'init_module'])
        assert.is(combined(filters, n).action, 'notify', `${p.name}: ${n}`);
      assert.is(combined(filters, 'prctl', [22n]).action, 'notify', 'PR_SET_SECCOMP');
      assert.is(combined(filters, 'prctl', [15n]).action, 'allow', 'PR_SET_NAME');
      assert.is(combined(filters, 'ioctl', [0n, 0x5412n]).action, 'notify', 'TIOCSTI');
      assert.is(combined(filters, 'ioctl', [0n, 0x1_0000_5412n]).action, 'notify', 'TIOCSTI with high bits');
      assert.is(combined(filters, 'ioctl', [0n, 0x5401n]).action, 'allow', 'TCGETS');
    }
  });

  test('foreign architectures and x32 are killed', () => {
    const { filters } = compilePolicy(native, loadProfile('audit'), opts);
    assert.is(combined(filters, 'getpid', [], AUDIT_ARCH_I386).action, 'kill_process');
    assert.is(combined(filters, nr('getpid') | 0x40000000).action, 'kill_process');
  });

  test('syscalls newer than the profile answer ENOSYS; older unlisted ones the default', () => {
    const { filters, enosys } = compilePolicy(native, loadProfile('loader'), opts);
    assert.ok(enosys.length > 100);
    assert.equal(combined(filters, 1000), { action: 'errno', errno: 38 });
    assert.equal(combined(filters, 'syslog'), { action: 'errno', errno: 1 });
  });

  test("Docker's default profile compiles and keeps its semantics", () => {
    const docker = loadProfile(join(ROOT, 'test', 'fixtures', 'sandbox', 'docker-default.json'));
    const c = compilePolicy(native, docker, opts);
    const f = c.filters;
    assert.ok(c.skipped.includes('mmap2'), 'unknown names are skipped');
    // clone: allowed only without namespace flags ((flags & 0x7E020000) == 0)
    assert.is(combined(f, 'clone', [0x11n]).action, 'allow');
    assert.equal(combined(f, 'clone', [0x10000000n]), { action: 'errno', errno: 1 });
    // clone3 → ENOSYS so libc falls back to clone; socket: anything but AF_VSOCK
    assert.equal(combined(f, 'clone3'), { action: 'errno', errno: 38 });
    assert.is(combined(f, 'socket', [2n]).action, 'notify');
    assert.equal(combined(f, 'socket', [40n]), { action: 'errno', errno: 1 });
    // personality: listed values only, the rest hits the default
    assert.is(combined(f, 'personality', [8n]).action, 'notify');
    assert.equal(combined(f, 'personality', [0x400000n]), { action: 'errno', errno: 1 });
    // caps-only rules do not apply: the sandbox has no extra capabilities
    assert.equal(combined(f, 'chroot'), { action: 'errno', errno: 1 });
    assert.is(combined(f, 'arch_prctl').action, 'allow');
  });

  test('MASKED_EQ follows OCI: (arg & value) == valueTwo', () => {
    const p = parseProfile({ defaultAction: 'SCMP_ACT_ERRNO', syscalls: [{ names: ['getpid', 'read', 'write', 'exit_group'], action: 'SCMP_ACT_ALLOW' }, { names: ['fcntl'], action: 'SCMP_ACT_ALLOW', args: [{ index: 1, value: 0xf0, valueTwo: 0x10, op: 'SCMP_CMP_MASKED_EQ' }] }] });
    const { filters } = compilePolicy(native, p, opts);
    assert.is(combined(filters, 'fcntl', [0n, 0x13n]).action, 'allow');
    assert.is(combined(filters, 'fcntl', [0n, 0x23n]).action, 'errno');
  });

  test('a repeated index ORs and different indexes AND in the compiled filter', () => {
    const p = parseProfile({ defaultAction: 'SCMP_ACT_ERRNO', syscalls: [{ names: ['fcntl'], action: 'SCMP_ACT_ALLOW', args: [{ index: 1, value: 1, op: 'SCMP_CMP_EQ' }, { index: 1, value: 2, op: 'SCMP_CMP_EQ' }, { index: 0, value: 5, op: 'SCMP_CMP_EQ' }] }] });
    const { filters } = compilePolicy(native, p, opts);
    assert.is(combined(filters, 'fcntl', [5n, 1n]).action, 'allow');
    assert.is(combined(filters, 'fcntl', [5n, 2n]).action, 'allow');
    assert.is(combined(filters, 'fcntl', [5n, 3n]).action, 'errno');
    assert.is(combined(filters, 'fcntl', [6n, 1n]).action, 'errno');
  });

  test.run();
}
