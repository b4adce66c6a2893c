#!/usr/bin/env python3
"""Writes src/formats/pickle/compat.ts from CPython's own _compat_pickle tables (facts, not code):
    /usr/bin/python3 scripts/gen-compat-pickle.py > src/formats/pickle/compat.ts
test/formats/pickle/policy.test.ts checks the written tables against the running interpreter's."""
import _compat_pickle as c
import json
import sys


def q(s):
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


print("""/**
 * Python 2 -> 3 names exactly as CPython's Unpickler maps them (`fix_imports`, pickle protocols 0-2):
 * (module, name) through NAME_MAPPING first, else the whole module string through IMPORT_MAPPING.
 * Generated from CPython %d.%d's `_compat_pickle` by scripts/gen-compat-pickle.py; do not edit.
 * The policy maps names through it before the allowlist and the dangerous set alike, so
 * `__builtin__.xrange` is `builtins.range` (allowed) and `__builtin__.eval` is `builtins.eval`.
 */""" % sys.version_info[:2])
print()
print("/** `module\\0name` -> [module, name]. */")
print("export const COMPAT_NAME_MAPPING: ReadonlyMap<string, readonly [string, string]> = new Map<string, readonly [string, string]>([")
for (m, n), (m2, n2) in sorted(c.NAME_MAPPING.items()):
    print("  [%s, [%s, %s]]," % (q(m + "\0" + n).replace("\0", "\\0"), q(m2), q(n2)))
print("]);")
print()
print("/** Whole module names (CPython looks the full string up; never a prefix). */")
print("export const COMPAT_IMPORT_MAPPING: ReadonlyMap<string, string> = new Map<string, string>([")
for m, m2 in sorted(c.IMPORT_MAPPING.items()):
    print("  [%s, %s]," % (q(m), q(m2)))
print("]);")
print()
print("""/** `[module, name]` after CPython's fix_imports mapping. */
export function compatPickleName(module: string, name: string): [string, string] {
  const byName = COMPAT_NAME_MAPPING.get(`${module}\\0${name}`);
  if (byName) return [byName[0], byName[1]];
  return [COMPAT_IMPORT_MAPPING.get(module) ?? module, name];
}""")
