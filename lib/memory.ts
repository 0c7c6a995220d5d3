// The memory view of another process (/proc/<pid>/smaps_rollup, status, statm, maps) and reclaim() built on it.
//
// Every read goes through a PidFd and is followed by a look at the pidfd: if the process has exited by then, the
// data may belong to a stranger that inherited the pid (or be the empty maps of a zombie), so it is thrown away and
// the call fails with ESRCH. If the process is still alive after the read, the pid named it for the whole read: a
// pid cannot change hands while its process lives.
import { C } from './binding';
import { SystemError } from './errors';
import { adviseRanges } from './madvise';
import { goneError, parseKb, parseStatm, ProcessHandle, readChecked } from './procfs';
import { invalidType, invalidValue, validateObject } from './validate';

/**
 * A process's memory in bytes, as `pidfd.memory()` returns it. Where each number comes from (see also
 * docs/memory-hints.md):
 *
 * - `rss`: `Rss` of /proc/<pid>/smaps_rollup (resident pages summed over the mappings).
 * - `pss`: `Pss` of smaps_rollup (each resident page divided by the number of processes mapping it).
 * - `anon`: `Anonymous` of smaps_rollup (resident anonymous pages, including private copies of file pages).
 * - `file`, `shmem`: `RssFile` and `RssShmem` of /proc/<pid>/status, read right after smaps_rollup.
 *   smaps_rollup has no resident split for them (only the proportional `Pss_File` and `Pss_Shmem`); the status
 *   counters are the kernel's own per-process resident page counts.
 * - `swap`: `Swap` of smaps_rollup.
 *
 * Fallbacks, where smaps_rollup cannot be read (before Linux 4.14, or without ptrace access to the process):
 * `source: 'status'` takes `rss` from `VmRSS`, `anon`/`file`/`shmem` from `RssAnon`/`RssFile`/`RssShmem` and
 * `swap` from `VmSwap`; `source: 'statm'` (before 4.5) takes `rss` from the resident field, `file` from the shared
 * field (file and shmem together; `shmem` is 0), `anon` = rss - shared, `swap` 0. Without smaps_rollup there is no
 * proportional count: `pss` is then equal to `rss` (an upper bound).
 *
 * @example
 * const m: MemoryInfo = p.memory();
 * console.log(`${(m.pss / 2 ** 20).toFixed(1)} MiB PSS, ${m.swap} bytes swapped (from ${m.source})`);
 */
export interface MemoryInfo {
  rss: number;
  pss: number;
  anon: number;
  file: number;
  shmem: number;
  swap: number;
  /** The file the numbers came from. */
  source: 'smaps_rollup' | 'status' | 'statm';
}

/**
 * The kinds of mapping `pidfd.maps()` tells apart.
 *
 * @example
 * const count = new Map<MappingKind, number>();
 * for (const m of p.maps()) count.set(m.kind, (count.get(m.kind) ?? 0) + 1);
 */
export type MappingKind = 'anon' | 'file' | 'stack' | 'heap' | 'shmem' | 'special';

/**
 * One line of /proc/<pid>/maps. `kind`: `heap` (`[heap]`), `stack` (`[stack]`), `special` (any other bracketed
 * kernel mapping: `[vdso]`, `[vvar]`, `[vsyscall]`, `[uprobes]` ...), `shmem` (shared anonymous memory
 * (`/dev/zero (deleted)`), SysV shared memory (`/SYSV...`), memfd (`/memfd:...`) and `[anon_shmem:...]`), `anon`
 * (no path, or a named anonymous mapping `[anon:...]`), else `file`.
 *
 * @example
 * const heap: Mapping | undefined = p.maps().find((m) => m.kind === 'heap');
 * if (heap) console.log(`heap: ${heap.end - heap.start} bytes at 0x${heap.start.toString(16)}`);
 */
export interface Mapping {
  start: bigint;
  end: bigint;
  /** `rwxp` / `r--s` ... (`s`: shared, `p`: private). */
  perms: string;
  offset: bigint;
  /** Device as `major:minor` in hex, as the kernel prints it. */
  device: string;
  inode: number;
  /** The path or pseudo-name; '' for plain anonymous memory. */
  path: string;
  kind: MappingKind;
}

/**
 * Options of `pidfd.reclaim()`.
 *
 * @example
 * const opts: ReclaimOptions = {
 *   advice: 'cold', kinds: ['anon', 'heap'], filter: (m) => m.end - m.start >= 2n ** 20n, // 1 MiB or larger
 * };
 * p.reclaim(opts);
 */
export interface ReclaimOptions {
  /** `pageout` (default): reclaim the pages now; `cold`: move them to the inactive list, reclaimed first later. */
  advice?: 'pageout' | 'cold';
  /** Which mappings to advise (default: all but `special`, which the kernel refuses: a `[vsyscall]` range fails
   *  the whole call with EFAULT, `[vvar]` with EINVAL). `special` is never advised, even if listed. */
  kinds?: Exclude<MappingKind, 'special'>[];
  /** A further filter over the chosen mappings. */
  filter?: (mapping: Mapping) => boolean;
}

/**
 * What `pidfd.reclaim()` did.
 *
 * @example
 * const r: ReclaimResult = p.reclaim();
 * console.log(`advised ${r.advised} bytes in ${r.ranges} mappings; RSS ${r.rssBefore} -> ${r.rssAfter}`);
 */
export interface ReclaimResult {
  advice: 'pageout' | 'cold';
  /** Bytes the kernel accepted advice for. Not bytes reclaimed: without swap, anonymous pages stay resident. */
  advised: number;
  /** `memory().rss` before and after. */
  rssBefore: number;
  rssAfter: number;
  /** Mappings advised. */
  ranges: number;
  /**
   * The mappings changed while reclaim() ran: a range stopped being mapped in the middle of the call (the kernel
   * refused it), or the chosen ranges read afterwards differ from those read before. On a refused range the maps
   * are read again and advising goes on from where it stopped, over what is mapped now (`retries` times).
   */
  mapsChanged: boolean;
  retries: number;
}

const KINDS: readonly MappingKind[] = ['anon', 'file', 'stack', 'heap', 'shmem'];
const MAX_RETRIES = 3;

function fromRollup(rollup: string, status: string): MemoryInfo {
  const r = parseKb(rollup);
  const s = parseKb(status);
  const need = (m: Map<string, number>, k: string, file: string): number => {
    const v = m.get(k);
    if (v === undefined) throw Object.assign(new Error(`no ${k} field in ${file}`), { code: 'ERR_PIDFD_PROC_FORMAT' });
    return v;
  };
  return {
    rss: need(r, 'Rss', 'smaps_rollup'),
    pss: need(r, 'Pss', 'smaps_rollup'),
    anon: need(r, 'Anonymous', 'smaps_rollup'),
    file: s.get('RssFile') ?? 0,
    shmem: s.get('RssShmem') ?? 0,
    swap: r.get('Swap') ?? 0,
    source: 'smaps_rollup',
  };
}

/** @internal MemoryInfo from the parsed kB fields of /proc/<pid>/status (`source: 'status'`); undefined without
 *  VmRSS/RssAnon (before Linux 4.5, or a kernel thread). */
export function memoryFromStatus(s: Map<string, number>): MemoryInfo | undefined {
  const rss = s.get('VmRSS');
  const anon = s.get('RssAnon');
  if (rss === undefined || anon === undefined) return undefined; // before Linux 4.5, or a kernel thread
  return {
    rss,
    pss: rss,
    anon,
    file: s.get('RssFile') ?? 0,
    shmem: s.get('RssShmem') ?? 0,
    swap: s.get('VmSwap') ?? 0,
    source: 'status',
  };
}

function fromStatm(statm: string): MemoryInfo {
  const { resident, shared } = parseStatm(statm);
  const rss = resident * C.PAGE_SIZE;
  const file = shared * C.PAGE_SIZE;
  return { rss, pss: rss, anon: Math.max(0, rss - file), file, shmem: 0, swap: 0, source: 'statm' };
}

/** @internal `source` forces a fallback (for tests). */
export function readMemory(p: ProcessHandle, source: MemoryInfo['source'] = 'smaps_rollup'): MemoryInfo {
  if (source === 'smaps_rollup') {
    let rollup: string | undefined;
    try {
      rollup = readChecked(p, 'smaps_rollup');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT' && code !== 'EACCES' && code !== 'EPERM') throw err;
    }
    if (rollup !== undefined) {
      // A kernel thread (no mm) reads back empty: no Rss line.
      if (!/^Rss:/m.test(rollup))
        return { rss: 0, pss: 0, anon: 0, file: 0, shmem: 0, swap: 0, source: 'smaps_rollup' };
      return fromRollup(rollup, readChecked(p, 'status'));
    }
  }
  if (source !== 'statm') {
    const m = memoryFromStatus(parseKb(readChecked(p, 'status')));
    if (m !== undefined) return m;
  }
  return fromStatm(readChecked(p, 'statm'));
}

function kindOf(path: string): MappingKind {
  if (path === '') return 'anon';
  if (path === '[heap]') return 'heap';
  if (path === '[stack]' || path.startsWith('[stack:')) return 'stack';
  if (path.startsWith('[anon_shmem:')) return 'shmem';
  if (path.startsWith('[anon:')) return 'anon';
  if (path.startsWith('[')) return 'special';
  if (path.startsWith('/dev/zero') || path.startsWith('/SYSV') || path.startsWith('/memfd:')) return 'shmem';
  return 'file';
}

/** Parses /proc/<pid>/maps text. */
export function parseMaps(text: string): Mapping[] {
  const out: Mapping[] = [];
  for (const line of text.split('\n')) {
    // start-end perms offset dev inode [path]; the path may contain spaces, so take it as the rest of the line.
    const m = /^([0-9a-f]+)-([0-9a-f]+) (\S+) ([0-9a-f]+) (\S+) (\d+) *(.*)$/.exec(line);
    if (!m) continue;
    const path = m[7];
    out.push({
      start: BigInt(`0x${m[1]}`),
      end: BigInt(`0x${m[2]}`),
      perms: m[3],
      offset: BigInt(`0x${m[4]}`),
      device: m[5],
      inode: Number(m[6]),
      path,
      kind: kindOf(path),
    });
  }
  return out;
}

/** @internal */
export function readMaps(p: ProcessHandle): Mapping[] {
  return parseMaps(readChecked(p, 'maps'));
}

interface Plan {
  advice: 'pageout' | 'cold';
  kinds: Set<MappingKind>;
  filter: ((m: Mapping) => boolean) | undefined;
}

function choose(maps: Mapping[], plan: Plan, from: bigint): { address: bigint; length: bigint }[] {
  const out: { address: bigint; length: bigint }[] = [];
  for (const m of maps) {
    if (m.kind === 'special' || !plan.kinds.has(m.kind) || m.end <= from) continue;
    if (plan.filter !== undefined && !plan.filter(m)) continue;
    const start = m.start > from ? m.start : from;
    out.push({ address: start, length: m.end - start });
  }
  return out;
}

const sameRanges = (a: { address: bigint; length: bigint }[], b: { address: bigint; length: bigint }[]): boolean =>
  a.length === b.length && a.every((r, i) => r.address === b[i].address && r.length === b[i].length);

function toPlan(options: unknown): Plan {
  validateObject(options, 'options');
  const o = (options ?? {}) as ReclaimOptions;
  const advice = o.advice ?? 'pageout';
  if (advice !== 'pageout' && advice !== 'cold')
    throw invalidValue('options.advice', advice, "must be 'pageout' or 'cold'");
  let kinds = new Set<MappingKind>(KINDS);
  if (o.kinds !== undefined) {
    if (!Array.isArray(o.kinds)) throw invalidType('options.kinds', 'an array of mapping kinds', o.kinds);
    for (const k of o.kinds as string[]) {
      if (!KINDS.includes(k as MappingKind) && k !== 'special') {
        throw invalidValue('options.kinds', k, "must list 'anon', 'file', 'stack', 'heap' or 'shmem'");
      }
    }
    kinds = new Set((o.kinds as MappingKind[]).filter((k) => k !== 'special'));
  }
  if (o.filter !== undefined && typeof o.filter !== 'function')
    throw invalidType('options.filter', 'a function', o.filter);
  return { advice, kinds, filter: o.filter };
}

/** @internal pidfd.reclaim(): advise the chosen mappings in address order, re-planning when they change. */
export function reclaim(p: ProcessHandle, options?: ReclaimOptions): ReclaimResult {
  const plan = toPlan(options);
  const rssBefore = readMemory(p).rss;
  const first = choose(readMaps(p), plan, 0n);
  let ranges = first;
  let advised = 0;
  let retries = 0;
  let changed = false;
  for (;;) {
    try {
      advised += adviseRanges(p.fd, plan.advice, ranges);
      break;
    } catch (err) {
      const e = err as SystemError & { bytesAdvised?: number };
      // ENOMEM: part of a range is no longer mapped; EFAULT/EINVAL: what is mapped there now refuses the advice.
      if (
        e.syscall !== 'process_madvise' ||
        !['ENOMEM', 'EFAULT', 'EINVAL'].includes(e.code) ||
        retries === MAX_RETRIES
      ) {
        if (e.code === 'ESRCH' || p.exited) throw goneError(p.pid, 'maps');
        throw err;
      }
      if (p.exited) throw goneError(p.pid, 'maps');
      // Find where the kernel stopped: the ranges are in address order, and it finished bytesAdvised of them.
      let done = BigInt(e.bytesAdvised ?? 0);
      advised += Number(done);
      let resume = ranges.length > 0 ? ranges[ranges.length - 1].address + ranges[ranges.length - 1].length : 0n;
      for (const r of ranges) {
        if (done < r.length) {
          resume = r.address + done;
          break;
        }
        done -= r.length;
      }
      // Skip the page the kernel refused (it is not mapped, or not advisable, as of now) and go on from there.
      resume += BigInt(C.PAGE_SIZE);
      changed = true;
      retries++;
      ranges = choose(readMaps(p), plan, resume);
    }
  }
  const after = choose(readMaps(p), plan, 0n);
  if (!sameRanges(first, after)) changed = true;
  return {
    advice: plan.advice,
    advised,
    rssBefore,
    rssAfter: readMemory(p).rss,
    ranges: first.length,
    mapsChanged: changed,
    retries,
  };
}
