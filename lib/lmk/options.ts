// The options of LowMemoryKiller, their types and their validation (every check runs in the constructor, before
// anything is read or signalled).
import type { PidFd } from '../pidfd';
import type { PressureResource, WatchPressureOptions } from '../pressure';
import { toSignalNumber } from '../signals';
import { invalidType, invalidValue, outOfRange, validateBoolean, validateObject, validateTimeout } from '../validate';
import type { Candidate } from './candidates';

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
  /** Sort order: negative when `a` should go before `b`. Default: higher oom_score_adj first, then larger PSS. */
  rank?: (a: Candidate, b: Candidate) => number;
  /** Pids, or a predicate, never to act on. */
  protect?: number[] | ((c: Candidate) => boolean);
  /** Act when available memory is below this: bytes, or a percentage of the total (`'10%'`). */
  minAvailable?: number | `${number}%`;
  /** Where available memory is measured: default the system (/proc/meminfo MemAvailable of MemTotal); with a
   *  memory cgroup directory, its headroom (v1: limit_in_bytes - usage_in_bytes; v2: memory.max - memory.current). */
  memory?: { cgroup: string };
  /** Act on PSI events (with `minAvailable` as well: both must say so). */
  psi?: KillerPsiOptions;
  /** Pressure ends when available memory is back above minAvailable × (1 + hysteresis). Default 0.1. */
  hysteresis?: number;
  /** How often available memory is checked, in ms (default 1000). */
  interval?: number;
  /** The reclaim step: `false` to skip it; `advice` (default `pageout`), `count` (how many of the lowest-priority
   *  candidates, default all), `settle` (ms to wait before measuring again, default 200). */
  reclaim?: false | { advice?: 'pageout' | 'cold'; count?: number; settle?: number };
  /** The trim step (off unless given): a signal to send and/or a callback to call for each candidate, then wait up
   *  to `deadline` ms (default 1000) for memory to come back. */
  trim?: {
    /** Sent to each unprotected candidate through its pidfd. */
    signal?: NodeJS.Signals | number;
    /** Called for each unprotected candidate; `signal` aborts at the deadline. */
    callback?: (c: Candidate, signal: AbortSignal) => void | Promise<void>;
    /** ms to wait for memory to come back (default 1000). */
    deadline?: number;
  };
  /** ms to wait for a victim's death (default 5000) and then for its memory to come back (default 2000). */
  killTimeout?: number;
  memoryTimeout?: number;
  /** process_mrelease right after the SIGKILL (default true). */
  release?: boolean;
  /** Decide and report, but reclaim, trim and kill nothing. */
  dryRun?: boolean;
  /** Keep the event loop alive while running (default true). */
  ref?: boolean;
}

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
  const pr = options.protect;
  if (pr !== undefined && typeof pr !== 'function' && !(Array.isArray(pr) && pr.every((x) => Number.isInteger(x)))) {
    throw invalidType('options.protect', 'an array of pids or a function', pr);
  }
  const ma = options.minAvailable;
  if (ma !== undefined) {
    if (typeof ma === 'number') {
      if (!(ma >= 0 && Number.isFinite(ma))) throw outOfRange('options.minAvailable', 'a byte count >= 0', ma);
    } else if (typeof ma !== 'string' || !/^\d+(\.\d+)?%$/.test(ma) || Number(ma.slice(0, -1)) > 100) {
      throw invalidValue('options.minAvailable', ma, "must be a byte count or a percentage such as '10%'");
    }
  }
  if (ma === undefined && options.psi === undefined) {
    throw invalidValue('options', options, 'needs minAvailable and/or psi: when to act');
  }
  if (options.memory !== undefined && (options.memory === null || typeof options.memory.cgroup !== 'string')) {
    throw invalidType('options.memory', '{ cgroup: string }', options.memory);
  }
  if (options.hysteresis !== undefined && !(options.hysteresis >= 0 && options.hysteresis <= 10)) {
    throw outOfRange('options.hysteresis', '>= 0 and <= 10', options.hysteresis);
  }
  validateTimeout(options.interval, 'options.interval');
  validateTimeout(options.killTimeout, 'options.killTimeout');
  validateTimeout(options.memoryTimeout, 'options.memoryTimeout');
  if (options.reclaim !== undefined && options.reclaim !== false) validateObject(options.reclaim, 'options.reclaim');
  if (options.trim !== undefined) {
    validateObject(options.trim, 'options.trim');
    if (options.trim.signal !== undefined) toSignalNumber(options.trim.signal);
    if (options.trim.callback !== undefined && typeof options.trim.callback !== 'function') {
      throw invalidType('options.trim.callback', 'a function', options.trim.callback);
    }
    validateTimeout(options.trim.deadline, 'options.trim.deadline');
  }
  validateBoolean(options.release, 'options.release');
  validateBoolean(options.dryRun, 'options.dryRun');
  validateBoolean(options.ref, 'options.ref');
}
