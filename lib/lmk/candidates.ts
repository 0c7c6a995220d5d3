// Who the killer may act on: listing the source as live, verified PidFds, reading what ranking needs, and ranking.
// Membership (the cgroup, the parent) is checked again *after* pidfd_open, with the pidfd alive after that check:
// from then on the PidFd names that process and no other, so a pid recycled later cannot redirect a signal.
import { C } from '../binding';
import { cgroupDir, readCgroupProcs } from '../cgroup';
import { invalidType } from '../validate';
import { MemoryInfo, memoryFromStatus, readMemory } from '../memory';
import { PidFd } from '../pidfd';
import {
  ancestors,
  childrenByScan,
  hasChildrenFiles,
  listChildren,
  parseCgroupV2,
  parseKb,
  parseStat,
  ProcStat,
  readChecked,
  statsByScan,
} from '../procfs';
import { readHeadroom } from './budget';
import { matchCandidate, readTexts, Texts } from './match';
import { CandidateSource, LowMemoryKillerOptions, toBytes } from './options';

/**
 * A process the killer may act on, with what it knows of it at listing time. Everything here comes from one read
 * of /proc/<pid>/status and one of oom_score_adj (no smaps_rollup: it takes tens of ms on a large process).
 *
 * @example
 * const ranked: Candidate[] = await lmk.candidates(); // first: first to be killed
 * for (const c of ranked) console.log(c.pid, c.comm, c.tier, c.oomScoreAdj, c.badness, c.protected ? '(protected)' : '');
 */
export interface Candidate {
  pid: number;
  /** The handle every action goes through. */
  pidfd: PidFd;
  /** The command name (`Name` of /proc/<pid>/status, the same as /proc/<pid>/comm). */
  comm: string;
  /** /proc/<pid>/oom_score_adj (-1000 .. 1000; higher dies first by default). */
  oomScoreAdj: number;
  /** From /proc/<pid>/status (`source: 'status'`: `pss` equals `rss`, an upper bound); `pidfd.memory()` reads
   *  smaps_rollup for the proportional count. */
  memory: MemoryInfo;
  /** Bytes of page tables (`VmPTE`). */
  pageTables: number;
  /** Bytes held by what the kill mode takes along besides this process, each process counted as RSS + swap + page
   *  tables: its descendants (`tree`), the rest of its process group (`group`), the rest of its cgroup v2 group
   *  (`cgroup`); 0 for `process`. The killer itself, its ancestors and pid 1 are never counted. */
  alongside: number;
  /** What the kill takes, as the kernel's OOM killer counts memory: rss + swap + pageTables + alongside. This is
   *  what `minVictim` is compared with. */
  size: number;
  /** The kernel's OOM badness (mm/oom_kill.c) against the killer's budget, in bytes: `size` plus oomScoreAdj ×
   *  (budget pages / 1000) pages, the budget being its total plus swap (MemTotal + SwapTotal for the system, the
   *  limit plus swap for a memory cgroup). Higher dies first by default. */
  badness: number;
  /** `prefer` (killed before any other), `normal`, or `avoid` (killed only when no other is left). */
  tier: 'prefer' | 'normal' | 'avoid';
  /** Never reclaimed, trimmed or killed: in the `protect` list, or at oom_score_adj -1000 (which the kernel never
   *  kills) and not in `prefer`. */
  protected: boolean;
}

interface Listed {
  pidfd: PidFd;
  ours: boolean; // opened by the killer (closed by it)
}

/** The live candidates of a source, as PidFds kept open from one listing to the next (closed when they leave). */
export class CandidateList {
  #source: CandidateSource;
  #listed = new Map<number, Listed>();

  constructor(source: CandidateSource) {
    this.#source = source;
  }

  // Pids (or PidFds) from the source → live PidFds whose membership was checked after opening.
  async list(): Promise<PidFd[]> {
    const src = this.#source;
    const seen = new Set<number>();
    const out: PidFd[] = [];
    const admit = (pidfd: PidFd): void => {
      if (pidfd.pid === process.pid || pidfd.pid === 1 || seen.has(pidfd.pid)) return;
      seen.add(pidfd.pid);
      out.push(pidfd);
    };
    if (typeof src === 'function') {
      for (const x of await src()) {
        if (x instanceof PidFd) {
          if (!x.closed && !x.exited) admit(x);
        } else if (Number.isInteger(x) && x > 0) {
          const p = this.#open(x);
          if (p) admit(p);
        } else {
          throw invalidType('a candidate', 'a pid or a PidFd', x);
        }
      }
    } else if ('cgroup' in src) {
      const procs = (): Set<number> => new Set(readCgroupProcs(src.cgroup));
      const opened = [...procs()].map((pid) => this.#open(pid)).filter((p): p is PidFd => p !== undefined);
      // Opened after the first read: check membership again now, and that each process lived through that check.
      const again = procs();
      for (const p of opened) if (again.has(p.pid) && !p.exited) admit(p);
    } else {
      const parent = src.childrenOf;
      for (const pid of childPids(parent)) {
        const before = this.#listed.get(pid)?.pidfd;
        const p = this.#open(pid);
        if (p === undefined) continue;
        // Verified as a child by an earlier listing and alive after this one: the pid named it all along, and a
        // child stays a child while its parent lives. Only a new PidFd needs its parent read.
        if (p === before) {
          admit(p);
          continue;
        }
        try {
          if (parseStat(readChecked(p, 'stat', { allowExiting: true })).ppid === parent) admit(p);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
        }
      }
    }
    // Forget (and close) what is no longer listed.
    for (const [pid, l] of this.#listed) {
      if (!seen.has(pid)) {
        if (l.ours) l.pidfd.close();
        this.#listed.delete(pid);
      }
    }
    for (const p of out) if (!this.#listed.has(p.pid)) this.#listed.set(p.pid, { pidfd: p, ours: false });
    return out;
  }

  // A PidFd for a listed pid: the one from an earlier listing while that process lives, else a new one.
  #open(pid: number): PidFd | undefined {
    const known = this.#listed.get(pid);
    if (known && !known.pidfd.closed && !known.pidfd.exited) return known.pidfd;
    if (known) {
      if (known.ours) known.pidfd.close();
      this.#listed.delete(pid);
    }
    try {
      const p = PidFd.open(pid);
      this.#listed.set(pid, { pidfd: p, ours: true });
      return p;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ESRCH') return undefined;
      throw err;
    }
  }

  /** Forgets (and closes, if the killer opened it) the PidFd of a victim. */
  forget(p: PidFd): void {
    const listed = this.#listed.get(p.pid);
    if (listed?.pidfd === p) {
      if (listed.ours) p.close();
      this.#listed.delete(p.pid);
    }
  }

  /** Closes every PidFd the killer opened. */
  close(): void {
    for (const l of this.#listed.values()) if (l.ours) l.pidfd.close();
    this.#listed.clear();
  }
}

let childrenFiles: boolean | undefined;

// A hint: the children of `pid`, from its threads' children files where the kernel has them (no /proc scan).
function childPids(pid: number): number[] {
  childrenFiles ??= hasChildrenFiles();
  return childrenFiles === true ? listChildren(pid) : (childrenByScan().get(pid) ?? []);
}

/** What ranking weighs the adj against: the budget's size, as `headroom()` reports it. */
export interface RankBudget {
  total: number;
  swapTotal: number;
}

/**
 * The default order within a tier: higher badness first (the kernel's OOM killer's choice against this budget),
 * then larger size, then lower pid.
 *
 * @example
 * const lmk = new LowMemoryKiller({ candidates, minAvailable: '10%', rank: (a, b) => defaultRank(a, b) });
 */
export const defaultRank = (a: Candidate, b: Candidate): number =>
  b.badness - a.badness || b.size - a.size || a.pid - b.pid;

const TIER = { prefer: 0, normal: 1, avoid: 2 } as const;
// The Name field of status is comm with \n, \t, \\ ... escaped (seq_escape_str with ESCAPE_SPACE | ESCAPE_SPECIAL).
const UNESCAPE: Record<string, string> = { n: '\n', t: '\t', r: '\r', f: '\f', v: '\v', a: '\x07', e: '\x1b' };
function statusName(status: string): string {
  const m = /^Name:\t(.*)$/m.exec(status);
  return m === null ? '' : m[1].replace(/\\(.)/g, (_, ch: string) => UNESCAPE[ch] ?? ch);
}

// RSS + swap + page tables of a process that is not itself ranked (a descendant, a group or cgroup member), read
// through a pidfd of its own (so a leader-exited member counts too); 0 once it has exited.
function footprintOf(pid: number): number {
  let p: PidFd;
  try {
    p = PidFd.open(pid);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') return 0;
    throw err;
  }
  try {
    const s = parseKb(readChecked(p, 'status'));
    return (s.get('VmRSS') ?? 0) + (s.get('VmSwap') ?? 0) + (s.get('VmPTE') ?? 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') return 0;
    throw err;
  } finally {
    p.close();
  }
}

// What the kill mode takes along besides the candidate, in bytes. `scan` is one /proc scan shared by the ranking.
function alongside(
  c: Candidate,
  mode: LowMemoryKillerOptions['killMode'],
  scan: () => Map<number, ProcStat>,
  spared: () => Set<number>,
): number {
  let pids: Iterable<number> = [];
  if (mode === 'tree') {
    const seen = new Set([c.pid]);
    const todo = [c.pid];
    while (todo.length > 0) {
      for (const k of childPids(todo.pop() as number)) {
        if (seen.has(k)) continue;
        seen.add(k);
        todo.push(k);
      }
    }
    seen.delete(c.pid);
    pids = seen;
  } else if (mode === 'group') {
    const pgid = parseStat(readChecked(c.pidfd, 'stat', { allowExiting: true })).pgid;
    pids = [...scan()].filter(([pid, st]) => st.pgid === pgid && pid !== c.pid).map(([pid]) => pid);
  } else if (mode === 'cgroup') {
    const path = parseCgroupV2(readChecked(c.pidfd, 'cgroup', { allowExiting: true }));
    const dir = path === undefined ? undefined : cgroupDir(path);
    try {
      pids = dir === undefined ? [] : readCgroupProcs(dir).filter((pid) => pid !== c.pid);
    } catch {
      pids = []; // the group was removed meanwhile
    }
  }
  let sum = 0;
  for (const pid of pids) if (!spared().has(pid)) sum += footprintOf(pid);
  return sum;
}

// No kill ever takes this process, its ancestors or pid 1, so they never count as taken along.
function selfAndAncestors(): Set<number> {
  return new Set([1, process.pid, ...ancestors()]);
}

/**
 * Reads each listed process (those that exited meanwhile are left out) and ranks them: first, first to be killed.
 * Order: the `prefer` tier, then the others, then the `avoid` tier; within a tier, candidates whose size reaches
 * `minVictim` before smaller ones; then `options.rank` if given, else `defaultRank` (the kernel's OOM badness
 * against `budget`, by default the killer's own: `readHeadroom` of `options.memory`). Protected candidates keep
 * their place in that order, flagged.
 *
 * @example
 * const ranked = rankCandidates(pidfds, { candidates: () => [], minAvailable: '10%' }, lmk.headroom());
 */
export function rankCandidates(
  handles: PidFd[],
  options: Readonly<LowMemoryKillerOptions>,
  budget: RankBudget = readHeadroom(options.memory?.cgroup),
): Candidate[] {
  const out: Candidate[] = [];
  const { protect, prefer, avoid, killMode } = options;
  // oom_badness: adj × (totalpages / 1000) pages, the division first, in whole pages, as the kernel does it.
  const page = C.PAGE_SIZE;
  const perAdj = Math.floor(Math.floor((budget.total + budget.swapTotal) / page) / 1000) * page;
  const minVictim = options.minVictim === undefined ? 0 : toBytes(options.minVictim, budget.total);
  let stats: Map<number, ProcStat> | undefined;
  const scan = (): Map<number, ProcStat> => (stats ??= statsByScan());
  let never: Set<number> | undefined;
  const spared = (): Set<number> => (never ??= selfAndAncestors());
  for (const pidfd of handles) {
    try {
      // status needs no PF_EXITING check while it shows VmRSS: its counters are the mm's until exit_mm() drops it,
      // and then the lines are gone (a leader that exited while its threads run: read through a thread).
      let status = readChecked(pidfd, 'status', { allowExiting: true });
      if (!/^VmRSS:/m.test(status)) status = readChecked(pidfd, 'status');
      const oomScoreAdj = Number(readChecked(pidfd, 'oom_score_adj', { allowExiting: true }).trim());
      const fields = parseKb(status);
      const memory = memoryFromStatus(fields) ?? readMemory(pidfd, 'statm');
      const pageTables = fields.get('VmPTE') ?? 0;
      const c: Candidate = {
        pid: pidfd.pid,
        pidfd,
        comm: statusName(status),
        oomScoreAdj,
        memory,
        pageTables,
        alongside: 0,
        size: 0,
        badness: 0,
        tier: 'normal',
        protected: false,
      };
      c.alongside = alongside(c, killMode, scan, spared);
      c.size = memory.rss + memory.swap + pageTables + c.alongside;
      c.badness = c.size + oomScoreAdj * perAdj;
      let texts: Texts | undefined;
      const lazy = (): Texts => (texts ??= readTexts(pidfd));
      const preferred = matchCandidate(c, prefer, lazy);
      c.tier = preferred ? 'prefer' : matchCandidate(c, avoid, lazy) ? 'avoid' : 'normal';
      c.protected = matchCandidate(c, protect, lazy) || (oomScoreAdj === -1000 && !preferred);
      out.push(c);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
    }
  }
  const rank = options.rank ?? defaultRank;
  return out.sort(
    (a, b) => TIER[a.tier] - TIER[b.tier] || Number(b.size >= minVictim) - Number(a.size >= minVictim) || rank(a, b),
  );
}
