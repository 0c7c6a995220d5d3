// The userspace low-memory killer: watches memory (MemAvailable or a memory cgroup's headroom) and/or PSI, and
// answers pressure in episodes of steps (steps.ts). See docs/low-memory-killer.md.
//
// Safety rules, each enforced where it can be checked, not assumed:
// - Only candidates are ever signalled (candidates.ts: membership is checked after pidfd_open).
// - Never this process, never pid 1.
// - One victim at a time, and never while the previous victim's memory is still coming back.
import { EventEmitter } from 'node:events';
import { codedError } from '../errors';
import { PressureEvent, PressureWatcher, readPressure, watchPressure } from '../pressure';
import { Budget, MemoryHeadroom } from './budget';
import { Candidate, CandidateList, rankCandidates } from './candidates';
import type { LowMemoryKillerEvents, PressureStartEvent, RecoveredEvent } from './events';
import { LockResult, lockMemory } from './lock';
import { LowMemoryKillerOptions, toBytes, validateOptions } from './options';
import { evaluateRules, intervalBounds, nextDelay } from './rules';
import { HeadroomWatch } from './watch';
import { EpisodeContext, killStep, Measurement, reclaimStep, trimStep } from './steps';

/**
 * The reference userspace low-memory killer. Decides with `minAvailable` (MemAvailable or a memory cgroup's
 * headroom) and/or `psi`; responds in episodes of reclaim → trim → kill, at most one kill per episode, each waiting
 * for the victim's death and memory before the next. Events: `pressure`, `reclaim`, `trim`, `kill`, `recovered`,
 * `error`.
 *
 * @example
 * const lmk = new LowMemoryKiller({
 *   candidates: { cgroup: '/sys/fs/cgroup/memory/workers' },
 *   memory: { cgroup: '/sys/fs/cgroup/memory/workers' },
 *   minAvailable: '10%',
 *   protect: [supervisorPid],
 * });
 * lmk.on('kill', (e) => console.log(`killed ${e.pid} (${e.comm}): ${e.bytesFreed} bytes back in ${e.memoryMs} ms`));
 * lmk.start();
 */
export class LowMemoryKiller extends EventEmitter<LowMemoryKillerEvents> {
  /** The options it was created with. */
  readonly options: Readonly<LowMemoryKillerOptions>;
  #list: CandidateList;
  #timer: NodeJS.Timeout | undefined;
  #delay = 0; // the sampling delay chosen after the last measurement
  #watch: HeadroomWatch | undefined; // the native sampler between measurements (adaptive sampling only)
  #last: { at: number; available: number } | undefined;
  #rate = 0; // bytes per ms the headroom fell between the last two samples
  #stall: [at: number, totalUs: number][] = []; // memory full-stall totals, for the critical level
  #psi: PressureWatcher | undefined;
  #psiUntil = -Infinity;
  #lastKillEnd = -Infinity;
  #lastPsi: PressureEvent | undefined;
  #running = false;
  #busy: Promise<void> | undefined;
  #again = false;
  #pressured = false;
  #episode = 0;
  // Set when an episode ended with nothing more to do in this pressure state (a dry run decided, or no candidate
  // was left): sampling goes on, but the next episode waits for the state to end (or for check()).
  #held: 'dry' | 'empty' | false = false;
  #ref: boolean;
  #dryRun: boolean;
  #budget: Budget;

  /** Validates the options (and that `memory.cgroup` is a memory cgroup); `start()` starts watching. */
  constructor(options: LowMemoryKillerOptions) {
    super();
    validateOptions(options);
    this.options = options;
    this.#list = new CandidateList(options.candidates);
    this.#ref = options.ref ?? true;
    this.#dryRun = options.dryRun ?? false;
    if (typeof options.interval !== 'number' && options.minAvailable !== undefined) {
      this.#watch = new HeadroomWatch(intervalBounds(options), this.#ref, () => this.#wake());
    }
    this.#budget = new Budget(options.memory?.cgroup); // a bad memory.cgroup fails now, not at the first check
  }

  /** The PSI watcher's mode, once started with `psi`. */
  get psiMode(): 'trigger' | 'poll' | undefined {
    return this.#psi?.mode;
  }

  /** Why PSI runs in poll mode, if it does. */
  get psiFallbackReason(): string | undefined {
    return this.#psi?.fallbackReason;
  }

  /** How memory is sampled between the killer's own measurements: `native` (a threshold sampler thread wakes it
   *  near the threshold), `timers` (JavaScript timers; `samplingReason` says why), or undefined before start(). */
  get sampling(): 'native' | 'timers' | undefined {
    if (!this.#running) return undefined;
    return this.#watch?.active ? 'native' : 'timers';
  }

  /** Why the killer samples with timers, where it does. */
  get samplingReason(): string | undefined {
    if (this.#watch === undefined) {
      return typeof this.options.interval === 'number' ? 'a fixed interval was asked for' : 'no minAvailable rule';
    }
    return this.#watch.unsupported ?? this.#watch.paused;
  }

  /** Episodes so far. */
  get episodes(): number {
    return this.#episode;
  }

  /** The kernel's own OOM kills in the budget since the killer was created (each reported by `kernel-oom`). */
  get kernelOomKills(): number {
    return this.#budget.oomKills;
  }

  /** Whether the killer is in a pressure state (entered below minAvailable, left above it plus the hysteresis). */
  get pressured(): boolean {
    return this.#pressured;
  }

  /** Locks the killer's own code in memory: see the `lockMemory` function. */
  lockMemory(): LockResult {
    return lockMemory();
  }

  /** Available memory, measured as the killer does. */
  headroom(): MemoryHeadroom {
    return this.#budget.headroom();
  }

  /** minAvailable in bytes (undefined if not set). */
  threshold(total = this.headroom().total): number | undefined {
    const ma = this.options.minAvailable;
    return ma === undefined ? undefined : toBytes(ma, total);
  }

  /** Starts watching. Idempotent. */
  start(): this {
    if (this.#running) return this;
    this.#running = true;
    this.#budget.open();
    const psi = this.options.psi;
    if (psi !== undefined) {
      this.#psi = watchPressure({ resource: 'memory', ...psi, ref: this.#ref });
      this.#psi.on('pressure', (e: PressureEvent) => {
        // A window that began before the last kill ended measures the stall that kill answered: not news.
        if (performance.now() - e.span < this.#lastKillEnd) return;
        this.#lastPsi = e;
        this.#psiUntil = performance.now() + e.window;
        this.#wake();
      });
      this.#psi.on('error', (err: Error) => this.emit('error', err));
    }
    // Memory is sampled on a timer whose period adapts (rules.ts); with PSI alone it notices that pressure ended.
    this.#wake();
    return this;
  }

  /** Stops watching, waits for an action in progress to finish, and closes the PidFds it opened. */
  async stop(): Promise<void> {
    this.#running = false;
    clearTimeout(this.#timer);
    this.#watch?.close();
    this.#psi?.close();
    this.#psi = undefined;
    await this.#busy;
    this.#list.close();
    this.#budget.close();
  }

  /** Runs one evaluation now (as a timer tick or a PSI event would) and resolves when it is done. */
  check(): Promise<void> {
    this.#wake(true);
    return this.#busy ?? Promise.resolve();
  }

  #wake(force = false): void {
    if (!this.#running && !force) return;
    if (this.#busy) {
      this.#again = true;
      return;
    }
    this.#busy = this.#evaluate(force)
      .catch((err) => {
        this.emit('error', err as Error);
      })
      .finally(() => {
        this.#busy = undefined;
        if (this.#again && this.#running) {
          this.#again = false;
          this.#wake();
        } else if (this.#running) {
          clearTimeout(this.#timer);
          this.#timer = setTimeout(() => this.#wake(), this.#delay);
          if (!this.#ref) this.#timer.unref();
        }
      });
  }

  /** Lists the candidates, ranked (first: first to be killed), protected ones included and flagged. */
  async candidates(): Promise<Candidate[]> {
    return rankCandidates(await this.#list.list(), this.options);
  }

  #psiRecent(): boolean {
    return performance.now() < this.#psiUntil;
  }

  // Stall ms (memory full by default) over about the last second, from the PSI totals (undefined: no critical level). With less
  // than a second of history it is the stall since the first sample: a lower bound of the last second's.
  #fullStall(now: number): number | undefined {
    const c = this.options.critical;
    if (c === undefined) return undefined;
    const total = readPressure(c.resource ?? 'memory', { cgroup: c.cgroup })[c.kind ?? 'full']?.total;
    if (total === undefined) return undefined;
    const s = this.#stall;
    s.push([now, total]);
    while (s.length > 2 && s[1][0] <= now - 1000) s.shift();
    const [t0, v0] = s[0];
    const dt = now - t0;
    return ((total - v0) / 1000) * (dt > 1000 ? 1000 / dt : 1);
  }

  // Is the killer in a pressure state now? Updates the state (and emits `recovered` on leaving it) and the delay
  // before the next sample.
  #measure(): Measurement {
    const now = performance.now();
    const m = this.headroom();
    const oom = this.#budget.kernelOom(m, this.#episode, this.#pressured);
    if (oom !== undefined) this.emit('kernel-oom', oom);
    if (this.#last !== undefined && now > this.#last.at) {
      this.#rate = Math.max(0, (this.#last.available - m.available) / (now - this.#last.at));
    }
    this.#last = { at: now, available: m.available };
    const e = this.#lastPsi;
    const psiLow = this.#psiRecent();
    const r = evaluateRules(this.options, m, {
      psiLow,
      psiText: e && `${e.resource} ${e.kind} stall ${e.stall.toFixed(0)} ms in ${e.span.toFixed(0)} ms`,
      fullStallMs: this.#fullStall(now),
    });
    const act = r.enter || r.critical;
    if (!this.#pressured && act) this.#pressured = true;
    else if (this.#pressured && r.ok && !r.critical) {
      this.#pressured = false;
      this.#held = false;
      this.emit('recovered', {
        episode: this.#episode,
        available: m.available,
        total: m.total,
      } satisfies RecoveredEvent);
    }
    if (this.#watch !== undefined && !this.#pressured && r.threshold !== undefined && this.#running) {
      // With `when: 'all'` the memory rule can be low while another (free swap, PSI) is not: a sampler armed on
      // it would find its bound already crossed and fire at once on every re-arming, a busy loop. What the
      // killer waits for then is another rule, so its timer samples, at the period the rules' distance gives.
      if (m.available < r.threshold) this.#watch.pause('the memory rule is low already: waiting on the other rules');
      else this.#watch.arm(m, r.threshold);
    }
    // With the sampler watching, the killer's own sample is the backstop for what it does not watch (swap, a
    // critical level, a headroom that moved by other terms): the longest period is enough.
    this.#delay =
      this.#watch?.active && !this.#pressured
        ? intervalBounds(this.options).max
        : nextDelay(this.options, { pressured: this.#pressured, distance: r.distance, rate: this.#rate });
    const low = this.#pressured && act;
    return { low, m, threshold: r.threshold, reason: r.reason, triggered: low ? r.triggered : [] };
  }

  async #evaluate(force: boolean): Promise<void> {
    const startedAt = performance.now();
    let s = this.#measure();
    if (!s.low) return;
    if (this.#held === 'empty' && !force) {
      if ((await this.candidates()).every((c) => c.protected)) return;
      this.#held = false; // a candidate appeared: a new episode
    }
    if (this.#held === 'dry' && !force) return;
    const episode = ++this.#episode;
    this.emit('pressure', {
      episode,
      reason: s.reason,
      triggered: s.triggered,
      available: s.m.available,
      total: s.m.total,
      threshold: s.threshold,
      psi: this.#lastPsi,
    } satisfies PressureStartEvent);
    let listed = await this.candidates();
    let ranked = listed.filter((c) => !c.protected);
    if (ranked.length === 0) {
      this.#held = 'empty';
      this.emit(
        'error',
        codedError(
          'ERR_PIDFD_LMK_NO_CANDIDATE',
          `Episode ${episode}: under pressure (${s.reason}) but no candidate to act on`,
        ),
      );
      return;
    }
    const ctx: EpisodeContext = {
      episode,
      startedAt,
      startAvailable: s.m.available,
      rate: this.#rate,
      options: this.options,
      dryRun: this.#dryRun,
      ref: this.#ref,
      emit: (name, ...args) => (this.emit as (n: string, ...a: unknown[]) => boolean)(name, ...args),
      measure: () => this.#measure(),
      headroom: () => this.headroom(),
    };
    const reclaimed = await reclaimStep(ctx, ranked);
    if (reclaimed !== undefined) {
      s = reclaimed;
      if (!s.low) return;
    }
    const trimmed = await trimStep(ctx, ranked);
    if (trimmed !== undefined) {
      s = trimmed;
      if (!s.low) return;
      listed = await this.candidates(); // sizes changed: rank again
      ranked = listed.filter((c) => !c.protected);
      if (ranked.length === 0) return;
    }
    const victim = ranked[0];
    if (this.#dryRun) this.#held = 'dry';
    const spare = listed.filter((c) => c.protected); // never killed with the victim's group, tree or cgroup
    if (!(await killStep(ctx, victim, s, s.m, spare)) || this.#dryRun) return;
    this.#list.forget(victim.pidfd);
    // PSI seen so far describes the time before this kill: the next PSI-driven decision needs a whole new window.
    this.#psiUntil = -Infinity;
    this.#lastKillEnd = performance.now();
    // The next decision, if pressure remains, is a new episode: run it now rather than at the next tick.
    if (this.#running) this.#again = true;
  }
}
