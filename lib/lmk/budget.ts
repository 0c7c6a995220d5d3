// What the killer guards: the system's memory or a memory cgroup's, measured on every sample (cheap reads only),
// and the kernel's own OOM kills in it.
import { MemoryLimits, readCgroupOomKills, readMemoryLimits } from '../cgroup';
import { codedError } from '../errors';
import { KeptFiles, ReadFile, readFresh } from '../kept-files';
import { readMeminfo, readVmstatOomKills } from '../procfs';
import type { KernelOomEvent } from './events';

/**
 * Available memory as the killer measures it.
 *
 * @example
 * const h: MemoryHeadroom = lmk.headroom();
 * console.log(`${((100 * h.available) / h.total).toFixed(1)}% available (${h.source}, set by ${h.limitedBy})`);
 */
export interface MemoryHeadroom {
  available: number;
  total: number;
  source: 'meminfo' | 'cgroup-v1' | 'cgroup-v2';
  /** Free swap the budget may still use, and the swap's size, in bytes (0 and 0 without swap). */
  swapFree: number;
  swapTotal: number;
  /** What set `available`: `MemAvailable`, or the cgroup file (with its directory) that bounded it. */
  limitedBy: string;
}

/**
 * The headroom a reading of /proc/meminfo (and of a memory cgroup's limits) gives. Each limit leaves `limit -
 * usage + inactive file` of that level; the smallest, bounded by MemAvailable, is `available`.
 *
 * @example
 * const h = headroomOf(readMeminfo(), readMemoryLimits(dir, memTotal, swapTotal));
 */
export function headroomOf(meminfo: Map<string, number>, cg?: MemoryLimits): MemoryHeadroom {
  const h: MemoryHeadroom = {
    available: meminfo.get('MemAvailable') ?? meminfo.get('MemFree') ?? 0,
    total: meminfo.get('MemTotal') ?? 0,
    source: cg === undefined ? 'meminfo' : cg.version === 1 ? 'cgroup-v1' : 'cgroup-v2',
    swapFree: meminfo.get('SwapFree') ?? 0,
    swapTotal: meminfo.get('SwapTotal') ?? 0,
    limitedBy: 'MemAvailable',
  };
  if (cg === undefined) return h;
  for (const l of cg.limits) {
    // Inactive file pages are what reclaim takes first, before any OOM kill, as MemAvailable counts them. Active
    // file pages are not counted (MemAvailable does not count them either): they are the working set, and
    // dropping them means refaults, i.e. thrashing, not headroom.
    const left = Math.max(0, l.limit - l.usage + l.inactiveFile);
    h.total = Math.min(h.total, l.limit);
    if (left < h.available) {
      h.available = left;
      h.limitedBy = l.file;
    }
  }
  for (const s of cg.swap) {
    h.swapTotal = Math.min(h.swapTotal, s.limit);
    h.swapFree = Math.min(h.swapFree, Math.max(0, s.limit - s.usage));
  }
  h.swapFree = Math.min(h.swapFree, h.swapTotal);
  return h;
}

function measure(cgroup: string | undefined, read: ReadFile): MemoryHeadroom {
  const mi = readMeminfo(read);
  if (cgroup === undefined) return headroomOf(mi);
  const limits = readMemoryLimits(cgroup, mi.get('MemTotal') ?? Infinity, mi.get('SwapTotal') ?? 0, read);
  if (limits === undefined) {
    throw codedError(
      'ERR_PIDFD_NO_MEMORY_CGROUP',
      `${cgroup} is not a memory cgroup (no memory.limit_in_bytes or memory.max)`,
    );
  }
  return headroomOf(mi, limits);
}

/**
 * Available memory as the killer measures it. The system's: MemAvailable of MemTotal. A memory cgroup's (v1 or
 * v2 directory): the smallest headroom that the group's and each ancestor's limits leave (v2 `memory.max` and
 * `memory.high`, v1 `memory.limit_in_bytes`), each counting that level's inactive file pages as available,
 * bounded by MemAvailable; `total` is the smallest limit, capped at MemTotal. Swap: SwapFree of SwapTotal, bounded
 * by the group's swap limits (v2 `memory.swap.max`, v1 memsw). Throws ERR_PIDFD_NO_MEMORY_CGROUP for a directory
 * that is not a memory cgroup.
 *
 * @example
 * const { available, total, limitedBy } = readHeadroom('/sys/fs/cgroup/memory/workers');
 * console.log(`${available} of ${total} bytes left (set by ${limitedBy})`);
 */
export function readHeadroom(cgroup?: string): MemoryHeadroom {
  return measure(cgroup, readFresh);
}

function oomKills(cgroup: string | undefined, read: ReadFile): number | undefined {
  return cgroup === undefined ? readVmstatOomKills(read) : readCgroupOomKills(cgroup, read);
}

/**
 * The kernel's OOM kills so far in a budget: the system's (/proc/vmstat `oom_kill`), or a memory cgroup's (v2
 * memory.events `oom_kill`, its descendants included; v1 memory.oom_control `oom_kill`, the group's own processes
 * only). Undefined when this kernel does not count them (before Linux 4.13) or the directory has no such file.
 *
 * @example
 * const before = readOomKills(dir) ?? 0;
 * await runJob();
 * if ((readOomKills(dir) ?? 0) > before) console.log('the kernel OOM-killed something in the job');
 */
export function readOomKills(cgroup?: string): number | undefined {
  return oomKills(cgroup, readFresh);
}

/** The killer's view of its budget: headroom and the kernel's OOM-kill counter, read through descriptors kept open
 *  between `open()` and `close()` (fresh reads otherwise). */
export class Budget {
  readonly cgroup: string | undefined;
  #files: KeptFiles | undefined;
  #oomLast: number | undefined;
  #oomSeen = 0;

  /** Reads the headroom once (so a bad directory fails here) and the OOM-kill count the later ones add to. */
  constructor(cgroup: string | undefined) {
    this.cgroup = cgroup;
    measure(cgroup, readFresh);
    this.#oomLast = oomKills(cgroup, readFresh);
  }

  open(): void {
    this.#files ??= new KeptFiles();
  }

  close(): void {
    this.#files?.close();
    this.#files = undefined;
  }

  headroom(): MemoryHeadroom {
    return measure(this.cgroup, this.#files?.read ?? readFresh);
  }

  /** The kernel's OOM kills in the budget since this object was made. */
  get oomKills(): number {
    return this.#oomSeen;
  }

  /** Reads the kernel's counter: the event to emit when it grew since the last call, with `m` as measured. */
  kernelOom(m: MemoryHeadroom, episode: number, pressured: boolean): KernelOomEvent | undefined {
    const now = oomKills(this.cgroup, this.#files?.read ?? readFresh);
    const last = this.#oomLast;
    this.#oomLast = now;
    // A count that went down (the group was removed and made again) starts a new baseline.
    if (now === undefined || last === undefined || now <= last) return undefined;
    this.#oomSeen += now - last;
    return {
      count: now - last,
      kills: this.#oomSeen,
      episode,
      pressured,
      available: m.available,
      total: m.total,
      limitedBy: m.limitedBy,
    };
  }
}
