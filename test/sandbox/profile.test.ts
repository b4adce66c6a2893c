import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BUILTIN_PROFILES, loadProfile, parseProfile } from '../../src/sandbox/profile.js';
import { ROOT, tempDir } from './helpers.js';

const DOCKER = join(ROOT, 'test', 'fixtures', 'sandbox', 'docker-default.json');

for (const name of BUILTIN_PROFILES) {
  test(`loads the built-in profile ${name}`, () => {
    const p = loadProfile(name);
    assert.is(p.name, name);
    assert.ok(p.modelguard.description.length > 0);
    assert.ok(p.syscalls.length > 0 || p.defaultAction === 'SCMP_ACT_ALLOW');
  });
}

test('the built-in profiles say what the issue asks of them', () => {
  const loader = loadProfile('loader');
  assert.is(loader.modelguard.network, 'deny');
  assert.is(loader.modelguard.exec, 'first');
  assert.equal(loader.modelguard.fs.write, ['$TMPDIR']);
  const cpu = loadProfile('inference');
  assert.ok(cpu.syscalls.find((r) => r.names.includes('ioctl'))!.args.length > 0, 'inference: listed ioctls only');
  const gpu = loadProfile('inference-gpu');
  assert.equal(gpu.syscalls.find((r) => r.names.includes('ioctl'))!.args, [], 'inference-gpu: driver ioctls');
  assert.ok(gpu.modelguard.fs.write.includes('/dev/nvidiactl'));
  assert.ok(gpu.modelguard.fs.write.includes('/dev/nvidia-uvm'));
  const audit = loadProfile('audit');
  assert.is(audit.defaultAction, 'SCMP_ACT_ALLOW');
  assert.is(audit.modelguard.network, 'allow');
});

test("loads Docker's default profile (written from its documented structure) unchanged", () => {
  const p = loadProfile(DOCKER);
  assert.is(p.defaultAction, 'SCMP_ACT_ERRNO');
  assert.is(p.defaultErrnoRet, 1);
  assert.ok(p.architectures.includes('SCMP_ARCH_X32'));
  const clone = p.syscalls.find((r) => r.names.includes('clone') && r.args.length === 1 && r.args[0]!.index === 0)!;
  assert.equal(clone.args[0], { index: 0, op: 'SCMP_CMP_MASKED_EQ', value: 2114060288n, valueTwo: 0n });
  assert.equal(clone.excludes, { caps: ['CAP_SYS_ADMIN'], arches: ['s390', 's390x'] });
});

test('a built-in name that does not exist suggests the closest one', () => {
  assert.throws(() => loadProfile('infrence'), /did you mean `inference`/);
});

test('unknown keys name the option and the fix', () => {
  assert.throws(() => parseProfile({ defaultAction: 'SCMP_ACT_ERRNO', syscals: [] }, 'p.json'), /unknown option `syscals`.*did you mean `syscalls`/);
  assert.throws(() => parseProfile({ defaultAction: 'SCMP_ACT_ERRNO', 'x-modelguard': { netwrok: 'deny' } }, 'p.json'), /unknown option `netwrok` in x-modelguard; did you mean `network`/);
  assert.throws(() => parseProfile({ defaultAction: 'SCMP_ACT_ALOW' }, 'p.json'), /did you mean `SCMP_ACT_ALLOW`/);
  assert.throws(() => parseProfile({ defaultAction: 'SCMP_ACT_ERRNO', syscalls: [{ names: ['read'], action: 'SCMP_ACT_ALLOW', args: [{ index: 7, value: 1, op: 'SCMP_CMP_EQ' }] }] }, 'p.json'), /index` must be 0–5/);
  assert.throws(() => parseProfile({ defaultAction: 'SCMP_ACT_ERRNO', syscalls: [{ names: ['read'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value: 1, op: 'SCMP_CMP_EQUAL' }] }] }, 'p.json'), /SCMP_CMP_EQ/);
  assert.throws(() => parseProfile({ defaultAction: 'SCMP_ACT_ERRNO', architectures: ['SCMP_ARCH_X86_46'] }, 'p.json'), /did you mean `SCMP_ARCH_X86_64`/);
});

test('socket families and netlink protocols are named, checked, and default to what a program needs', () => {
  const p = parseProfile({ defaultAction: 'SCMP_ACT_ERRNO' }, 'p.json');
  assert.equal([p.modelguard.socketFamilies, p.modelguard.netlinkProtocols], [['unix', 'inet', 'inet6', 'netlink'], ['route']]);
  for (const name of ['loader', 'inference']) assert.not.ok(loadProfile(name).modelguard.socketFamilies.includes('vsock'), name);
  assert.throws(() => parseProfile({ defaultAction: 'SCMP_ACT_ERRNO', 'x-modelguard': { socketFamilies: ['inet66'] } }, 'p.json'), /unknown socket family `inet66`.*did you mean `inet6`/);
  assert.throws(() => parseProfile({ defaultAction: 'SCMP_ACT_ERRNO', 'x-modelguard': { netlinkProtocols: ['rout'] } }, 'p.json'), /unknown netlink protocol `rout`.*did you mean `route`/);
});

test('errors are GuardError PROFILE_INVALID with the path', () => {
  const dir = tempDir('prof');
  const f = join(dir, 'broken.json');
  writeFileSync(f, '{ not json');
  try {
    loadProfile(f);
    assert.unreachable();
  } catch (e) {
    const err = e as { code: string; context: { path: string } };
    assert.is(err.code, 'PROFILE_INVALID');
    assert.is(err.context.path, f);
  }
});

test('values above 2^53 can be given as strings', () => {
  const p = parseProfile({ defaultAction: 'SCMP_ACT_ERRNO', syscalls: [{ names: ['ioctl'], action: 'SCMP_ACT_ALLOW', args: [{ index: 1, value: '0xffffffffffffffff', op: 'SCMP_CMP_EQ' }] }] });
  assert.is(p.syscalls[0]!.args[0]!.value, 0xffffffffffffffffn);
});

test.run();
