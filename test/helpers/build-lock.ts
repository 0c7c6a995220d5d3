// One test process at a time builds a shared artefact (dist/, a prebuild); the others wait and then use it.
import { mkdirSync, rmdirSync } from 'node:fs';
import { dirname } from 'node:path';

function sleep(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/**
 * Runs `build` under the lock directory `lock` unless `current()` says there is nothing to do (checked before
 * waiting, after each wait, and once the lock is held). A lock older than `staleMs` was left by a crashed run and
 * is taken over. Returns what `build` returns (undefined, or why it failed).
 */
export function buildOnce(
  lock: string,
  current: () => boolean,
  staleMs: number,
  build: () => string | undefined,
): string | undefined {
  if (current()) return undefined;
  mkdirSync(dirname(lock), { recursive: true });
  for (let waited = 0; ; waited += 100) {
    try {
      mkdirSync(lock);
      break;
    } catch {
      if (waited >= staleMs) rmdirSync(lock, { recursive: true });
      sleep(100);
      if (current()) return undefined; // another test process built it meanwhile
    }
  }
  try {
    return current() ? undefined : build();
  } finally {
    rmdirSync(lock);
  }
}
