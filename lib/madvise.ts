// process_madvise over many ranges: validation, batching within the kernel's limits, resuming after partial
// progress. The /proc memory view and reclaim() are in memory.ts.
import { C, native } from './binding';
import { callError, requireCapability } from './capabilities';
import { E } from './errors';
import { invalidType, invalidValue, outOfRange } from './validate';

/**
 * Advice for `PidFd.madvise`: what the kernel should do with another process's pages.
 *
 * @example
 * const advice: Advice = 'cold'; // or 'pageout', 'willneed', 'collapse'
 * const bytes = p.madvise(advice, ranges);
 */
export type Advice = 'cold' | 'pageout' | 'willneed' | 'collapse';

/**
 * One address range of the target process. `address` must be page-aligned.
 *
 * @example
 * const ranges: MemoryRange[] = p.maps().filter((m) => m.kind === 'anon')
 *   .map((m) => ({ address: m.start, length: m.end - m.start }));
 * p.madvise('pageout', ranges);
 */
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
    if (address % pageSize !== 0n)
      throw invalidValue(`${name}.address`, address, `must be a multiple of the page size (${pageSize})`);
    let len: bigint;
    if (typeof length === 'number') {
      if (!Number.isSafeInteger(length) || length < 0)
        throw outOfRange(`${name}.length`, 'a safe integer >= 0', length);
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
  // Own keys only: 'toString' or 'constructor' must not find Object.prototype's members.
  const entry = Object.prototype.hasOwnProperty.call(ADVICE, advice) ? ADVICE[advice as Advice] : undefined;
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
  const list = toRanges(ranges, page);
  // Even an empty list says so where the call is missing, as a non-empty one would.
  requireCapability('processMadvise');
  // A cursor into the ranges: all before `i` are done, and `off` bytes of ranges[i]. Pieces (at most the cap each,
  // so every piece starts page-aligned) are cut only as a batch needs them: a range may be up to 2^64 bytes long.
  let advised = 0n;
  let i = 0;
  let off = 0n;
  while (i < list.length) {
    const batch: bigint[] = [];
    let bytes = 0n;
    for (let j = i, o = off; j < list.length && batch.length < 2 * C.UIO_MAXIOV;) {
      const [addr, len] = list[j];
      const piece = len - o < cap ? len - o : cap;
      if (bytes + piece > cap) break;
      batch.push(addr + o, piece);
      bytes += piece;
      o += piece;
      if (o === len) {
        j++;
        o = 0n;
      }
    }
    const r = native.madvise(fd, BigUint64Array.from(batch), madv);
    if (r < 0) {
      const hint =
        r === -E.EINVAL && advice === 'collapse'
          ? 'MADV_COLLAPSE needs Linux 6.1 and transparent huge pages'
          : undefined;
      throw Object.assign(callError('processMadvise', r, 'process_madvise', hint), { bytesAdvised: Number(advised) });
    }
    // Skip what the kernel finished; a range it stopped inside of continues from where it stopped.
    let done = BigInt(r);
    advised += done;
    while (done > 0n && i < list.length) {
      const rest = list[i][1] - off;
      if (done >= rest) {
        done -= rest;
        i++;
        off = 0n;
      } else {
        off += done;
        done = 0n;
      }
    }
    if (r === 0) break; // no progress on a non-empty batch: never loop on it
  }
  return Number(advised);
}
