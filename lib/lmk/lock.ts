// Keeping the killer's own code resident, so that memory pressure does not slow the killer down.
import { C, native } from '../binding';
import { systemError } from '../errors';
import { parseMaps } from '../memory';
import { readSelf } from '../procfs';

/**
 * What `lockMemory()` locked.
 *
 * @example
 * const { ranges, bytes }: LockResult = lockMemory();
 * console.log(`locked ${ranges} file mappings, ${bytes} bytes`);
 */
export interface LockResult {
  /** File-backed mappings locked. */
  ranges: number;
  /** Their total size in bytes (pages are locked as they are or become resident). */
  bytes: number;
}

/**
 * Keeps this process's code in memory, so that under memory pressure the killer itself is not slowed down by page
 * faults on its own code. It locks every file-backed mapping (the node binary, shared libraries, this addon,
 * read-only data) with mlock2(MLOCK_ONFAULT): pages resident now stay, pages touched later are locked as they
 * fault in, nothing is read in just to lock it. Those are the pages the kernel drops first under pressure.
 *
 * Anonymous memory (the JavaScript heap) is not locked, on purpose: mlockall makes Node abort, because V8 hands heap
 * pages back with madvise(MADV_DONTNEED), which the kernel refuses on locked memory, and V8 treats the refusal as
 * fatal. Without swap anonymous memory cannot be paged out anyway; with swap, run the killer with a small heap.
 * Throws a system error (EPERM without CAP_IPC_LOCK beyond RLIMIT_MEMLOCK, ENOMEM).
 *
 * @example
 * import { lockMemory } from 'pidfd';
 * const { ranges, bytes } = lockMemory();
 */
export function lockMemory(): LockResult {
  const maps = parseMaps(readSelf('maps')).filter((m) => m.kind === 'file');
  const flat: bigint[] = [];
  let bytes = 0;
  for (const m of maps) {
    flat.push(m.start, m.end - m.start);
    bytes += Number(m.end - m.start);
  }
  const r = native.mlock(BigUint64Array.from(flat), C.MLOCK_ONFAULT);
  if (r < 0) throw systemError(r, 'mlock2');
  return { ranges: maps.length, bytes };
}
