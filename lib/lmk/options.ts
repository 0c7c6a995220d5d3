// The options of LowMemoryKiller, their types and their validation (every check runs in the constructor, before
// anything is read or signalled).
import type { PidFd } from '../pidfd';
import type { PressureResource, WatchPressureOptions } from '../pressure';
import { toSignalNumber } from '../signals';
import { invalidType, invalidValue, outOfRange, validateBoolean, validateObject, validateTimeout } from '../validate';
import type { Candidate } from './candidates';
import type { PreKillVictim } from './events';

/**
 * Who may be acted on: a function listing pids or PidFds, a cgroup (v1 or v2 directory), or the children of a
 * process. PidFds returned by the function stay the caller's (the killer never closes them).
 *
 * @example
 * const source: CandidateSource = { childrenOf: process.pid }; // or { cgroup: dir }, or () => pids
 * const lmk = new LowMemoryKiller({ candidates: source, minAvailable: '10%' });
 */
export type CandidateSource =
  (() => Iterable<number | PidFd> | Promise<Iterable<number | PidFd>>) | { cgroup: string } | { childrenOf: number };

/**
 * PSI as a trigger of the killer: `watchPressure`'s options, with `resource` defaulting to `'memory'`.
 *
 * @example
 * const psi: KillerPsiOptions = { threshold: 100, window: 2000 }; // resource: 'memory'
 * const lmk = new LowMemoryKiller({ candidates: { childrenOf: process.pid }, psi });
 */
export type KillerPsiOptions = Omit<WatchPressureOptions, 'resource' | 'ref'> & { resource?: PressureResource };

/**
 * Options of `LowMemoryKiller`.
 *
 * @example
 * const options: LowMemoryKillerOptions = {
 *   candidates: { cgroup: dir }, minAvailable: 256 * 2 ** 20, trim: { signal: 'SIGUSR2', deadline: 500 }, dryRun: true,
 * };
 * const lmk = new LowMemoryKiller(options).start();
 */
export interface LowMemoryKillerOptions {
  candidates: CandidateSource;

  // When: each signal that is set is a rule; `when` combines them. A critical PSI level acts on its own.
  /** Act when available memory is below this: bytes, or a percentage of the budget's total (`'10%'`). */
  minAvailable?: number | `${number}%`;
  /** Act when free swap is below this: bytes, or a percentage of the swap's size. Ignored without swap. */
  minSwapFree?: number | `${number}%`;
  /** Act on PSI events (a kernel trigger, or sampling for windows a trigger cannot take). */
  psi?: KillerPsiOptions;
  /** Act at once, whatever the other rules say, when PSI shows at least `stall` ms of stall in the last second,
   *  sampled from the stall totals (no trigger needed): by default `full` stall on `memory` (every non-idle task
   *  waiting for memory at once), system-wide or in a cgroup v2 group (`cgroup`). */
  critical?: { stall: number; kind?: 'some' | 'full'; resource?: PressureResource; cgroup?: string };
  /** How the rules that are set combine: `all` (default: each must say so) or `any` (one is enough). */
  when?: 'all' | 'any';
  /** Where available memory is measured: default the system (/proc/meminfo); with a memory cgroup directory, the
   *  smallest headroom among the group and its ancestors (see docs/low-memory-killer.md, "Budget"). */
  memory?: { cgroup: string };
  /** Pressure ends when available memory is back above minAvailable × (1 + hysteresis). Default 0.1. */
  hysteresis?: number;
  /** How often memory is sampled, in ms: a fixed period, or the bounds of an adaptive one that shortens as the
   *  headroom nears the threshold (default `{ min: 10, max: 1000 }`). */
  interval?: number | { min?: number; max?: number };

  // Who: ranking. Default: the kernel's OOM badness weighed against this budget (see docs).
  /** Sort order: negative when `a` should go before `b`. Replaces the default badness order; the `prefer` /
   *  `avoid` tiers and the `minVictim` split still come first (with none of them set, `rank` is the whole order). */
  rank?: (a: Candidate, b: Candidate) => number;
  /** Never reclaimed, trimmed or killed. Candidates at oom_score_adj -1000 are protected too, unless in `prefer`. */
  protect?: CandidateMatcher | CandidateMatcher[];
  /** Killed before any candidate not listed here (then by rank among themselves). */
  prefer?: CandidateMatcher | CandidateMatcher[];
  /** Killed only when no other candidate is left. */
  avoid?: CandidateMatcher | CandidateMatcher[];
  /** A candidate whose memory (with what its kill mode takes along) is below this is chosen only after every
   *  larger one: bytes or a percentage of the budget's total. Default none. */
  minVictim?: number | `${number}%`;

  // What and how.
  /** What a kill takes: the victim alone (`process`, default), its process group (`group`), it and its
   *  descendants (`tree`), or its whole cgroup (`cgroup`, by cgroup.kill). A victim whose cgroup v2 group has
   *  memory.oom.group set is killed with its group whatever the mode, as the kernel would. Never in any mode:
   *  this process, its ancestors, pid 1, protected candidates. */
  killMode?: KillMode;
  /** A graceful kill: `signal` (default SIGTERM) first, SIGKILL after `timeout` ms (default 1000) or as soon as
   *  available memory falls below `critical` (bytes or % of the total; default half of minAvailable). */
  graceful?: { signal?: NodeJS.Signals | number; timeout?: number; critical?: number | `${number}%` };
  /** The reclaim step: `false` to skip it; `advice` (default `pageout`), `count` (how many of the lowest-priority
   *  candidates, default all), `settle` (ms to wait before measuring again, default 200), `anon` (advise
   *  anonymous memory too: default `'auto'`, only where swap or zram can take it). The step is skipped when all
   *  the candidates' reclaimable memory could not bring the headroom back to minAvailable. */
  reclaim?: false | { advice?: 'pageout' | 'cold'; count?: number; settle?: number; anon?: boolean | 'auto' };
  /** The trim step (off unless given): a signal to send and/or a callback to call for each candidate, then wait up
   *  to `deadline` ms (default 1000) for memory to come back. */
  trim?: {
    /** Sent through its pidfd to each unprotected candidate that catches it (SigCgt), and to those in `always`. */
    signal?: NodeJS.Signals | number;
    /** Candidates sent `signal` even though /proc shows no handler for it. */
    always?: CandidateMatcher | CandidateMatcher[];
    /** Called for each unprotected candidate; `signal` aborts at the deadline. */
    callback?: (c: Candidate, signal: AbortSignal) => void | Promise<void>;
    /** ms to wait for memory to come back (default 1000). */
    deadline?: number;
  };
  /**
   * Called once the victim is chosen, before its first signal (and before its group, tree or cgroup is listed):
   * to log it, save its state, tell its owner. The kill waits for the hook up to `preKillTimeout` ms, and no
   * longer: a hook that throws or rejects is reported through the `error` event (`ERR_PIDFD_LMK_PRE_KILL`) and the
   * kill goes on; one that hangs is left running, its `signal` aborted. The wait also ends at once when the
   * victim exits (nothing is signalled then, and no `kill` event follows) or when available memory falls below
   * the critical level of `graceful.critical` (default half of minAvailable, with or without `graceful`): a hook
   * must never be the reason the kernel's OOM killer fires. The `kill` event says how it went (`preKillResult`,
   * `preKillMs`). Not called with `dryRun`. The hook runs on the killer's own thread: keep blocking work in
   * another process.
   *
   * @example
   * const lmk = new LowMemoryKiller({
   *   candidates: { cgroup: dir }, minAvailable: '10%', preKillTimeout: 500,
   *   preKill: async (v, signal) => {
   *     await fetch(`http://127.0.0.1:8080/dying/${v.pid}`, { method: 'POST', signal }); // tell its owner
   *   },
   * });
   * lmk.on('error', (err) => console.error(err.message)); // a failed hook lands here; the kill still happens
   */
  preKill?: (victim: PreKillVictim, signal: AbortSignal) => void | Promise<void>;
  /**
   * ms the kill waits for `preKill` (default 2000).
   *
   * @example
   * const lmk = new LowMemoryKiller({ candidates: { cgroup: dir }, minAvailable: '10%', preKill, preKillTimeout: 250 });
   */
  preKillTimeout?: number;
  /** ms to wait for a victim's death (default 5000). */
  killTimeout?: number;
  /** @deprecated Ignored: the wait after a kill ends when the killed processes are gone (their pidfds say so),
   *  when the kernel has freed their memory; waiting for the headroom to grow let another allocating process
   *  hold up the next decision. */
  memoryTimeout?: number;
  /** process_mrelease right after the SIGKILL (default true). */
  release?: boolean;
  /** Decide and report, but reclaim, trim and kill nothing. */
  dryRun?: boolean;
  /** Keep the event loop alive while running (default true). */
  ref?: boolean;
}

/**
 * What one kill takes: the victim alone, its process group, it and its descendants, or its whole cgroup.
 *
 * @example
 * const mode: KillMode = 'tree'; // a worker and everything it started
 * const lmk = new LowMemoryKiller({ candidates: { cgroup: dir }, minAvailable: '10%', killMode: mode });
 */
export type KillMode = 'process' | 'group' | 'tree' | 'cgroup';

/**
 * Names candidates: a pid, a command name (`comm`, exact), a RegExp (tested against comm, the command line joined
 * with spaces, and the cgroup path), or a predicate.
 *
 * @example
 * const lmk = new LowMemoryKiller({
 *   candidates: { cgroup: dir }, minAvailable: '10%', protect: [dbPid, 'postgres'], prefer: /--batch/,
 *   avoid: (c) => c.oomScoreAdj < 0,
 * });
 */
export type CandidateMatcher = number | string | RegExp | ((c: Candidate) => boolean);

/** Throws the TypeError/RangeError the first invalid option deserves. */
export function validateOptions(options: LowMemoryKillerOptions): void {
  validateObject(options, 'options');
  if (options === undefined) throw invalidType('options', 'of type object', options);
  const src = options.candidates;
  if (typeof src !== 'function') {
    if (src === null || typeof src !== 'object')
      throw invalidType('options.candidates', 'a function or { cgroup } or { childrenOf }', src);
    if ('cgroup' in src) {
      if (typeof src.cgroup !== 'string') throw invalidType('options.candidates.cgroup', 'of type string', src.cgroup);
    } else if ('childrenOf' in src) {
      const p = src.childrenOf;
      if (typeof p !== 'number' || !Number.isInteger(p) || p < 1)
        throw outOfRange('options.candidates.childrenOf', 'a pid', p);
    } else {
      throw invalidValue('options.candidates', src, 'must be a function, { cgroup } or { childrenOf }');
    }
  }
  if (options.rank !== undefined && typeof options.rank !== 'function')
    throw invalidType('options.rank', 'a function', options.rank);
  validateMatchers(options.protect, 'options.protect');
  validateMatchers(options.prefer, 'options.prefer');
  validateMatchers(options.avoid, 'options.avoid');
  validateAmount(options.minVictim, 'options.minVictim');
  validateAmount(options.minSwapFree, 'options.minSwapFree');
  if (options.critical !== undefined) {
    validateObject(options.critical, 'options.critical');
    const st = options.critical.stall;
    if (typeof st !== 'number' || !(st > 0 && st <= 1000))
      throw outOfRange('options.critical.stall', '> 0 and <= 1000 (ms in 1 s)', st);
    const ck = options.critical.kind;
    if (ck !== undefined && ck !== 'some' && ck !== 'full')
      throw invalidValue('options.critical.kind', ck, "must be 'some' or 'full'");
    const cr = options.critical.resource;
    if (cr !== undefined && cr !== 'memory' && cr !== 'cpu' && cr !== 'io')
      throw invalidValue('options.critical.resource', cr, "must be 'memory', 'cpu' or 'io'");
    if (options.critical.cgroup !== undefined && typeof options.critical.cgroup !== 'string')
      throw invalidType('options.critical.cgroup', 'of type string', options.critical.cgroup);
  }
  if (options.when !== undefined && options.when !== 'all' && options.when !== 'any')
    throw invalidValue('options.when', options.when, "must be 'all' or 'any'");
  const km = options.killMode;
  if (km !== undefined && !['process', 'group', 'tree', 'cgroup'].includes(km))
    throw invalidValue('options.killMode', km, "must be 'process', 'group', 'tree' or 'cgroup'");
  if (options.graceful !== undefined) {
    validateObject(options.graceful, 'options.graceful');
    if (options.graceful.signal !== undefined) toSignalNumber(options.graceful.signal);
    validateTimeout(options.graceful.timeout, 'options.graceful.timeout');
    validateAmount(options.graceful.critical, 'options.graceful.critical');
  }
  const ma = options.minAvailable;
  validateAmount(ma, 'options.minAvailable');
  if (ma === undefined && options.psi === undefined && options.minSwapFree === undefined && !options.critical) {
    throw invalidValue('options', options, 'needs minAvailable, minSwapFree, psi and/or critical: when to act');
  }
  if (options.memory !== undefined && (options.memory === null || typeof options.memory.cgroup !== 'string')) {
    throw invalidType('options.memory', '{ cgroup: string }', options.memory);
  }
  if (options.hysteresis !== undefined && !(options.hysteresis >= 0 && options.hysteresis <= 10)) {
    throw outOfRange('options.hysteresis', '>= 0 and <= 10', options.hysteresis);
  }
  const iv = options.interval;
  if (typeof iv === 'object' && iv !== null) {
    validateTimeout(iv.min, 'options.interval.min');
    validateTimeout(iv.max, 'options.interval.max');
    if ((iv.min ?? 1) < 1 || (iv.max ?? 1) < 1 || (iv.min ?? 10) > (iv.max ?? 1000))
      throw outOfRange('options.interval', '{ min, max } with 1 <= min <= max', iv);
  } else {
    validateTimeout(iv, 'options.interval');
    // 0 would be a busy loop: a sample every millisecond is the floor.
    if (iv !== undefined && iv < 1) throw outOfRange('options.interval', '>= 1 (ms)', iv);
  }
  if (options.preKill !== undefined && typeof options.preKill !== 'function')
    throw invalidType('options.preKill', 'a function', options.preKill);
  validateTimeout(options.preKillTimeout, 'options.preKillTimeout');
  validateTimeout(options.killTimeout, 'options.killTimeout');
  validateTimeout(options.memoryTimeout, 'options.memoryTimeout');
  if (options.reclaim !== undefined && options.reclaim !== false) {
    validateObject(options.reclaim, 'options.reclaim');
    const a = options.reclaim.anon;
    if (a !== undefined && a !== 'auto' && typeof a !== 'boolean')
      throw invalidValue('options.reclaim.anon', a, "must be true, false or 'auto'");
  }
  if (options.trim !== undefined) {
    validateObject(options.trim, 'options.trim');
    if (options.trim.signal !== undefined) toSignalNumber(options.trim.signal);
    if (options.trim.callback !== undefined && typeof options.trim.callback !== 'function') {
      throw invalidType('options.trim.callback', 'a function', options.trim.callback);
    }
    validateTimeout(options.trim.deadline, 'options.trim.deadline');
    validateMatchers(options.trim.always, 'options.trim.always');
  }
  validateBoolean(options.release, 'options.release');
  validateBoolean(options.dryRun, 'options.dryRun');
  validateBoolean(options.ref, 'options.ref');
}

/** Bytes, or a percentage such as `'10%'`. */
export function validateAmount(v: unknown, name: string): void {
  if (v === undefined) return;
  if (typeof v === 'number') {
    if (!(v >= 0 && Number.isFinite(v))) throw outOfRange(name, 'a byte count >= 0', v);
  } else if (typeof v !== 'string' || !/^\d+(\.\d+)?%$/.test(v) || Number(v.slice(0, -1)) > 100) {
    throw invalidValue(name, v, "must be a byte count or a percentage such as '10%'");
  }
}

/** An amount in bytes: a percentage is of `total`. */
export function toBytes(v: number | `${number}%`, total: number): number {
  return typeof v === 'number' ? v : (total * Number(v.slice(0, -1))) / 100;
}

function validateMatchers(v: unknown, name: string): void {
  if (v === undefined) return;
  for (const m of Array.isArray(v) ? (v as unknown[]) : [v]) {
    const ok =
      (typeof m === 'number' && Number.isInteger(m) && m > 0) ||
      (typeof m === 'string' && m !== '') ||
      m instanceof RegExp ||
      typeof m === 'function';
    if (!ok) throw invalidType(name, 'pids, command names, RegExps or predicates', m);
  }
}
