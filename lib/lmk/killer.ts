// The userspace low-memory killer: watches memory (MemAvailable or a memory cgroup's headroom) and/or PSI, and
// answers pressure in episodes of steps (steps.ts). See docs/low-memory-killer.md.
//
// Safety rules, each enforced where it can be checked, not assumed:
// - Only candidates are ever signalled (candidates.ts: membership is checked after pidfd_open).
// - Never this process, never pid 1.
// - One victim at a time, and never while the previous victim's memory is still coming back.
import { EventEmitter } from 'node:events';
import { codedError } from '../errors';
import { PressureEvent, PressureWatcher, watchPressure } from '../pressure';
import { Budget, MemoryHeadroom } from './budget';
import { Candidate, CandidateList, rankCandidates } from './candidates';
import type { LowMemoryKillerEvents, PressureStartEvent, RecoveredEvent } from './events';
import { LockResult, lockMemory } from './lock';
import { LowMemoryKillerOptions, validateOptions } from './options';
import { EpisodeContext, killStep, Measurement, reclaimStep, trimStep } from './steps';

const MiB = 2 ** 20;
const fmt = (b: number): string => `${(b / MiB).toFixed(1)} MiB`;

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
  #psi: PressureWatcher | undefined;
  #psiUntil = -Infinity;
  #lastKillEnd = -Infinity;
  #lastPsi: PressureEvent | undefined;
  #running = false;
  #busy: Promise<void> | undefined;
  #again = false;
  #pressured = false;
  #episode = 0;
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
    if (ma === undefined) return undefined;
    return typeof ma === 'number' ? ma : (total * Number(ma.slice(0, -1))) / 100;
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
    // Memory is checked on a timer (with PSI alone, the timer notices that pressure has ended).
    const iv = this.options.interval;
    this.#timer = setInterval(() => this.#wake(), typeof iv === 'number' ? iv : 1000);
    if (!this.#ref) this.#timer.unref();
    if (this.options.minAvailable !== undefined) this.#wake();
    return this;
  }

  /** Stops watching, waits for an action in progress to finish, and closes the PidFds it opened. */
  async stop(): Promise<void> {
    this.#running = false;
    clearInterval(this.#timer);
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
    this.#busy = this.#evaluate()
      .catch((err) => {
        this.emit('error', err as Error);
      })
      .finally(() => {
        this.#busy = undefined;
        if (this.#again && this.#running) {
          this.#again = false;
          this.#wake();
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

  // Is the killer in a pressure state now? Updates the state (and emits `recovered` on leaving it).
  #measure(): Measurement {
    const m = this.headroom();
    const oom = this.#budget.kernelOom(m, this.#episode, this.#pressured);
    if (oom !== undefined) this.emit('kernel-oom', oom);
    const threshold = this.threshold(m.total);
    const hasPsi = this.options.psi !== undefined;
    const memLow = threshold === undefined || m.available < threshold;
    const psiLow = !hasPsi || this.#psiRecent();
    const reasons: string[] = [];
    if (threshold !== undefined) reasons.push(`available ${fmt(m.available)} ${memLow ? '<' : '>='} ${fmt(threshold)}`);
    if (hasPsi && this.#lastPsi && psiLow) {
      const e = this.#lastPsi;
      reasons.push(`${e.resource} ${e.kind} stall ${e.stall.toFixed(0)} ms in ${e.span.toFixed(0)} ms`);
    }
    const enter = memLow && psiLow;
    if (!this.#pressured && enter) this.#pressured = true;
    else if (this.#pressured) {
      const high = threshold === undefined ? undefined : threshold * (1 + (this.options.hysteresis ?? 0.1));
      const memOk = high !== undefined && m.available >= high;
      const psiOk = hasPsi && !this.#psiRecent();
      if (memOk || psiOk) {
        this.#pressured = false;
        this.emit('recovered', {
          episode: this.#episode,
          available: m.available,
          total: m.total,
        } satisfies RecoveredEvent);
      }
    }
    return { low: this.#pressured && memLow && psiLow, m, threshold, reason: reasons.join(', ') };
  }

  async #evaluate(): Promise<void> {
    let s = this.#measure();
    if (!s.low) return;
    const episode = ++this.#episode;
    this.emit('pressure', {
      episode,
      reason: s.reason,
      available: s.m.available,
      total: s.m.total,
      threshold: s.threshold,
      psi: this.#lastPsi,
    } satisfies PressureStartEvent);
    let ranked = (await this.candidates()).filter((c) => !c.protected);
    if (ranked.length === 0) {
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
      ranked = (await this.candidates()).filter((c) => !c.protected); // sizes changed: rank again
      if (ranked.length === 0) return;
    }
    const victim = ranked[0];
    if (!(await killStep(ctx, victim, s.reason, s.m)) || this.#dryRun) return;
    this.#list.forget(victim.pidfd);
    // PSI seen so far describes the time before this kill: the next PSI-driven decision needs a whole new window.
    this.#psiUntil = -Infinity;
    this.#lastKillEnd = performance.now();
    // The next decision, if pressure remains, is a new episode: run it now rather than at the next tick.
    if (this.#running) this.#again = true;
  }
}
