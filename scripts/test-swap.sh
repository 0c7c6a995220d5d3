#!/usr/bin/env bash
# The low-memory killer on real swap (test/lmk/swap.ts), alone: npm run test:swap [-- tap args]
# Swap is machine-wide: while it is on, memory cgroups at their limit swap instead of meeting the kernel's OOM
# killer, which changes what every other test measures. So it runs on its own, never beside the suite. It needs
# root, /dev/zram0 unused and no swap on; the test turns a 512 MiB zram swap on and off again itself. If the test
# process dies before its teardown (a tap timeout), the swap it turned on is turned off here.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
zram_swap() { grep -q '^/dev/zram0 ' /proc/swaps 2>/dev/null; }
before=0
zram_swap && before=1
PIDFD_TEST_SWAP=1 npx tap "$@" test/lmk/swap.ts
rc=$?
if [ "$before" -eq 0 ] && zram_swap; then
  echo "test:swap: /dev/zram0 was left on as swap; turning it off" >&2
  swapoff /dev/zram0 && echo 1 >/sys/block/zram0/reset
  [ "$rc" -eq 0 ] && rc=1
fi
exit "$rc"
