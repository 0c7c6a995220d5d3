// What the killer guards: the system's memory or a memory cgroup's, measured on every sample (cheap reads only).
import { readMemoryCgroup } from '../cgroup';
import { codedError } from '../errors';
import { readMeminfo } from '../procfs';

/**
 * Available memory as the killer measures it.
 *
 * @example
 * const h: MemoryHeadroom = lmk.headroom();
 * console.log(`${((100 * h.available) / h.total).toFixed(1)}% available (${h.source})`);
 */
export interface MemoryHeadroom {
  available: number;
  total: number;
  source: 'meminfo' | 'cgroup-v1' | 'cgroup-v2';
  /** Free swap the budget may still use, and the swap's size, in bytes (0 and 0 without swap). */
  swapFree: number;
  swapTotal: number;
  /** What set `available`: `MemAvailable`, or the cgroup file (and its directory) that bounded it. */
  limitedBy: string;
}

/**
 * Available memory as the killer measures it: the system's (MemAvailable of MemTotal), or a memory cgroup's
 * headroom (v1: limit_in_bytes - usage_in_bytes; v2: memory.max - memory.current; the limit capped at MemTotal).
 *
 * @example
 * const { available, total, source } = readHeadroom('/sys/fs/cgroup/memory/workers');
 */
export function readHeadroom(cgroup?: string): MemoryHeadroom {
  if (cgroup === undefined) {
    const m = readMeminfo();
    return {
      available: m.get('MemAvailable') ?? m.get('MemFree') ?? 0,
      total: m.get('MemTotal') ?? 0,
      source: 'meminfo',
      swapFree: m.get('SwapFree') ?? 0,
      swapTotal: m.get('SwapTotal') ?? 0,
      limitedBy: 'MemAvailable',
    };
  }
  const cg = readMemoryCgroup(cgroup);
  if (cg === undefined) {
    throw codedError(
      'ERR_PIDFD_NO_MEMORY_CGROUP',
      `${cgroup} is not a memory cgroup (no memory.usage_in_bytes or memory.current)`,
    );
  }
  const mi = readMeminfo();
  const memTotal = mi.get('MemTotal') ?? Infinity;
  const lim = cg.limit === undefined ? memTotal : Math.min(cg.limit, memTotal);
  return {
    available: lim - cg.usage,
    total: lim,
    source: cg.version === 1 ? 'cgroup-v1' : 'cgroup-v2',
    swapFree: mi.get('SwapFree') ?? 0,
    swapTotal: mi.get('SwapTotal') ?? 0,
    limitedBy: cgroup,
  };
}
