// process_madvise over many ranges: validation, batching within the kernel's limits, resuming after partial
// progress. (Issue 4 adds the /proc memory view here.)
import { C, native } from './binding';
import { E, systemError, unsupported } from './errors';
import { invalidType, invalidValue, outOfRange } from './validate';

/** Advice for `PidFd.madvise`: what the kernel should do with another process's pages. */
export type Advice = 'cold' | 'pageout' | 'willneed' | 'collapse';

/** One address range of the target process. `address` must be page-aligned. */
export interface MemoryRange {
  address: bigint;
  length: number | bigint;
}

const ADVICE: Record<Advice, [number, string]> = {
  cold: [C.MADV_COLD, '5.10'],
  pageout: [C.MADV_PAGEOUT, '5.10'],
  willneed: [C.MADV_WILLNEED, '5.10'],
  collapse: [C.MADV_COLLAPSE, '6.1'],
};

const U64_END = 1n << 64n;

/** The most one process_madvise call handles (MAX_RW_COUNT: INT_MAX rounded down to a page). */
export function perCallByteCap(pageSize: number): bigint {
  return BigInt(0x7fffffff & ~(pageSize - 1));
}

function toRanges(ranges: unknown, pageSize: bigint): [bigint, bigint][] {
  if (!Array.isArray(ranges)) throw invalidType('ranges', 'an array of { address, length }', ranges);
  const out: [bigint, bigint][] = [];
  ranges.forEach((r: unknown, i) => {
    const name = `ranges[${i}]`;
    if (r === null || typeof r !== 'object') throw invalidType(name, 'of type object', r);
    const { address, length } = r as Record<string, unknown>;
    if (typeof address !== 'bigint') throw invalidType(`${name}.address`, 'of type bigint', address);
    if (address < 0n || address >= U64_END) throw outOfRange(`${name}.address`, '>= 0n and < 2n ** 64n', address);
    if (address % pageSize !== 0n) throw invalidValue(`${name}.address`, address, `must be a multiple of the page size (${pageSize})`);
    let len: bigint;
    if (typeof length === 'number') {
      if (!Number.isSafeInteger(length) || length < 0) throw outOfRange(`${name}.length`, 'a safe integer >= 0', length);
      len = BigInt(length);
    } else if (typeof length === 'bigint') {
      if (length < 0n) throw outOfRange(`${name}.length`, '>= 0n', length);
      len = length;
    } else {
      throw invalidType(`${name}.length`, 'of type number or bigint', length);
    }
    if (address + len > U64_END) throw outOfRange(`${name}.length`, 'such that address + length <= 2n ** 64n', length);
    if (len > 0n) out.push([address, len]);
  });
  return out;
}

/** Validates the advice name; returns the MADV_* number. */
export function adviceNumber(advice: unknown): number {
  if (typeof advice !== 'string') throw invalidType('advice', 'of type string', advice);
  const entry = (ADVICE as Record<string, [number, string]>)[advice];
  if (!entry) throw invalidValue('advice', advice, "must be one of 'cold', 'pageout', 'willneed', 'collapse'");
  return entry[0];
}

/**
 * process_madvise(fd, ranges, advice), any number of ranges: at most UIO_MAXIOV ranges and at most the per-call
 * byte cap per call; a range larger than the cap is split. When the kernel reports partial progress, the ranges
 * it finished are skipped and the call goes on with the rest; an error after some progress is thrown with
 * `bytesAdvised` set. Returns the bytes advised.
 */
export function adviseRanges(fd: number, advice: unknown, ranges: unknown): number {
  const madv = adviceNumber(advice);
  const page = BigInt(C.PAGE_SIZE);
  const cap = perCallByteCap(C.PAGE_SIZE);
  // Pieces no larger than the cap; the cap is page-aligned, so every piece starts page-aligned.
  const pieces: [bigint, bigint][] = [];
  for (const [addr, len] of toRanges(ranges, page)) {
    for (let off = 0n; off < len; off += cap) pieces.push([addr + off, len - off < cap ? len - off : cap]);
  }
  let advised = 0n;
  let i = 0;
  while (i < pieces.length) {
    const batch: bigint[] = [];
    let bytes = 0n;
    for (let j = i; j < pieces.length && batch.length < 2 * C.UIO_MAXIOV && bytes + pieces[j][1] <= cap; j++) {
      batch.push(pieces[j][0], pieces[j][1]);
      bytes += pieces[j][1];
    }
    const r = native.madvise(fd, BigUint64Array.from(batch), madv);
    if (r < 0) {
      if (r === -E.ENOSYS) throw unsupported('process_madvise', '5.10');
      if (r === -E.EINVAL && advice === 'collapse') {
        const err = systemError(r, 'process_madvise', 'MADV_COLLAPSE needs Linux 6.1 and transparent huge pages');
        throw Object.assign(err, { bytesAdvised: Number(advised) });
      }
      throw Object.assign(systemError(r, 'process_madvise'), { bytesAdvised: Number(advised) });
    }
    // Skip what the kernel finished; a piece it stopped inside of continues from where it stopped.
    let done = BigInt(r);
    advised += done;
    while (done > 0n && i < pieces.length) {
      const [addr, len] = pieces[i];
      if (done >= len) {
        done -= len;
        i++;
      } else {
        pieces[i] = [addr + done, len - done];
        done = 0n;
      }
    }
    if (r === 0) break; // no progress on a non-empty batch: never loop on it
  }
  return Number(advised);
}
