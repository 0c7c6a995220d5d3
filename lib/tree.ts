// killTree(): kill a process and all its descendants with no pid-reuse race and no member escaping the walk.
//
// The walk reads /proc/<pid>/task/<tid>/children of every thread of every member and takes a pidfd for each
// child it finds. From then on the pidfds are the source of truth: a member whose parent dies is re-parented (to
// a subreaper or init) and can no longer be found by walking, but we still hold it.
//
// Why a pid read from a children file can be trusted (the check in `adoptChild`):
//   t0  read X from the children file of member M (we hold M's pidfd)
//   t1  pidfd_open(X): names whatever process F has pid X at t1 (X may have been reaped and recycled since t0)
//   t2  read /proc/X/stat: ppid P
//   t3  poll both pidfds: F has not exited, M has not exited
// F not exited at t3 means F still held pid X during [t1, t3] (a pid is only handed on after its process is
// reaped), so the stat read at t2 was F's: F's parent at t2 had pid P. M not exited at t3 means pid M.pid named M
// during [t0, t3]. So if P == M.pid, F was M's child at t2: F belongs to the tree (whether or not F is the process
// we saw at t0 does not matter). Otherwise F is closed and skipped. The children file is only a hint; the pidfds
// and this check decide. A child that exited before t3 cannot be checked and needs no kill; it is skipped.
//
// Why the tree cannot grow behind the walk: every member is sent SIGSTOP *before* its children file is read.
// Once pidfd_send_signal(SIGSTOP) has returned, the process cannot complete a fork until it is continued: fork
// (copy_process) re-checks for pending signals under the sighand lock just before attaching the child, and
// restarts the syscall if one is pending; a child attached before that point is already on the children list
// we read afterwards. So one pass stops the whole tree; further passes repeat until nothing new appears, which
// also catches children re-parented to a member that is a subreaper.
//
// After the polite signal the members are continued, so their handlers run, and a handler may fork. So the walk
// goes on, from the pidfds we hold, until every member (old and new) has exited: new children get the polite
// signal too, and at escalation the whole tree is stopped and walked again before the kill signal, so nothing
// forked during the grace period escapes as long as its parent was still alive when we walked. The one thing no
// walk can see is a process that forks and exits between two walks: its child is re-parented away from the tree
// at once. Give `cgroup` (a cgroup v2 directory holding the tree) to close that gap: its processes are members
// too (read from cgroup.procs on every walk, each checked the same way against /proc/<pid>/cgroup), so an orphan
// that left the tree is still found while its cgroup is walked, and escalation writes `cgroup.kill`, which kills
// every process in the cgroup, wherever it was re-parented, even one born after the last walk.
import { setMaxListeners } from 'node:events';
import { performance } from 'node:perf_hooks';
import { capabilities } from './capabilities';
import { cgroupOf, cgroupPath, killCgroup, readCgroupProcs, waitCgroupEmpty } from './cgroup';
import { abortReason, E } from './errors';
import { ExitInfo } from './exit';
import { PidFd } from './pidfd';
import {
  childrenByScan,
  hasChildrenFiles,
  listChildren,
  listPids,
  parseStat,
  ProcStat,
  readChecked,
  statUnchecked,
} from './procfs';
import { SIGCONT, SIGKILL, SIGSTOP, signalName } from './signals';
import {
  isStopped,
  openTarget,
  Resolved,
  resolveOptions,
  stillRunning,
  Target,
  TerminateOptions,
  tryRelease,
} from './target';
import { invalidType, invalidValue, validateBoolean } from './validate';

/**
 * Options of `killTree`: those of `terminate`, and:
 *
 * @example
 * const opts: KillTreeOptions = { includeRoot: false, timeout: 2000 };
 * await killTree(shell, opts); // everything the shell started; the shell itself is never signalled
 */
export interface KillTreeOptions extends TerminateOptions {
  /** Kill the root too (default true). With false the root is never signalled (not even stopped). */
  includeRoot?: boolean;
  /** A cgroup v2 directory holding the tree: its processes count as members (also those re-parented away from
   *  the tree), escalation writes `cgroup.kill` (Linux 5.14), and the call then waits for the cgroup to empty. */
  cgroup?: string;
}

/**
 * One process of the tree and how it ended.
 *
 * @example
 * const stubborn: TreeMember[] = (await killTree(child)).processes.filter((m) => m.escalated);
 * for (const m of stubborn) console.log(m.pid, 'child of', m.parent, m.signals.join(' '));
 */
export interface TreeMember {
  pid: number;
  /** The member under whose children it was found; null for the root (and for members of a dead root's group). */
  parent: number | null;
  exit: ExitInfo;
  /** Whether it needed the kill signal. */
  escalated: boolean;
  /** Whether process_mrelease reclaimed its memory. */
  released: boolean;
  /** The signals sent to it, in order (SIGSTOP / SIGCONT included). */
  signals: string[];
}

/**
 * What `killTree` resolves with.
 *
 * @example
 * const r: KillTreeResult = await killTree(rootPid);
 * console.log(`${r.processes.length} processes gone, cgroup.kill: ${r.cgroupKilled}`);
 */
export interface KillTreeResult {
  root: number;
  /** Every process of the tree that was alive when found, root first. */
  processes: TreeMember[];
  /** Whether any member needed the kill signal. */
  escalated: boolean;
  /** Whether `cgroup.kill` was written. */
  cgroupKilled: boolean;
  elapsedMs: number;
}

// How often the tree is walked again while its members handle the polite signal: from FIRST_WALK_MS, doubling
// up to MAX_WALK_MS. It only runs while the tree is dying, never while idle.
const FIRST_WALK_MS = 5;
const MAX_WALK_MS = 50;
// A tree that keeps growing while stopped is impossible (stopped processes cannot fork), but a member that is a
// subreaper could keep receiving orphans from outside; bound the passes.
const MAX_PASSES = 1000;

let childrenFiles: boolean | undefined;

/** Tests only: walk by scanning every /proc/<pid>/stat for parents, as on kernels without children files. */
export function forceProcScan(on: boolean | undefined): void {
  childrenFiles = on === undefined ? undefined : !on;
}

/**
 * How the walk lists a member's children: /proc/<pid>/task/<tid>/children (CONFIG_PROC_CHILDREN, Linux 4.2, on
 * almost everywhere), or else one scan of every /proc/<pid>/stat per pass, grouped by parent. Either is only a
 * hint: adoptChild checks every candidate the same way. A scan is a snapshot taken before the pass, so a child
 * forked just before its parent was stopped in that pass is found in the next one (the walk repeats until a pass
 * finds nothing new, so the result is the same).
 */
function childLister(): (pid: number) => number[] {
  childrenFiles ??= hasChildrenFiles(); // stays undefined (asked again next time) if the check could not run
  if (childrenFiles === true) return listChildren;
  const byParent = childrenByScan();
  return (pid) => byParent.get(pid) ?? [];
}

/** /proc/<pid>/stat of the process `p` names, or undefined once it has exited (then the pid may be another's). */
function statOf(p: PidFd): ProcStat | undefined {
  try {
    return parseStat(readChecked(p, 'stat', { allowExiting: true }));
  } catch {
    return undefined;
  }
}

class Member {
  readonly signals: string[] = [];
  escalated = false;
  released = false;
  stopped = false; // we sent SIGSTOP and have not continued it yet
  exit: ExitInfo | undefined;
  done!: Promise<ExitInfo>;
  constructor(
    readonly p: PidFd,
    readonly owned: boolean,
    readonly parent: number | null,
  ) {}

  send(signo: number): boolean {
    if (this.exit !== undefined) return false;
    const sent = this.p.kill(signo);
    if (sent) this.signals.push(signalName(signo));
    return sent;
  }
}

/**
 * Kills `root` and all its descendants: takes a pidfd for every process while walking /proc (checking each
 * against its parent, so a recycled pid is never taken for a member), stops the tree with SIGSTOP so nothing
 * forks during the walk, walks again until nothing new appears, sends `signal` to every member and continues
 * them, keeps walking (children forked by signal handlers get the signal too) until all have exited or the grace
 * period ends, then stops and walks the tree again, sends `killSignal` and calls process_mrelease, like
 * `terminate`. Resolves once every member has exited, with one entry per process.
 *
 * The calling process is never a member (a tree rooted at one of its ancestors is killed around it); a root that
 * is the calling process is refused (`ERR_INVALID_ARG_VALUE`).
 *
 * If the root has already exited but is still an unreaped zombie that led a process group, the members of that
 * group (its orphaned children and their descendants, typically) are taken instead: while the zombie holds its
 * pid, that group can only be the root's. A root that has been reaped leaves nothing that can be proven to be
 * its tree; the result then has just the root's entry.
 *
 * @example
 * const { processes, escalated } = await killTree(child, { timeout: 2000 });
 * for (const m of processes) console.log(m.pid, m.exit.signal ?? m.exit.code, m.escalated ? '(SIGKILL)' : '');
 */
export function killTree(root: Target, options?: KillTreeOptions): Promise<KillTreeResult> {
  return killTreeWith(root, options, {});
}

/** @internal What the low-memory killer adds to killTree (not part of the public options). */
export interface TreeHooks {
  /** Pids never taken as members (nor, then, what lies below them): this process's ancestors, protected ones. */
  spare?: ReadonlySet<number>;
  /** Aborted: the grace period ends now (escalation, as if the timeout had run out). */
  escalate?: AbortSignal;
  /** Called with each member as it is taken (before it is signalled; the root first). */
  onMember?: (p: PidFd) => void;
}

/** @internal killTree with the low-memory killer's hooks. */
export async function killTreeWith(
  root: Target,
  options: KillTreeOptions | undefined,
  hooks: TreeHooks,
): Promise<KillTreeResult> {
  const t0 = performance.now();
  const o = resolveOptions(options);
  validateBoolean(options?.includeRoot, 'options.includeRoot');
  const includeRoot = options?.includeRoot ?? true;
  const cgroup = options?.cgroup;
  if (cgroup !== undefined && typeof cgroup !== 'string') throw invalidType('options.cgroup', 'of type string', cgroup);
  const cg = cgroup === undefined ? undefined : cgroupPath(cgroup, 'options.cgroup');
  if (o.abortSignal?.aborted) throw abortReason(o.abortSignal);
  if (root === process.pid || (root instanceof PidFd && root.pid === process.pid)) {
    throw invalidValue('root', root, 'is this process: killTree would stop itself');
  }
  const opened = openTarget(root, 'root');
  if ('gone' in opened) {
    const exit = opened.gone;
    return {
      root: exit.pid,
      processes: includeRoot
        ? [{ pid: exit.pid, parent: null, exit, escalated: false, released: false, signals: [] }]
        : [],
      escalated: false,
      cgroupKilled: false,
      elapsedMs: performance.now() - t0,
    };
  }
  const tree = new Tree(opened.p, opened.owned, includeRoot, o.signal, o.abortSignal, hooks);
  tree.cgroup = cg;
  try {
    return await tree.run(o, cg?.dir, t0);
  } finally {
    tree.cleanup();
  }
}

class Tree {
  readonly members: Member[] = [];
  // pid -> the member holding it, for members not yet known to have exited (a dead member's pid may come back
  // as a new child, which is a different process).
  readonly byPid = new Map<number, Member>();
  readonly rootMember: Member;
  readonly aborter = new AbortController();
  alive = 0;
  wake: (() => void) | undefined;
  cgroup: { dir: string; path: string } | undefined;

  constructor(
    root: PidFd,
    owned: boolean,
    readonly includeRoot: boolean,
    readonly politeSignal: number,
    readonly abortSignal: AbortSignal | undefined,
    readonly hooks: TreeHooks = {},
  ) {
    setMaxListeners(0, this.aborter.signal); // one listener per member, by design
    this.rootMember = this.add(root, owned, null, includeRoot);
  }

  // `counted`: whether the tree waits for this member's exit (not for a root left alone).
  add(p: PidFd, owned: boolean, parent: number | null, counted = true): Member {
    const m = new Member(p, owned, parent);
    this.hooks.onMember?.(p);
    this.members.push(m);
    this.byPid.set(p.pid, m);
    if (counted) this.alive++;
    m.done = p.waitExit({ signal: this.aborter.signal }).then((exit) => {
      m.exit = exit;
      m.stopped = false;
      if (counted && --this.alive === 0) this.wake?.();
      return exit;
    });
    m.done.catch(() => {}); // rejected only by our own abort at cleanup
    return m;
  }

  // The members to act on: all, or all but the root when it is left alone.
  *targets(): Iterable<Member> {
    for (const m of this.members) if (m.exit === undefined && (this.includeRoot || m !== this.rootMember)) yield m;
  }

  /** See the comment at the top of this file for why this check is enough. */
  adoptChild(pid: number, parent: Member): PidFd | undefined {
    // Never stop or kill ourselves (a tree rooted at our ancestor), nor a spared process.
    if (pid === process.pid || this.hooks.spare?.has(pid)) return undefined;
    let q: PidFd;
    try {
      q = PidFd.open(pid);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).errno === -E.ESRCH) return undefined;
      throw err;
    }
    const st = statOf(q);
    if (st === undefined || st.ppid !== parent.p.pid || parent.p.exited) {
      q.close();
      return undefined;
    }
    return q;
  }

  /**
   * One pass over the tree from the members we hold (members found during the pass are walked in the same
   * pass). `onNew` runs on each new member before its own children are read (that is where it gets stopped).
   * Returns how many were found.
   */
  walk(onNew: (m: Member) => void): number {
    let found = 0;
    if (this.cgroup !== undefined) {
      for (const pid of cgroupProcs(this.cgroup.dir)) {
        const known = this.byPid.get(pid);
        if ((known !== undefined && !known.p.exited) || (pid === this.rootMember.p.pid && !this.includeRoot)) continue;
        const q = this.adoptFromCgroup(pid, this.cgroup.path);
        if (q === undefined) continue;
        const nm = this.add(q, true, null);
        found++;
        onNew(nm);
      }
    }
    const childrenOf = childLister();
    for (let i = 0; i < this.members.length; i++) {
      const m = this.members[i];
      if (m.exit !== undefined || m.p.exited) continue;
      for (const pid of childrenOf(m.p.pid)) {
        const known = this.byPid.get(pid);
        if (known !== undefined && !known.p.exited) continue;
        const q = this.adoptChild(pid, m);
        if (q === undefined) continue;
        const nm = this.add(q, true, m.p.pid);
        found++;
        onNew(nm);
      }
    }
    return found;
  }

  /** A pid read from cgroup.procs, checked like adoptChild: /proc/<pid>/cgroup read, then the pidfd not exited. */
  adoptFromCgroup(pid: number, path: string): PidFd | undefined {
    if (pid === process.pid || this.hooks.spare?.has(pid)) return undefined;
    let q: PidFd;
    try {
      q = PidFd.open(pid);
    } catch {
      return undefined;
    }
    if (cgroupOf(q) !== path) {
      q.close();
      return undefined;
    }
    return q;
  }

  /** Stops every member we act on and walks until the tree is stable. */
  freeze(): void {
    for (const m of this.targets()) this.stop(m);
    for (let pass = 0; pass < MAX_PASSES; pass++) {
      if (this.walk((m) => this.stop(m)) === 0) break;
    }
  }

  stop(m: Member): void {
    if (!m.stopped && m.send(SIGSTOP)) m.stopped = true;
  }

  continueAll(): void {
    for (const m of this.members) {
      if (m.stopped) {
        m.stopped = false;
        m.send(SIGCONT);
      }
    }
  }

  /**
   * The root exited before it could be stopped, so its children were re-parented and cannot be found from it.
   * If it is still an unreaped zombie, its pid (and so the id of a process group it created) cannot have been
   * reused: the members of that group are then provably the root's group, and become roots of the walk.
   */
  adoptOrphanedGroup(): void {
    const root = this.rootMember.p;
    // The root has exited, so readChecked would refuse it: an unreaped zombie still holds its pid, so the check
    // after this read is that it is not reaped yet.
    if (root.reaped) return;
    const st = statUnchecked(root.pid);
    if (st === undefined || root.reaped || st.pgid !== root.pid) return; // read someone else's, or led no group
    const group = root.pid;
    for (const pid of listPids()) {
      if (pid === root.pid || pid === process.pid || this.byPid.has(pid) || this.hooks.spare?.has(pid)) continue;
      if (statUnchecked(pid)?.pgid !== group) continue; // a hint, checked below
      let q: PidFd;
      try {
        q = PidFd.open(pid);
      } catch {
        continue;
      }
      // Same argument as adoptChild: q not exited after the read means the read was q's; the root still unreaped
      // means the group id still was the root's.
      if (statOf(q)?.pgid !== group || root.reaped) {
        q.close();
        continue;
      }
      this.stop(this.add(q, true, null));
    }
  }

  /** Resolves after `ms`, when every member has exited, or when aborted; whichever comes first. */
  sleep(ms: number, escalate?: AbortSignal): Promise<void> {
    if (this.alive === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const t = setTimeout(done, ms);
      const a = this.abortSignal;
      const e = escalate;
      function done(): void {
        clearTimeout(t);
        a?.removeEventListener('abort', done);
        e?.removeEventListener('abort', done);
        resolve();
      }
      this.wake = done;
      a?.addEventListener('abort', done, { once: true });
      e?.addEventListener('abort', done, { once: true });
    });
  }

  checkAbort(): void {
    if (this.abortSignal?.aborted) throw abortReason(this.abortSignal);
  }

  /** Keeps walking (`onNew` for each new member) until all members have exited or `ms` have passed. */
  async watch(ms: number, onNew: (m: Member) => void, escalate?: AbortSignal): Promise<boolean> {
    const deadline = performance.now() + ms;
    let interval = FIRST_WALK_MS;
    for (;;) {
      // All held members gone: one more walk (of the cgroup, when given) before believing it.
      if (this.alive === 0 && this.walk(onNew) === 0) return true;
      const left = deadline - performance.now();
      if (left <= 0 || escalate?.aborted) return false;
      await this.sleep(Math.min(interval, left), escalate);
      this.checkAbort();
      interval = Math.min(interval * 2, MAX_WALK_MS);
      this.walk(onNew);
    }
  }

  async run(o: Resolved, cgroup: string | undefined, t0: number): Promise<KillTreeResult> {
    let cgroupKilled = false;
    // 1. Stop and walk.
    this.freeze();
    if (this.includeRoot && !this.rootMember.stopped && this.rootMember.p.exited) {
      this.adoptOrphanedGroup();
      for (let pass = 0; pass < MAX_PASSES; pass++) if (this.walk((m) => this.stop(m)) === 0) break;
    }
    // 2. The polite signal to every member while stopped, then continue them so they can act on it.
    const immediate = o.signal === SIGKILL;
    for (const m of this.targets()) {
      m.send(o.signal);
      if (immediate) this.releaseOne(m, o.release);
    }
    if (immediate && cgroup !== undefined) cgroupKilled = killCgroup(cgroup);
    if (immediate) for (const m of this.members) m.stopped = false; // SIGKILL needs no continue
    this.continueAll();
    // 3. Grace period, walking on: a child forked now (by a signal handler, say) gets the signal too.
    let allGone = await this.watch(
      o.timeout,
      (m) => {
        m.send(o.signal);
        if (immediate) this.releaseOne(m, o.release);
        else if (isStopped(m.p)) m.send(SIGCONT);
      },
      this.hooks.escalate,
    );
    if (!allGone) {
      if (o.killSignal === false) {
        throw stillRunning(
          `${this.alive} process(es) of the tree of ${this.rootMember.p.pid} still running ${o.timeout} ms after ` +
            `${signalName(o.signal)} (killSignal: false)`,
          { pids: [...this.targets()].map((m) => m.p.pid) },
        );
      }
      // 4. Escalate: stop and walk again (handlers may have forked), then the kill signal to everyone left.
      this.freeze();
      const killSignal = o.killSignal;
      const kill = (m: Member): void => {
        if (m.send(killSignal)) {
          m.escalated = true;
          if (killSignal === SIGKILL) this.releaseOne(m, o.release);
          else if (!m.stopped && isStopped(m.p)) m.send(SIGCONT);
        }
      };
      for (const m of this.targets()) kill(m);
      // Then the cgroup, for whatever the walks could not see (after the members, so each one's entry says it
      // needed the kill signal).
      if (cgroup !== undefined) cgroupKilled = killCgroup(cgroup) || cgroupKilled;
      if (killSignal === SIGKILL) for (const m of this.members) m.stopped = false;
      this.continueAll();
      allGone = await this.watch(o.killTimeout, kill);
      if (!allGone) {
        const left = [...this.targets()];
        const states = left.map(
          (m) =>
            `${m.p.pid}${(statUnchecked(m.p.pid)?.state ?? '?') === 'D' ? ' (state D: uninterruptible sleep)' : ''}`,
        );
        throw stillRunning(
          `${left.length} process(es) of the tree of ${this.rootMember.p.pid} have not exited ` +
            `${o.killTimeout} ms after ${signalName(o.killSignal)}: ${states.join(', ')}`,
          { pids: left.map((m) => m.p.pid) },
        );
      }
    }
    if (cgroup !== undefined && cgroupKilled && !(await waitCgroupEmpty(cgroup, o.killTimeout))) {
      throw stillRunning(`cgroup ${cgroup} still has processes ${o.killTimeout} ms after cgroup.kill`, { cgroup });
    }
    const counted = this.members.filter((m) => this.includeRoot || m !== this.rootMember);
    const exits = await Promise.all(counted.map((m) => m.done));
    const processes: TreeMember[] = counted.map((m, i) => ({
      pid: m.p.pid,
      parent: m.parent,
      exit: exits[i],
      escalated: m.escalated,
      released: m.released,
      signals: m.signals,
    }));
    return {
      root: this.rootMember.p.pid,
      processes,
      escalated: processes.some((m) => m.escalated),
      cgroupKilled,
      elapsedMs: performance.now() - t0,
    };
  }

  releaseOne(m: Member, release: boolean): void {
    if (release && capabilities().processMrelease && m.exit === undefined) m.released = tryRelease(m.p);
  }

  /** Never leaves a member stopped (on errors and aborts), stops waiting, closes the pidfds opened here. */
  cleanup(): void {
    for (const m of this.members) {
      if (m.stopped && m.exit === undefined) {
        try {
          m.p.kill(SIGCONT);
        } catch {
          /* closed by the caller, or EPERM: nothing more we can do */
        }
      }
    }
    this.aborter.abort();
    for (const m of this.members) if (m.owned) m.p.close();
  }
}

/** cgroup.procs as a hint: a cgroup removed meanwhile has no processes. */
function cgroupProcs(dir: string): number[] {
  try {
    return readCgroupProcs(dir);
  } catch {
    return [];
  }
}
