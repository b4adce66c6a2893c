/**
 * The metadata attacks of test/fixtures/sandbox/attack.c, each with the system calls a refusal may
 * be reported under (the C library may make the older calls with utimensat or fchownat). One table
 * for the host suite (attacks.test.ts) and the one run inside containers (container/inside.ts), so
 * both walls are held to the same list. Dependency-free: inside.ts runs in the test image alone.
 */
export const METADATA_ATTACKS: readonly (readonly [mode: string, syscalls: readonly string[]])[] = [
  ['fchmod', ['fchmod']],
  ['fchown', ['fchown']],
  ['chown', ['chown', 'fchownat']],
  ['utime', ['utime', 'utimensat']],
  ['utimes', ['utimes', 'utimensat']],
  ['futimens-null', ['utimensat']],
  ['futimesat', ['futimesat']],
  ['setxattr', ['setxattr']],
  ['fsetxattr', ['fsetxattr']],
];
