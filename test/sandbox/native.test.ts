import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadNative, NativeError } from '../../src/sandbox/native.js';
import { ROOT, skipReason, tempDir } from './helpers.js';

const skip = skipReason();
if (skip) {
  console.log(`skip: ${skip}`);
  test.skip('native addon', () => {});
} else {
  test('loads libseccomp at run time and resolves syscalls for the native architecture', () => {
    const n = loadNative();
    assert.match(n.version().libseccomp, /^2\./);
    assert.is(n.syscallName(n.resolveSyscall('openat')), 'openat');
    assert.is(n.resolveSyscall('no_such_syscall'), -1);
  });

  test('native errors are NativeError with code, syscall and errno', () => {
    const n = loadNative();
    try {
      n.closeFd(987654);
      assert.unreachable();
    } catch (e) {
      assert.instance(e, NativeError);
      const err = e as NativeError;
      assert.equal([err.sysCode, err.syscall, err.errno, err.code], ['EBADF', 'close', 9, 'NATIVE']);
    }
    assert.throws(() => (n.compileFilter as unknown as (x: unknown) => void)(42), /compileFilter: expects one options object/);
  });

  test('passes an fd over a socketpair with SCM_RIGHTS (the listener hand-off path)', () => {
    const n = loadNative();
    const [a, b] = n.socketPair();
    try {
      n.recvFd({ fd: a, timeoutMs: 50 });
      assert.unreachable();
    } catch (e) {
      assert.is((e as NativeError).sysCode, 'ETIMEDOUT'); // nothing was sent
    }
    n.closeFd(a);
    n.closeFd(b);
  });

  test('as PID 1, reapOrphans reaps zombies reparented to guard and none of Node’s own children', () => {
    const dir = tempDir('reaper');
    const script = join(dir, 'pid1.mjs');
    writeFileSync(script, `
import { spawn, spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
const { loadNative } = await import(${JSON.stringify(join(ROOT, 'dist', 'src', 'sandbox', 'native.js'))});
const zombies = () => readdirSync('/proc').filter((p) => /^\\d+$/.test(p)).filter((p) => { try { const s = readFileSync('/proc/' + p + '/stat', 'utf8'); return s[s.lastIndexOf(')') + 2] === 'Z'; } catch { return false; } });
// Node's own child, still running until we close its stdin: must not be reaped by us.
const own = spawn('sh', ['-c', 'read x; exit 0'], { stdio: ['pipe', 'ignore', 'ignore'] });
// An orphan: sh exits at once, its background child is reparented to us (PID 1) and exits.
spawnSync('sh', ['-c', 'sleep 0.1 & exit 0']);
// Wait (bounded: a hang guard, not a speed goal) until the orphan is a zombie, however busy the machine.
for (let i = 0; i < 6000 && zombies().length === 0; i++) await new Promise((r) => setTimeout(r, 50));
const before = zombies();
const reaped = loadNative().reapOrphans({ known: [own.pid] });
const after = zombies();
const ownExited = new Promise((r) => own.on('exit', (c) => r(c)));
own.stdin.end();
const ownExit = await ownExited;
console.log(JSON.stringify({ pid: process.pid, before: before.length, reaped: reaped.length, after: after.length, ownExit }));
`);
    const r = spawnSync('unshare', ['--pid', '--fork', '--mount-proc', process.execPath, script], { encoding: 'utf8' });
    assert.is(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout.trim()) as { pid: number; before: number; reaped: number; after: number; ownExit: number };
    assert.equal(out, { pid: 1, before: 1, reaped: 1, after: 0, ownExit: 0 });
  });
}

test.run();
