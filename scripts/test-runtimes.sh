#!/usr/bin/env bash
# The core of the suite (test/runtimes/core.mjs) under Bun and Deno, installed from their npm packages (`bun`,
# `deno`) into a temporary directory: they are not project dependencies. Prints TAP per runtime; a runtime that
# cannot be installed is reported as a failure that says so (`not ok`), never silently skipped.
#
#   npm run test:runtimes                 (needs dist/ and the addon built: npm run build)
#   PIDFD_RUNTIMES_DIR=dir                 reuse (or keep) an install directory instead of a fresh one
#   PIDFD_BUN=1.4.5 PIDFD_DENO=2.9.6        versions to install (default: latest)
#   test-runtimes.sh bun                  only one runtime
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

dir="${PIDFD_RUNTIMES_DIR:-}"
if [ -z "$dir" ]; then
  dir=$(mktemp -d "${TMPDIR:-/tmp}/pidfd-runtimes.XXXXXX")
  trap 'rm -rf "$dir"' EXIT
fi
runtimes=("$@")
[ "${#runtimes[@]}" -eq 0 ] && runtimes=(bun deno)

if [ ! -f dist/index.js ]; then
  echo "not ok 1 - dist/ is missing: run npm run build first"
  exit 1
fi

status=0
for rt in "${runtimes[@]}"; do
  case "$rt" in
    bun) version="${PIDFD_BUN:-latest}"; run=("$dir/bun/node_modules/.bin/bun" test/runtimes/core.mjs) ;;
    # N-API addons need --allow-ffi; the tests also spawn processes, read /proc and start workers.
    deno)
      version="${PIDFD_DENO:-latest}"
      run=("$dir/deno/node_modules/.bin/deno" run --allow-all test/runtimes/core.mjs) ;;
    *) echo "not ok 1 - unknown runtime $rt"; status=1; continue ;;
  esac
  echo "# $rt: npm install --prefix $dir/$rt $rt@$version"
  if [ ! -x "${run[0]}" ] && ! npm install --prefix "$dir/$rt" --no-audit --no-fund "$rt@$version" >&2 </dev/null; then
    echo "not ok 1 - $rt could not be installed from npm ($rt@$version): the core subset did not run under it"
    echo "# { total: 1, pass: 0, fail: 1 }"
    status=1
    continue
  fi
  if ! "${run[0]}" --version >/dev/null 2>&1; then
    echo "not ok 1 - $rt was installed but does not start here (${run[0]} --version failed)"
    echo "# { total: 1, pass: 0, fail: 1 }"
    status=1
    continue
  fi
  echo "# $rt $("${run[0]}" --version | head -n 1)"
  "${run[@]}" </dev/null
  rc=$?
  if [ "$rc" -ne 0 ]; then
    echo "# $rt: exit status $rc"
    status=1
  fi
done
exit "$status"
