#!/usr/bin/env bash
# npm run test:asan [-- 'SUITE REGEX']
# Builds the native addon and guard-exec with AddressSanitizer and UBSan into a separate tree
# (build-asan/, never the normal build/), then runs the native test suites against that build:
# node itself is not instrumented, so libasan is preloaded into it (and inherited by guard-exec's
# children). Any sanitizer report fails the run: halt_on_error for both sanitizers.
# guard-exec scrubs the environment it hands on, so ASAN_OPTIONS never reaches it: its sanitizer build
# runs with ASan's defaults (leaks checked at exit), and skips RLIMIT_AS/RLIMIT_DATA, under which
# ASan's shadow memory makes every mmap fail (native/exec/guard-exec.c says more).
# CI (.ci/run) runs it with a narrower filter; with none, every suite that drives native code.
# The tree mirrors the package root (package.json, binding.gyp, native/, a copy of dist/,
# links to node_modules and test/) because the addon is found next to the package root.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
tree="$root/build-asan"
filter="${1:-sandbox/|load/sizes|load/safeload}"
nodedir="${npm_config_nodedir:-$(node -p "require('path').resolve(process.execPath, '../..')")}"
gyp="$(dirname "$(command -v npm)")/../lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js"
[ -f "$gyp" ] || gyp="$(npm root -g)/npm/node_modules/node-gyp/bin/node-gyp.js"

libasan="$(gcc -print-file-name=libasan.so)"
[ -f "$libasan" ] || { echo "test:asan: libasan not found (install gcc's libasan)" >&2; exit 2; }

[ -d "$root/dist/test" ] || (cd "$root" && npm run build)
rm -rf "$tree/dist" "$tree/native"
mkdir -p "$tree"
cp "$root/package.json" "$root/binding.gyp" "$tree/"
cp -r "$root/native" "$tree/native"
cp -r "$root/dist" "$tree/dist"
ln -sfn "$root/node_modules" "$tree/node_modules"
ln -sfn "$root/test" "$tree/test"
# src/ holds files read at run time (src/unpickler/python/unpickler.py): without it every VM call
# failed with INTERNAL "unpickler.py not found".
ln -sfn "$root/src" "$tree/src"
# Copied, not linked: a linked script would resolve to the real root and test the normal build
# (bin/guard finds dist/ next to where it lies).
rm -rf "$tree/scripts" "$tree/bin" && cp -r "$root/scripts" "$tree/scripts" && cp -r "$root/bin" "$tree/bin"
[ -d "$root/sandbox-profiles" ] && ln -sfn "$root/sandbox-profiles" "$tree/sandbox-profiles"

san="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g -O1"
(cd "$tree" && CFLAGS="$san" CXXFLAGS="$san" LDFLAGS="-fsanitize=address,undefined" node "$gyp" rebuild --nodedir="$nodedir" >"$tree/gyp.log" 2>&1) || { tail -40 "$tree/gyp.log" >&2; exit 2; }
# Both binaries must really be instrumented, or the run proves nothing.
for bin in "$tree/build/Release/modelguard.node" "$tree/build/Release/guard-exec"; do
  # nm's output is captured whole: `nm | grep -q` fails under pipefail when grep quits early (SIGPIPE).
  syms="$(nm -D "$bin" 2>/dev/null || true)"
  grep -q __asan_ <<<"$syms" || { echo "test:asan: $bin is not instrumented" >&2; exit 2; }
done

export LD_PRELOAD="$libasan"
# Node leaks by design at exit (and so do the Pythons the tests start): leaks are not what this run checks.
export ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:abort_on_error=1:allow_user_segv_handler=1:handle_segv=0:detect_odr_violation=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
cd "$tree"
node scripts/run-tests.mjs "$filter" 2>&1 | tee "$tree/test.log"
status=${PIPESTATUS[0]}
if grep -E "ERROR: AddressSanitizer|runtime error:" "$tree/test.log" >/dev/null; then
  echo "test:asan: sanitizer reports above" >&2
  exit 1
fi
exit "$status"
