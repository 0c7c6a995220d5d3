// What a kill takes and how: the victim's set for each kill mode (the victim alone, its process group, its tree,
// its cgroup), every member named by a pidfd opened and then verified (the same process group, the same cgroup,
// a child of a member), and the kill itself: SIGKILL at once, or a polite signal first and SIGKILL at a deadline
// or as soon as memory falls to a critical level. process_mrelease follows every SIGKILL.
//
// Never signalled, in any mode: this process, its ancestors, pid 1, and the protected candidates (the "spared").
// A cgroup that holds one of them is not written to with cgroup.kill; its other members are killed one by one.
import { dirname, posix } from 'node:path';
import { performance } from 'node:perf_hooks';
import {
  cgroupDir,
  cgroupOf,
  cgroupV1Of,
  hasCgroupKill,
  killCgroup,
  oomGroup,
  readCgroupProcsDeep,
  waitCgroupEmpty,
} from '../cgroup';
import { PidFd } from '../pidfd';
import {
  ancestors,
  listPids,
  parseCgroupV1,
  parseCgroupV2,
  parseKb,
  parseStat,
  readChecked,
  readUnchecked,
  statUnchecked,
} from '../procfs';
import { SIGCONT, SIGKILL, signalName, toSignalNumber } from '../signals';
import { isStopped } from '../target';
import { killTreeWith, KillTreeResult } from '../tree';
import type { Candidate } from './candidates';
import type { KilledProcess, KillEvent } from './events';
import { type KillMode, toBytes } from './options';
import type { EpisodeContext } from './steps';

/** What killVictim did: the kill event's fields that describe the kill, and when the first signal went out. */
export type KillOutcome = Pick<
  KillEvent,
  'killMode' | 'modeReason' | 'cgroup' | 'cgroupKill' | 'killed' | 'held' | 'escalated' | 'escalatedMs' | 'deathMs'
> & {
  /** When the first signal went out (performance.now()). */
  t0: number;
};

interface Member {
  p: PidFd;
  owned: boolean;
  info: KilledProcess;
  signalled: boolean;
}

interface Scope {
  mode: KillMode;
  modeReason: string | undefined;
  /** The cgroup to kill: its directory, its path as /proc/<pid>/cgroup shows it, and which hierarchy. */
  cg?: { dir: string; path: string; v1: boolean };
  /** The process group to kill. */
  pgid?: number;
}

const GRACE_POLL_MS = 10;
// A set whose members keep forking between passes (each pass SIGKILLs what it found, and a process with a pending
// SIGKILL cannot complete a fork) ends within a few passes; bound them anyway.
const MAX_PASSES = 100;

/** The pids never signalled: this process, its ancestors, pid 1, and the spared candidates. */
export function sparedPids(spare: readonly Candidate[]): Set<number> {
  return new Set([process.pid, 1, ...ancestors(), ...spare.map((c) => c.pid)]);
}

/**
 * Kills the victim's set (see the top of this file); resolves to what was done, or undefined when nothing was
 * signalled (the victim had exited, so its pid may already be a stranger's, or it is one of the spared). `before`
 * (the preKill hook's wait) runs once the victim is known to be killable, before its set is read and signalled.
 */
export async function killVictim(
  ctx: EpisodeContext,
  v: Candidate,
  spare: readonly Candidate[],
  before?: () => Promise<unknown>,
): Promise<KillOutcome | undefined> {
  const spared = sparedPids(spare);
  if (spared.has(v.pid) || v.pidfd.exited) return undefined;
  if (before !== undefined) await before();
  const scope = resolveScope(ctx, v);
  if (v.pidfd.exited) return undefined; // the scope was read from a process that is gone: trust none of it
  const o = ctx.options;
  const g = o.graceful;
  const polite = g === undefined ? undefined : toSignalNumber(g.signal ?? 'SIGTERM', 'options.graceful.signal');
  const critical = criticalLevel(ctx);
  if (scope.mode === 'tree') return killTreeMode(ctx, v, spared, polite, critical, scope);

  const members: Member[] = [];
  const held = new Set<number>();
  const adopt = (p: PidFd, owned: boolean, info: KilledProcess): void => {
    held.add(p.pid);
    members.push({ p, owned, info, signalled: false });
  };
  adopt(v.pidfd, false, { pid: v.pid, comm: v.comm, rss: v.memory.rss, released: undefined });
  const scan = (): Member[] => {
    const before = members.length;
    for (const p of listScope(scope, spared, held)) adopt(p, true, readInfo(p));
    return members.slice(before);
  };
  // cgroup.kill takes the whole cgroup, below it too: only where none of the spared is in it.
  const useCgroupKill =
    scope.cg !== undefined && !scope.cg.v1 && !holdsSpared(scope.cg.path, spared, spare) && hasCgroupKill(scope.cg.dir);
  try {
    // A group's scan reads every /proc/<pid>/stat (50 ms with 2100 processes here): it follows the victim's signal.
    if (scope.mode !== 'group') scan();
    const t0 = performance.now();
    let escalated: 'timeout' | 'critical' | false = false;
    let escalatedMs: number | undefined;
    if (polite !== undefined && g !== undefined) {
      const ask = (ms: readonly Member[]): void => {
        for (const m of ms) {
          if (m.p.kill(polite)) {
            m.signalled = true;
            if (isStopped(m.p)) m.p.kill(SIGCONT); // so that it can act on the signal
          }
        }
      };
      ask(members);
      if (scope.mode === 'group') ask(scan());
      if (!members.some((m) => m.signalled)) return undefined;
      escalated = await graceWait(ctx, members, g.timeout ?? 1000, critical);
      if (escalated !== false) escalatedMs = performance.now() - t0;
    }
    if (polite === undefined || escalated !== false) {
      if (useCgroupKill) {
        // Listed first (to release and report them), then killed all at once, newborns included.
        if (polite !== undefined) scan(); // born during the grace period
        const taken = members.filter((m) => !m.p.exited); // before the write: they die at once
        killCgroup(scope.cg!.dir);
        for (const m of taken) {
          m.signalled = true;
          m.info.released = release(ctx, m.p);
        }
      } else {
        let fresh: Member[] = members;
        for (let pass = 0; pass < MAX_PASSES && fresh.length > 0; pass++) {
          for (const m of fresh) {
            if (!m.p.kill(SIGKILL)) continue;
            m.signalled = true;
            m.info.released = release(ctx, m.p);
          }
          fresh = scope.mode === 'process' ? [] : scan();
        }
      }
      if (!members.some((m) => m.signalled)) return undefined;
    }
    const signalled = members.filter((m) => m.signalled);
    await waitAll(
      signalled.map((m) => m.p),
      o.killTimeout ?? 5000,
    );
    if (useCgroupKill) await waitCgroupEmpty(scope.cg!.dir, o.killTimeout ?? 5000);
    const deathMs = performance.now() - t0;
    return {
      killMode: scope.mode,
      modeReason: scope.modeReason,
      cgroup: scope.cg?.dir,
      cgroupKill: useCgroupKill,
      killed: signalled.map((m) => m.info),
      held: heldBytes(
        v,
        signalled.map((m) => m.info),
      ),
      escalated,
      escalatedMs,
      deathMs,
      t0,
    };
  } finally {
    for (const m of members) if (m.owned) m.p.close();
  }
}

function heldBytes(v: Candidate, killed: readonly KilledProcess[]): number {
  return killed.reduce((sum, k) => sum + (k.pid === v.pid ? v.memory.pss : k.rss), 0);
}

/** The level below which a graceful kill escalates at once (and the preKill wait ends, `always`):
 *  options.graceful.critical, else half of minAvailable; undefined when neither is set, or without `graceful`
 *  unless `always`. */
export function criticalLevel(ctx: EpisodeContext, always = false): number | undefined {
  const g = ctx.options.graceful;
  if (g === undefined && !always) return undefined;
  const level = g?.critical ?? ctx.options.minAvailable;
  if (level === undefined) return undefined;
  const bytes = toBytes(level, ctx.headroom().total);
  return g?.critical === undefined ? bytes / 2 : bytes;
}

/** Waits for every member's death, the deadline, or the critical level, whichever comes first. */
async function graceWait(
  ctx: EpisodeContext,
  members: readonly Member[],
  timeout: number,
  critical: number | undefined,
): Promise<'timeout' | 'critical' | false> {
  const ac = new AbortController();
  let allGone = false;
  const gone = Promise.all(members.map((m) => m.p.waitExit({ signal: ac.signal, ref: ctx.ref }).catch(() => {})));
  void gone.then(() => (allGone = true));
  const until = performance.now() + timeout;
  try {
    for (;;) {
      if (allGone) return false;
      if (critical !== undefined && ctx.headroom().available < critical) return 'critical';
      const left = until - performance.now();
      if (left <= 0) return 'timeout';
      await Promise.race([gone, sleepFor(Math.min(GRACE_POLL_MS, left), ctx.ref)]);
    }
  } finally {
    ac.abort();
  }
}

function sleepFor(ms: number, ref: boolean): Promise<void> {
  return new Promise((r) => {
    const t = setTimeout(r, ms);
    if (!ref) t.unref();
  });
}

/** Resolves once every pidfd reports its process's death, or after `ms`. */
async function waitAll(ps: readonly PidFd[], ms: number): Promise<void> {
  await Promise.all(ps.map((p) => p.waitExit({ timeout: ms }).catch(() => {})));
}

/** process_mrelease after the SIGKILL; undefined when the options turn it off. */
function release(ctx: EpisodeContext, p: PidFd): boolean | undefined {
  if (!(ctx.options.release ?? true)) return undefined;
  try {
    return p.release();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    // EINVAL: not dying after all (it exited and was reaped meanwhile); unsupported: nothing to report each time.
    if (code !== 'ERR_PIDFD_UNSUPPORTED' && code !== 'EINVAL') ctx.emit('error', err as Error);
    return false;
  }
}

/** comm and RSS of a member, read through its pidfd (what is left of an exiting one: comm survives exit). */
function readInfo(p: PidFd): KilledProcess {
  let comm = '';
  let rss = 0;
  try {
    comm = readChecked(p, 'comm', { allowExiting: true }).trim();
    rss = parseKb(readChecked(p, 'status', { allowExiting: true })).get('VmRSS') ?? 0;
  } catch {
    /* it exited meanwhile: nothing to hold */
  }
  return { pid: p.pid, comm, rss, released: undefined };
}

/** Which set the kill takes. The victim's process group and cgroup are read through its pidfd, so the caller
 *  checks that the victim has not exited after this (then they were the victim's). */
function resolveScope(ctx: EpisodeContext, v: Candidate): Scope {
  const requested: KillMode = ctx.options.killMode ?? 'process';
  const v2path = cgroupOf(v.pidfd);
  const v2dir = v2path !== undefined && v2path !== '/' ? cgroupDir(v2path) : undefined;
  if (v2path !== undefined && v2dir !== undefined) {
    const oom = oomGroupOf(v2dir, v2path, ctx.options.memory?.cgroup);
    if (oom !== undefined) {
      if (holdsKiller(oom.path, false)) return processOnly(`its cgroup ${oom.path} holds the killer or an ancestor`);
      return {
        mode: 'cgroup',
        modeReason: requested === 'cgroup' ? undefined : `memory.oom.group is set on ${oom.dir}`,
        cg: { ...oom, v1: false },
      };
    }
  }
  if (requested === 'group') {
    let pgid = 0;
    try {
      pgid = parseStat(readChecked(v.pidfd, 'stat', { allowExiting: true })).pgid;
    } catch {
      /* exited: the caller sees it */
    }
    if (pgid <= 1) return processOnly('it has no process group');
    // A process group this process or an ancestor belongs to holds their siblings too (a shell job, a test
    // runner's children): never kill it whole.
    const ours = [process.pid, ...ancestors()].map((pid) => statUnchecked(pid)?.pgid);
    if (ours.includes(pgid)) return processOnly(`its process group ${pgid} is the killer's own or an ancestor's`);
    return { mode: 'group', modeReason: undefined, pgid };
  }
  if (requested === 'cgroup') {
    // A cgroup that holds this process or an ancestor holds their siblings too (a login session, a service, a
    // test runner): never kill it whole, not even one by one around the spared.
    if (v2path !== undefined && v2dir !== undefined) {
      if (holdsKiller(v2path, false)) return processOnly(`its cgroup ${v2path} holds the killer or an ancestor`);
      return { mode: 'cgroup', modeReason: undefined, cg: { dir: v2dir, path: v2path, v1: false } };
    }
    // No cgroup v2 group of its own: its cgroup v1 memory group, killed one by one (v1 has no cgroup.kill).
    const v1path = cgroupV1Of(v.pidfd, 'memory');
    const v1dir = v1path !== undefined && v1path !== '/' ? cgroupDir(v1path, 'memory') : undefined;
    if (v1path !== undefined && v1dir !== undefined) {
      if (holdsKiller(v1path, true)) return processOnly(`its memory cgroup ${v1path} holds the killer or an ancestor`);
      return { mode: 'cgroup', modeReason: undefined, cg: { dir: v1dir, path: v1path, v1: true } };
    }
    return processOnly('it is in no cgroup but the root');
  }
  return { mode: requested, modeReason: undefined };
}

const processOnly = (why: string): Scope => ({ mode: 'process', modeReason: why });

/**
 * The highest cgroup with memory.oom.group set, from the victim's own up to the top of the hierarchy (or up to
 * the killer's budget cgroup, the kernel's OOM domain, when the walk meets it), as the kernel's OOM killer picks it.
 * @internal
 */
export function oomGroupOf(
  dir: string,
  path: string,
  budget: string | undefined,
): { dir: string; path: string } | undefined {
  const top = cgroupDir('/');
  let found: { dir: string; path: string } | undefined;
  for (
    let d = dir, p = path;
    d !== top && p !== '/' && p !== '' && d !== dirname(d);
    d = dirname(d), p = posix.dirname(p)
  ) {
    if (oomGroup(d)) found = { dir: d, path: p };
    if (budget !== undefined && d === budget) break;
  }
  return found;
}

const within = (path: string | undefined, top: string): boolean =>
  path !== undefined && (path === top || path.startsWith(`${top}/`));

/** Whether this process or one of its ancestors is in the cgroup (or below it): v2, or the v1 memory hierarchy. */
function holdsKiller(path: string, v1: boolean): boolean {
  for (const pid of [process.pid, ...ancestors()]) {
    const text = readUnchecked(pid, 'cgroup'); // a stale read can only make the kill smaller
    if (text !== undefined && within(v1 ? parseCgroupV1(text, 'memory') : parseCgroupV2(text), path)) return true;
  }
  return false;
}

/** Whether one of the spared processes is in the cgroup (or below it). */
function holdsSpared(path: string, spared: ReadonlySet<number>, spare: readonly Candidate[]): boolean {
  for (const c of spare) if (within(cgroupOf(c.pidfd), path)) return true;
  for (const pid of spared) {
    // Unchecked is enough here: a stale read can only make us refuse cgroup.kill, never write it.
    const text = readUnchecked(pid, 'cgroup');
    if (text !== undefined && within(parseCgroupV2(text), path)) return true;
  }
  return false;
}

/** New members of the scope (not in `held`, not spared), each opened and verified after opening. */
function listScope(scope: Scope, spared: ReadonlySet<number>, held: Set<number>): PidFd[] {
  const out: PidFd[] = [];
  const hint: number[] = [];
  if (scope.pgid !== undefined) {
    for (const pid of listPids()) if (statUnchecked(pid)?.pgid === scope.pgid) hint.push(pid);
  } else if (scope.cg !== undefined) {
    hint.push(...readCgroupProcsDeep(scope.cg.dir));
  } else {
    return out;
  }
  for (const pid of hint) {
    if (spared.has(pid) || held.has(pid)) continue;
    let q: PidFd;
    try {
      q = PidFd.open(pid);
    } catch {
      continue; // exited: nothing to kill
    }
    // Verified through the pidfd: read after opening, and q not exited after the read (readChecked), so the
    // read was q's own.
    let ok = false;
    try {
      if (scope.pgid !== undefined) ok = parseStat(readChecked(q, 'stat', { allowExiting: true })).pgid === scope.pgid;
      else if (scope.cg!.v1) ok = within(cgroupV1Of(q, 'memory'), scope.cg!.path);
      else ok = within(cgroupOf(q), scope.cg!.path);
    } catch {
      ok = false;
    }
    if (ok) out.push(q);
    else q.close();
  }
  return out;
}

async function killTreeMode(
  ctx: EpisodeContext,
  v: Candidate,
  spared: ReadonlySet<number>,
  polite: number | undefined,
  critical: number | undefined,
  scope: Scope,
): Promise<KillOutcome | undefined> {
  const o = ctx.options;
  const infos = new Map<number, KilledProcess>();
  const escalate = new AbortController();
  let criticalHit = false;
  let escalatedAt: number | undefined;
  const t0 = performance.now();
  let timer: NodeJS.Timeout | undefined;
  if (polite !== undefined && critical !== undefined) {
    timer = setInterval(() => {
      if (ctx.headroom().available < critical) {
        criticalHit = true;
        escalatedAt ??= performance.now();
        escalate.abort();
        clearInterval(timer);
      }
    }, GRACE_POLL_MS);
    if (!ctx.ref) timer.unref();
  }
  let r: KillTreeResult | undefined;
  try {
    r = await killTreeWith(
      v.pidfd,
      {
        signal: polite ?? SIGKILL,
        timeout: polite !== undefined ? (o.graceful?.timeout ?? 1000) : (o.killTimeout ?? 5000),
        killSignal: SIGKILL,
        killTimeout: o.killTimeout ?? 5000,
        release: o.release ?? true,
      },
      {
        spare: spared,
        escalate: escalate.signal,
        onMember: (p) =>
          infos.set(
            p.pid,
            p === v.pidfd ? { pid: v.pid, comm: v.comm, rss: v.memory.rss, released: undefined } : readInfo(p),
          ),
      },
    );
  } catch (err) {
    ctx.emit('error', err as Error);
  } finally {
    clearInterval(timer);
  }
  const signals = new Set([signalName(SIGKILL), ...(polite !== undefined ? [signalName(polite)] : [])]);
  const done = (r?.processes ?? []).filter((m) => m.signals.some((s) => signals.has(s as NodeJS.Signals)));
  if (done.length === 0) return undefined;
  const killed = done.map((m) => ({ ...(infos.get(m.pid) ?? { pid: m.pid, comm: '', rss: 0 }), released: m.released }));
  // The victim first.
  killed.sort((a, b) => (a.pid === v.pid ? -1 : b.pid === v.pid ? 1 : 0));
  const escalated = polite === undefined || !r!.escalated ? false : criticalHit ? 'critical' : 'timeout';
  return {
    killMode: 'tree',
    modeReason: scope.modeReason,
    cgroup: undefined,
    cgroupKill: false,
    killed,
    held: heldBytes(v, killed),
    escalated,
    escalatedMs: escalated === false ? undefined : (escalatedAt ?? t0 + (o.graceful?.timeout ?? 1000)) - t0,
    deathMs: performance.now() - t0,
    t0,
  };
}
