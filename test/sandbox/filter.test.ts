import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { join } from 'node:path';
import { AUDIT_ARCH_I386, AUDIT_ARCH_X86_64, evaluate } from '../../src/sandbox/bpf.js';
import { allowExcept32, compilePolicy, expandArgs, profileVerdict, type CompiledPolicy } from '../../src/sandbox/filter.js';
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
  /** The BPF answer; for notified calls, `answer` adds what the profile (via the supervisor) says. */
  const combined = (filters: Buffer[], name: string | number, args: bigint[] = [], arch = AUDIT_ARCH_X86_64) => {
    const n = typeof name === 'number' ? name : nr(name);
    return evaluate(filters[0]!, { nr: n, arch, args });
  };
  const answer = (c: CompiledPolicy, name: string | number, args: bigint[] = []) => {
    const n = typeof name === 'number' ? name : nr(name);
    const v = evaluate(c.filters[0]!, { nr: n, arch: AUDIT_ARCH_X86_64, args });
    if (v.action !== 'notify') return v;
    const e = profileVerdict(c, n, args);
    return e === 0 ? { action: 'allow' as const, via: 'supervisor' } : { action: 'errno' as const, errno: e, via: 'supervisor' };
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
    for (const rare of ['connect', 'sendto', 'sendmsg', 'sendmmsg', 'bind', 'listen', 'execve', 'execveat']) assert.is(combined(filters, rare).action, 'notify', rare);
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
      assert.is(profileVerdict(compilePolicy(native, p, opts), nr('prctl'), [15n]), 0, 'PR_SET_NAME is allowed by the supervisor');
      assert.is(combined(filters, 'ioctl', [0n, 0x5412n]).action, 'notify', 'TIOCSTI');
      assert.is(combined(filters, 'ioctl', [0n, 0x1_0000_5412n]).action, 'notify', 'TIOCSTI with high bits');
      assert.is(combined(filters, 'ioctl', [0n, 0x5401n]).action, 'allow', 'TCGETS');
    }
  });

  test('foreign architectures and x32 reach the supervisor (answered ENOSYS and reported there), never a silent kill', () => {
    for (const name of ['audit', 'inference', 'loader']) {
      const { filters } = compilePolicy(native, loadProfile(name), opts);
      assert.is(combined(filters, 'getpid', [], AUDIT_ARCH_I386).action, 'notify', name);
      assert.is(combined(filters, nr('getpid') | 0x40000000).action, 'notify', name);
    }
  });

  test('a profile kill rule is notified, so the supervisor kills and reports', () => {
    const p = parseProfile({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['syslog'], action: 'SCMP_ACT_KILL_PROCESS' }, { names: ['acct'], action: 'SCMP_ACT_KILL' }] });
    const c = compilePolicy(native, p, opts);
    assert.is(combined(c.filters, 'syslog').action, 'notify');
    assert.ok(c.profileRules.some((r) => r.nr === nr('syslog') && r.action === 'kill'));
  });

  test('socket families are closed in BPF: only the profile\'s families (and netlink route) are created', () => {
    for (const name of ['inference', 'loader', 'audit']) {
      const { filters } = compilePolicy(native, loadProfile(name), opts);
      for (const fam of [1n, 2n, 10n]) assert.is(combined(filters, 'socket', [fam, 1n, 0n]).action, 'allow', `${name}: family ${fam}`);
      assert.is(combined(filters, 'socket', [16n, 3n, 0n]).action, 'allow', `${name}: netlink route`);
      for (const [fam, proto] of [[40n, 0n], [17n, 0n], [16n, 9n], [16n, 15n], [45n, 0n], [1000n, 0n]] as const)
        assert.is(combined(filters, 'socket', [fam, 1n, proto]).action, 'notify', `${name}: family ${fam} protocol ${proto}`);
    }
  });

  test('clone with a namespace flag is notified; clone3 answers ENOSYS in BPF; io_uring is a notified runtime probe', () => {
    for (const name of ['inference', 'loader', 'audit']) {
      const c = compilePolicy(native, loadProfile(name), opts);
      assert.is(combined(c.filters, 'clone', [0x3d0f00n]).action, 'allow', `${name}: pthread_create's flags`);
      for (const flag of [0x10000000n, 0x20000000n, 0x40000000n, 0x20000n]) assert.is(combined(c.filters, 'clone', [flag | 17n]).action, 'notify', `${name}: ${flag.toString(16)}`);
      assert.equal(combined(c.filters, 'clone3'), { action: 'errno', errno: 38 }, name);
      assert.ok(c.maskDenied.some((m) => m.nr === nr('clone') && m.mask === 0x7e020000n));
      assert.is(combined(c.filters, 'io_uring_setup').action, 'notify', name);
      assert.ok(c.runtimeProbes.includes(nr('io_uring_setup')));
      assert.not.ok(c.alwaysDenied.includes(nr('io_uring_setup')));
    }
  });

  test('metadata calls in path and fd forms are notified (Landlock has no right for them)', () => {
    const { filters } = compilePolicy(native, loadProfile('inference'), opts);
    for (const n of ['chmod', 'fchmod', 'fchmodat', 'chown', 'fchown', 'lchown', 'fchownat', 'utime', 'utimes', 'utimensat', 'futimesat', 'setxattr', 'fsetxattr', 'lsetxattr', 'removexattr', 'fremovexattr'])
      assert.is(combined(filters, n).action, 'notify', n);
  });

  test('syscalls newer than the profile answer ENOSYS; older unlisted ones are notified, denied and reported', () => {
    const c = compilePolicy(native, loadProfile('loader'), opts);
    assert.ok(c.enosys.length > 100);
    assert.equal(combined(c.filters, 1000), { action: 'errno', errno: 38 });
    assert.is(combined(c.filters, 'syslog').action, 'notify');
    assert.equal(answer(c, 'syslog'), { action: 'errno', errno: 1, via: 'supervisor' });
  });

  test('inference-gpu: ioctl stays in BPF for every request but TIOCSTI/TIOCLINUX, high bits included', () => {
    const c = compilePolicy(native, loadProfile('inference-gpu'), opts);
    for (const v of [0n, 0x5401n, 0x5411n, 0x5413n, 0x541bn, 0x541dn, 0xc0045401n, 0xffffffffn]) assert.is(combined(c.filters, 'ioctl', [3n, v]).action, 'allow', v.toString(16));
    for (const v of [0x5412n, 0x541cn, 0x1_0000_5412n, 0x1_0000_0000n]) assert.is(combined(c.filters, 'ioctl', [3n, v]).action, 'notify', v.toString(16));
    assert.is(allowExcept32(1, [5n]).length > 0, true);
    // inference (CPU) allows terminal, socket and file ioctls only; others are denied and reported
    const cpu = compilePolicy(native, loadProfile('inference'), opts);
    assert.is(combined(cpu.filters, 'ioctl', [1n, 0x5413n]).action, 'allow');
    assert.equal(answer(cpu, 'ioctl', [3n, 0xc0044600n]), { action: 'errno', errno: 1, via: 'supervisor' });
  });

  test("Docker's default profile compiles and keeps its semantics", () => {
    const docker = loadProfile(join(ROOT, 'test', 'fixtures', 'sandbox', 'docker-default.json'));
    const c = compilePolicy(native, docker, opts);
    const f = c.filters;
    assert.ok(c.skipped.includes('mmap2'), 'unknown names are skipped');
    // clone: allowed only without namespace flags ((flags & 0x7E020000) == 0)
    assert.is(combined(f, 'clone', [0x11n]).action, 'allow');
    assert.equal(answer(c, 'clone', [0x10000000n]), { action: 'errno', errno: 1, via: 'supervisor' });
    // clone3 → ENOSYS so libc falls back to clone; socket: anything but AF_VSOCK
    assert.equal(combined(f, 'clone3'), { action: 'errno', errno: 38 });
    assert.equal(answer(c, 'socket', [2n]), { action: 'allow', via: 'supervisor' });
    assert.equal(answer(c, 'socket', [40n]), { action: 'errno', errno: 1, via: 'supervisor' });
    // caps-only rules do not apply: the sandbox has no extra capabilities
    assert.equal(answer(c, 'chroot'), { action: 'errno', errno: 1, via: 'supervisor' });
    assert.is(combined(f, 'arch_prctl').action, 'allow');
  });

  test('MASKED_EQ follows OCI: (arg & value) == valueTwo', () => {
    const p = parseProfile({ defaultAction: 'SCMP_ACT_ERRNO', syscalls: [{ names: ['getpid', 'read', 'write', 'exit_group'], action: 'SCMP_ACT_ALLOW' }, { names: ['fcntl'], action: 'SCMP_ACT_ALLOW', args: [{ index: 1, value: 0xf0, valueTwo: 0x10, op: 'SCMP_CMP_MASKED_EQ' }] }] });
    const c = compilePolicy(native, p, opts);
    assert.is(answer(c, 'fcntl', [0n, 0x13n]).action, 'allow');
    assert.is(answer(c, 'fcntl', [0n, 0x23n]).action, 'errno');
  });

  test('a repeated index ORs and different indexes AND in the compiled filter', () => {
    const p = parseProfile({ defaultAction: 'SCMP_ACT_ERRNO', syscalls: [{ names: ['fcntl'], action: 'SCMP_ACT_ALLOW', args: [{ index: 1, value: 1, op: 'SCMP_CMP_EQ' }, { index: 1, value: 2, op: 'SCMP_CMP_EQ' }, { index: 0, value: 5, op: 'SCMP_CMP_EQ' }] }] });
    const c = compilePolicy(native, p, opts);
    assert.is(combined(c.filters, 'fcntl', [5n, 1n]).action, 'allow');
    assert.is(combined(c.filters, 'fcntl', [5n, 2n]).action, 'allow');
    assert.is(answer(c, 'fcntl', [5n, 3n]).action, 'errno');
    assert.is(answer(c, 'fcntl', [6n, 1n]).action, 'errno');
  });

  test.run();
}
