#!/usr/bin/env bash
# The whole tap suite against an AddressSanitizer + UndefinedBehaviorSanitizer build of the addon:
#   npm run test:sanitize [-- tap args, e.g. test/core/wait.ts]
# Builds build/Release/pidfd.node with -Dsanitize=1, preloads the ASan runtime into every process the suite starts
# (Node is not built with ASan, so the runtime must come first), runs tap, then rebuilds the normal addon.
# Leak detection is on. Suppressions (scripts/lsan.supp) name only Node's and V8's own allocations, matched on the
# allocating frame alone (see that file).
# With no arguments it runs every test but those in test/packaging/ (they pack, install and build rather than
# exercise the addon, and run other Node binaries) and test/lmk/steps.ts (see below); give test files or folders to
# run those instead. tap's per-file timeout is raised: instrumented code runs several times slower.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ -d /usr/include/node ]; then export npm_config_nodedir=/usr; fi

asan=$(${CXX:-g++} -print-file-name=libasan.so)
if [ ! -e "$asan" ]; then
  echo "test:sanitize: no libasan.so for ${CXX:-g++} (Debian/Ubuntu: apt-get install libasan8)" >&2
  exit 1
fi
files=()
if [ "$(printf '%s\n' "$@" | grep -c '^test/')" -eq 0 ]; then
  # test/lmk/steps.ts is left out too: it checks how many MiB a worker frees when asked to trim, inside a memory
  # budget, and the preloaded runtime in every worker changes those amounts.
  mapfile -t files < <(npx tap list | grep -v '^test/packaging/' | grep -vx 'test/lmk/steps.ts')
fi
npx node-gyp rebuild -- -Dsanitize=1 >/dev/null 2>&1 ||
  { echo "test:sanitize: the sanitizer build failed" >&2; exit 1; }

# halt_on_error / abort_on_error: any finding kills the process with a report, which fails the test that ran it.
# verify_asan_link_order=0: the runtime is preloaded into Node, which itself is not instrumented.
asan_options="detect_leaks=1:malloc_context_size=2:halt_on_error=1:abort_on_error=1"
asan_options+=":verify_asan_link_order=0:detect_odr_violation=0"
LD_PRELOAD="$asan" \
ASAN_OPTIONS="$asan_options" \
LSAN_OPTIONS="suppressions=$PWD/scripts/lsan.supp:print_suppressions=0" \
UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1" \
PIDFD_SANITIZED=1 \
  npx tap --timeout=1200 "${files[@]}" "$@"
rc=$?

npx node-gyp rebuild >/dev/null 2>&1 || { echo "test:sanitize: rebuilding the normal addon failed" >&2; exit 1; }
exit $rc
