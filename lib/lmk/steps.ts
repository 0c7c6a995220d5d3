// The steps of an episode, in order: reclaim (process_madvise on the candidates, where it can help), trim (ask
// them to free memory, with a deadline), kill (one victim and its set, see kill.ts; then wait for the memory).
// Each step reports through the killer's events and says whether the pressure is still there.
import { performance } from 'node:perf_hooks';
import type { ReclaimOptions } from '../memory';
import { catchesSignal, readChecked } from '../procfs';
import { toSignalNumber } from '../signals';
import type { MemoryHeadroom } from './budget';
import type { Candidate } from './candidates';
import type { KillEvent, LowMemoryKillerEvents, ReclaimEvent, TrimEvent } from './events';
import { killVictim } from './kill';
import { matchCandidate } from './match';
import { LowMemoryKillerOptions, toBytes } from './options';
import { preKillVictim, runPreKill, victimTexts } from './pre-kill';
import type { PressureRule } from './rules';

/** One measurement of the killer's state (`low`: act now). */
export interface Measurement {
  low: boolean;
  m: MemoryHeadroom;
  threshold: number | undefined;
  reason: string;
  /** The rules that say act (empty when not `low`). */
  triggered: PressureRule[];
}

/** What a step needs of the killer running it. */
export interface EpisodeContext {
  readonly episode: number;
  /** Bytes per ms the headroom fell between the last two samples (0: steady or growing). */
  readonly rate: number;
  /** Available bytes at the measurement that started the episode. */
  readonly startAvailable: number;
  /** performance.now() of the measurement that started the episode. */
  readonly startedAt: number;
  readonly options: Readonly<LowMemoryKillerOptions>;
  readonly dryRun: boolean;
  /** Whether the step's timers keep the event loop alive. */
  readonly ref: boolean;
  emit<K extends keyof LowMemoryKillerEvents>(name: K, ...args: LowMemoryKillerEvents[K]): boolean;
  measure(): Measurement;
  headroom(): MemoryHeadroom;
}

// A trim callback may reject with any value; listeners of 'error' get an Error.
const toError = (err: unknown): Error => (err instanceof Error ? err : new Error(String(err)));

export const sleep = (ms: number, ref: boolean): Promise<void> =>
  new Promise((r) => {
    const t = setTimeout(r, ms);
    if (!ref) t.unref();
  });

/**
 * Whether the reclaim step advises anonymous memory: `reclaim.anon`, or with `'auto'` (the default) only where
 * swap or zram can take it (`swapTotal` > 0). Without swap, MADV_PAGEOUT leaves anonymous pages resident.
 */
export function reclaimsAnon(anon: boolean | 'auto' | undefined, swapTotal: number): boolean {
  return anon === undefined || anon === 'auto' ? swapTotal > 0 : anon;
}

/** The resident memory of `c` that reclaim can push out: file pages, and with `anon` the anonymous and shmem ones. */
const reclaimable = (c: Candidate, anon: boolean): number =>
  c.memory.file + (anon ? c.memory.anon + c.memory.shmem : 0);

/** About what advising a few candidates' file pages takes (measured here: 60 ms), for the time test below. */
const RECLAIM_MS = 60;

/**
 * Pushes the candidates' pages out; resolves to the measurement after the settle time, or undefined when it did
 * nothing. Skipped where it cannot help: candidates with nothing reclaimable are left alone, and the whole step
 * is skipped when even all their reclaimable memory could not lift the headroom past minAvailable and its
 * hysteresis (a kill is needed anyway, and the step would only delay it), or when the headroom is falling too fast
 * to wait for it. No settle wait when nothing was advised.
 */
export async function reclaimStep(ctx: EpisodeContext, ranked: Candidate[]): Promise<Measurement | undefined> {
  const rc = ctx.options.reclaim;
  if (rc === false) return undefined;
  const h = ctx.headroom();
  const anon = reclaimsAnon(rc?.anon, h.swapTotal);
  const chosen = ranked.slice(0, rc?.count ?? ranked.length).filter((c) => reclaimable(c, anon) > 0);
  // Worth it only if it can end the episode (lift the headroom past the threshold plus its hysteresis) and there
  // is time for it: at the rate the headroom is falling, what is left must outlast the advice and the settle time
  // twice over, or the kernel's OOM killer acts while the killer waits.
  const ma = ctx.options.minAvailable;
  const exit = ma === undefined ? 0 : toBytes(ma, h.total) * (1 + (ctx.options.hysteresis ?? 0.1));
  const shortfall = exit - h.available;
  const can = chosen.reduce((sum, c) => sum + reclaimable(c, anon), 0);
  const takes = RECLAIM_MS + (rc?.settle ?? 200);
  if (chosen.length === 0 || (shortfall > 0 && can < shortfall)) return undefined;
  // The rate now, over the time the listing and ranking took (a burst that has ended shows none), else the rate
  // between the last two samples.
  const dt = performance.now() - ctx.startedAt;
  const rate = dt >= 1 ? Math.max(0, (ctx.startAvailable - h.available) / dt) : ctx.rate;
  if (rate > 0 && h.available / rate < 2 * takes) return undefined;
  const options: ReclaimOptions = { advice: rc?.advice ?? 'pageout', kinds: anon ? undefined : ['file'] };
  let advised = 0;
  for (const c of chosen) {
    if (ctx.dryRun) {
      ctx.emit('reclaim', {
        episode: ctx.episode,
        pid: c.pid,
        comm: c.comm,
        advised: 0,
        rssBefore: c.memory.rss,
        rssAfter: c.memory.rss,
        anon,
        ms: 0,
        dryRun: true,
      } satisfies ReclaimEvent);
      continue;
    }
    const t0 = performance.now();
    try {
      const r = c.pidfd.reclaim(options);
      advised += r.advised;
      ctx.emit('reclaim', {
        episode: ctx.episode,
        pid: c.pid,
        comm: c.comm,
        advised: r.advised,
        rssBefore: r.rssBefore,
        rssAfter: r.rssAfter,
        anon,
        ms: performance.now() - t0,
        dryRun: false,
      } satisfies ReclaimEvent);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ESRCH') ctx.emit('error', err as Error);
    }
  }
  if (ctx.dryRun || advised === 0) return undefined;
  await sleep(rc?.settle ?? 200, ctx.ref);
  return ctx.measure();
}

/** Whether /proc/<pid>/status of the candidate shows a handler for `signo` (SigCgt). */
function catches(c: Candidate, signo: number): boolean {
  try {
    return catchesSignal(readChecked(c.pidfd, 'status', { allowExiting: true }), signo);
  } catch {
    return false; // exited
  }
}

/** Asks the candidates to trim, then gives them until the deadline (less if pressure ends sooner); resolves to the
 *  measurement after it (or undefined: skipped, or nobody to ask). `trim.signal` goes only to candidates that
 *  catch it or that `trim.always` names: a process with the signal's default action (for most signals: to
 *  terminate) is never sent one. */
export async function trimStep(ctx: EpisodeContext, ranked: Candidate[]): Promise<Measurement | undefined> {
  const trim = ctx.options.trim;
  if (trim === undefined || (trim.signal === undefined && trim.callback === undefined)) return undefined;
  const deadline = trim.deadline ?? 1000;
  const signo = trim.signal === undefined ? undefined : toSignalNumber(trim.signal, 'options.trim.signal');
  const wants = (c: Candidate): boolean => signo !== undefined && (catches(c, signo) || matchCandidate(c, trim.always));
  if (ctx.dryRun) {
    for (const c of ranked) {
      const signalled = wants(c);
      if (!signalled && trim.callback === undefined) continue;
      ctx.emit('trim', {
        episode: ctx.episode,
        pid: c.pid,
        comm: c.comm,
        freed: 0,
        signalled,
        dryRun: true,
      } satisfies TrimEvent);
    }
    return undefined;
  }
  const ac = new AbortController();
  const asked: { c: Candidate; signalled: boolean }[] = [];
  const calls: Promise<unknown>[] = [];
  for (const c of ranked) {
    try {
      const signalled = wants(c);
      if (signalled && !c.pidfd.kill(signo)) continue; // exited
      if (!signalled && trim.callback === undefined) continue;
      asked.push({ c, signalled });
      if (trim.callback)
        calls.push(
          Promise.resolve()
            .then(() => trim.callback!(c, ac.signal))
            .catch((err: unknown) => ctx.emit('error', toError(err))),
        );
    } catch (err) {
      ctx.emit('error', err as Error);
    }
  }
  if (asked.length === 0) return undefined;
  const until = performance.now() + deadline;
  let settled = calls.length === 0;
  void Promise.all(calls).then(() => (settled = true));
  while (performance.now() < until) {
    await sleep(25, ctx.ref);
    if (!ctx.measure().low && settled) break;
  }
  ac.abort();
  for (const { c, signalled } of asked) {
    let after = c.memory.pss;
    try {
      after = c.pidfd.memory().pss;
    } catch {
      after = 0; // it exited: all of it is back
    }
    ctx.emit('trim', {
      episode: ctx.episode,
      pid: c.pid,
      comm: c.comm,
      freed: c.memory.pss - after,
      signalled,
      dryRun: false,
    } satisfies TrimEvent);
  }
  return ctx.measure();
}

/**
 * Kills one victim with its set (options.killMode; see kill.ts), never touching `spare` (the protected
 * candidates), after the preKill hook (pre-kill.ts), and waits for the deaths and the memory; resolves to whether
 * a kill was made.
 */
export async function killStep(
  ctx: EpisodeContext,
  v: Candidate,
  why: Pick<Measurement, 'reason' | 'triggered'>,
  before: MemoryHeadroom,
  spare: readonly Candidate[] = [],
): Promise<boolean> {
  if (v.pid === process.pid || v.pid === 1) return false; // never; the listing already leaves them out
  const texts = victimTexts(v);
  const base = {
    episode: ctx.episode,
    pid: v.pid,
    comm: v.comm,
    reason: why.reason,
    triggered: why.triggered,
    oomScoreAdj: v.oomScoreAdj,
    pss: v.memory.pss,
    rss: v.memory.rss,
    cmdline: texts.cmdline,
    victimCgroup: texts.cgroup,
  };
  if (ctx.dryRun) {
    ctx.emit('kill', {
      ...base,
      bytesFreed: 0,
      decisionMs: performance.now() - ctx.startedAt,
      preKillResult: undefined,
      preKillMs: undefined,
      deathMs: 0,
      memoryMs: 0,
      regained: false,
      released: undefined,
      killMode: ctx.options.killMode ?? 'process',
      modeReason: undefined,
      cgroup: undefined,
      cgroupKill: false,
      killed: [{ pid: v.pid, comm: v.comm, rss: v.memory.rss, released: undefined }],
      held: v.memory.pss,
      escalated: false,
      escalatedMs: undefined,
      dryRun: true,
    } satisfies KillEvent);
    return true;
  }
  const pre: { hook?: Awaited<ReturnType<typeof runPreKill>> } = {};
  const k = await killVictim(ctx, v, spare, async () => {
    pre.hook = await runPreKill(ctx, v, preKillVictim(ctx, v, why, texts));
  });
  if (k === undefined) return false; // nothing signalled: the victim exited meanwhile, its memory is coming back
  const { t0, ...outcome } = k;
  const now = measureAfter(ctx, before, k.held, t0);
  ctx.emit('kill', {
    ...base,
    ...outcome,
    bytesFreed: now.m.available - before.available,
    decisionMs: t0 - ctx.startedAt,
    // 'exited' cannot get here: a victim gone during the hook is not signalled (killVictim resolves undefined).
    preKillResult: pre.hook?.result === 'exited' ? undefined : pre.hook?.result,
    preKillMs: pre.hook?.ms,
    memoryMs: now.ms,
    regained: now.regained,
    released: k.killed.find((x) => x.pid === v.pid)?.released,
    dryRun: false,
  } satisfies KillEvent);
  return true;
}

/** After the deaths: the memory of what was killed is gone once its pidfds (and its cgroup, for a cgroup kill)
 *  report it (exit_mm() runs before the exit is reported), so the headroom is measured once, not waited on: another
 *  process that keeps allocating must not hold up the next decision. */
function measureAfter(
  ctx: EpisodeContext,
  before: MemoryHeadroom,
  held: number,
  t0: number,
): { m: MemoryHeadroom; ms: number; regained: boolean } {
  const now = ctx.headroom();
  return { m: now, ms: performance.now() - t0, regained: now.available - before.available >= 0.8 * held };
}
