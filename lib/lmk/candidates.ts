// Who the killer may act on: listing the source as live, verified PidFds, reading what ranking needs, and ranking.
// Membership (the cgroup, the parent) is checked again *after* pidfd_open, with the pidfd alive after that check:
// from then on the PidFd names that process and no other, so a pid recycled later cannot redirect a signal.
import { readCgroupProcs } from '../cgroup';
import { invalidType } from '../validate';
import { MemoryInfo } from '../memory';
import { PidFd } from '../pidfd';
import { childrenByScan, parseStat, readChecked } from '../procfs';
import type { CandidateSource, LowMemoryKillerOptions } from './options';

/**
 * A process the killer may act on, with what it knows of it at listing time.
 *
 * @example
 * const ranked: Candidate[] = await lmk.candidates(); // first: first to be killed
 * for (const c of ranked) console.log(c.pid, c.comm, c.oomScoreAdj, c.memory.pss, c.protected ? '(protected)' : '');
 */
export interface Candidate {
  pid: number;
  /** The handle every action goes through. */
  pidfd: PidFd;
  /** /proc/<pid>/comm */
  comm: string;
  /** /proc/<pid>/oom_score_adj (-1000 .. 1000; higher dies first by default). */
  oomScoreAdj: number;
  memory: MemoryInfo;
  /** In the `protect` list: never reclaimed, trimmed or killed. */
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
      for (const pid of childrenByScan().get(parent) ?? []) {
        const p = this.#open(pid);
        if (p === undefined) continue;
        try {
          if (parseStat(readChecked(p, 'stat')).ppid === parent) admit(p);
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

/** The default order: higher oom_score_adj first, then larger PSS. */
export const defaultRank = (a: Candidate, b: Candidate): number =>
  b.oomScoreAdj - a.oomScoreAdj || b.memory.pss - a.memory.pss;

/** Reads each listed process (those that exited meanwhile are left out) and ranks them: first, first to be killed. */
export function rankCandidates(handles: PidFd[], options: Readonly<LowMemoryKillerOptions>): Candidate[] {
  const out: Candidate[] = [];
  const protect = options.protect;
  for (const pidfd of handles) {
    try {
      const memory = pidfd.memory();
      const oomScoreAdj = Number(readChecked(pidfd, 'oom_score_adj').trim());
      const comm = readChecked(pidfd, 'comm').trim();
      const c: Candidate = { pid: pidfd.pid, pidfd, comm, oomScoreAdj, memory, protected: false };
      c.protected = Array.isArray(protect)
        ? protect.includes(c.pid)
        : typeof protect === 'function'
          ? protect(c) === true
          : false;
      out.push(c);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
    }
  }
  return out.sort(options.rank ?? defaultRank);
}
