// The steps of an episode, in order: reclaim (process_madvise on the candidates), trim (ask them to free memory,
// with a deadline), kill (one victim: SIGKILL through its pidfd, process_mrelease, then wait for the death and the
// memory). Each step reports through the killer's events and says whether the pressure is still there.
import type { MemoryHeadroom } from './budget';
import type { Candidate } from './candidates';
import type { KillEvent, LowMemoryKillerEvents, ReclaimEvent, TrimEvent } from './events';
import type { LowMemoryKillerOptions } from './options';

/** One measurement of the killer's state (`low`: act now). */
export interface Measurement {
  low: boolean;
  m: MemoryHeadroom;
  threshold: number | undefined;
  reason: string;
}

/** What a step needs of the killer running it. */
export interface EpisodeContext {
  readonly episode: number;
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

/** Pushes the candidates' pages out; resolves to the measurement after the settle time (or undefined: skipped). */
export async function reclaimStep(ctx: EpisodeContext, ranked: Candidate[]): Promise<Measurement | undefined> {
  const rc = ctx.options.reclaim;
  if (rc === false) return undefined;
  const count = rc?.count ?? ranked.length;
  for (const c of ranked.slice(0, count)) {
    if (ctx.dryRun) {
      ctx.emit('reclaim', {
        episode: ctx.episode,
        pid: c.pid,
        comm: c.comm,
        advised: 0,
        rssBefore: c.memory.rss,
        rssAfter: c.memory.rss,
        dryRun: true,
      } satisfies ReclaimEvent);
      continue;
    }
    try {
      const r = c.pidfd.reclaim({ advice: rc?.advice ?? 'pageout' });
      ctx.emit('reclaim', {
        episode: ctx.episode,
        pid: c.pid,
        comm: c.comm,
        advised: r.advised,
        rssBefore: r.rssBefore,
        rssAfter: r.rssAfter,
        dryRun: false,
      } satisfies ReclaimEvent);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ESRCH') ctx.emit('error', err as Error);
    }
  }
  if (ctx.dryRun) return undefined;
  await sleep(rc?.settle ?? 200, ctx.ref);
  return ctx.measure();
}

/** Asks the candidates to trim, then gives them until the deadline (less if pressure ends sooner); resolves to the
 *  measurement after it (or undefined: skipped). */
export async function trimStep(ctx: EpisodeContext, ranked: Candidate[]): Promise<Measurement | undefined> {
  const trim = ctx.options.trim;
  if (trim === undefined || (trim.signal === undefined && trim.callback === undefined)) return undefined;
  const deadline = trim.deadline ?? 1000;
  if (ctx.dryRun) {
    for (const c of ranked)
      ctx.emit('trim', { episode: ctx.episode, pid: c.pid, comm: c.comm, freed: 0, dryRun: true } satisfies TrimEvent);
    return undefined;
  }
  const ac = new AbortController();
  const asked: Candidate[] = [];
  const calls: Promise<unknown>[] = [];
  for (const c of ranked) {
    try {
      if (trim.signal !== undefined && !c.pidfd.kill(trim.signal)) continue;
      asked.push(c);
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
  const until = performance.now() + deadline;
  let settled = calls.length === 0;
  void Promise.all(calls).then(() => (settled = true));
  while (performance.now() < until) {
    await sleep(25, ctx.ref);
    if (!ctx.measure().low && settled) break;
  }
  ac.abort();
  for (const c of asked) {
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
      dryRun: false,
    } satisfies TrimEvent);
  }
  return ctx.measure();
}

/** Kills one victim and waits for its death and its memory; resolves to whether a kill was made. */
export async function killStep(
  ctx: EpisodeContext,
  v: Candidate,
  reason: string,
  before: MemoryHeadroom,
): Promise<boolean> {
  if (v.pid === process.pid || v.pid === 1) return false; // never; the listing already leaves them out
  const base: Omit<KillEvent, 'bytesFreed' | 'deathMs' | 'memoryMs' | 'regained' | 'released' | 'dryRun'> = {
    episode: ctx.episode,
    pid: v.pid,
    comm: v.comm,
    reason,
    oomScoreAdj: v.oomScoreAdj,
    pss: v.memory.pss,
    rss: v.memory.rss,
  };
  if (ctx.dryRun) {
    ctx.emit('kill', {
      ...base,
      bytesFreed: 0,
      deathMs: 0,
      memoryMs: 0,
      regained: false,
      released: undefined,
      dryRun: true,
    } satisfies KillEvent);
    return true;
  }
  const o = ctx.options;
  const t0 = performance.now();
  if (!v.pidfd.kill('SIGKILL')) return false; // it exited meanwhile: its memory is coming back anyway
  let released: boolean | undefined;
  if (o.release ?? true) {
    try {
      released = v.pidfd.release();
    } catch (err) {
      released = false;
      if ((err as NodeJS.ErrnoException).code !== 'ERR_PIDFD_UNSUPPORTED') ctx.emit('error', err as Error);
    }
  }
  await v.pidfd.waitExit({ timeout: o.killTimeout ?? 5000 });
  const deathMs = performance.now() - t0;
  // Memory back: the headroom has grown by most of what the victim held (PSS: its own share).
  const want = before.available + 0.8 * v.memory.pss;
  const until = t0 + (o.killTimeout ?? 5000) + (o.memoryTimeout ?? 2000);
  const stopAt = Math.min(until, performance.now() + (o.memoryTimeout ?? 2000));
  let now = ctx.headroom();
  while (now.available < want && performance.now() < stopAt) {
    await sleep(2, ctx.ref);
    now = ctx.headroom();
  }
  const memoryMs = performance.now() - t0;
  ctx.emit('kill', {
    ...base,
    bytesFreed: now.available - before.available,
    deathMs,
    memoryMs,
    regained: now.available >= want,
    released,
    dryRun: false,
  } satisfies KillEvent);
  return true;
}
