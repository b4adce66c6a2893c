import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { parseLfsPointer, isLfsPointer } from '../../src/formats/lfs.js';
import { manifestTests } from './manifest-cases.js';

manifestTests('lfs/', 'git-lfs-pointer');

test('parseLfsPointer() reads oid and size', () => {
  const p = parseLfsPointer('version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 42\n');
  assert.equal(p, { oid: 'sha256:abc', size: 42 });
});

test('a large file that starts like a pointer is not a pointer (spec caps pointers at 1024 bytes)', () => {
  assert.not.ok(isLfsPointer(Buffer.from('version https://git-lfs.github.com/spec/v1\n'), 5000));
  assert.ok(isLfsPointer(Buffer.from('version https://git-lfs.github.com/spec/v1\n'), 130));
});

test.run();
