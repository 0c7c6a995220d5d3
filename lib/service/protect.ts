// The killer's self-protection as a service: out of the OOM killer's reach, ahead of the processes filling memory
// for CPU, its code kept resident, and its decision path run once at start. Every measure reports what it asked,
// what /proc says now and, where it failed, the errno code: a daemon without the privilege for one goes on.
import { setPriority } from 'node:os';
import { capabilities } from '../capabilities';
import type { LowMemoryKiller } from '../lmk/killer';
import { lockMemory } from '../lmk/lock';
import { parseKb, parseStat, readSelf, selfThreads, statUnchecked, writeSelf } from '../procfs';
import { validateBoolean, validateInteger, validateObject } from '../validate';

/**
 * What `selfProtect()` applies. `undefined` takes the default; `null` leaves that measure alone.
 *
 * @example
 * const options: SelfProtectOptions = { oomScoreAdj: -1000, nice: null, lock: true }; // keep the nice value
 */
export interface SelfProtectOptions {
  /** /proc/self/oom_score_adj, -1000 (never the OOM killer's victim; the default) .. 1000. */
  oomScoreAdj?: number | null;
  /** The nice value of every thread, -20 (the default) .. 19. */
  nice?: number | null;
  /** Lock the code in memory with `lockMemory()` (default false). */
  lock?: boolean;
}

/**
 * One measure of `selfProtect()`, named like its config key.
 *
 * @example
 * for (const m of selfProtect()) {
 *   if (!m.done) console.warn(`${m.measure}: asked ${m.asked}, still ${m.now} (${m.code})`);
 * }
 */
export interface ProtectMeasure {
  measure: 'oom-score-adj' | 'nice' | 'lock';
  /** The value asked for (`true` for lock). */
  asked: number | boolean;
  /** Read from /proc before: oom_score_adj, the nice value (/proc/self/stat), VmLck in bytes. */
  before: number;
  /** Read from /proc after, the same way. */
  now: number;
  /** Whether /proc now says what was asked (for lock: the call succeeded). */
  done: boolean;
  /** Why not: the errno code of the failed call (EACCES: lowering without CAP_SYS_RESOURCE or CAP_SYS_NICE). */
  code?: string;
  /** The failed call's message. */
  message?: string;
}

const oomScoreAdj = (): number => Number(readSelf('oom_score_adj').trim());
const nice = (): number => parseStat(readSelf('stat')).nice;
const lockedBytes = (): number => parseKb(readSelf('status')).get('VmLck') ?? 0;

function failure(err: unknown): { code?: string; message?: string } {
  const e = err as NodeJS.ErrnoException & { info?: { code?: string } };
  // os.setPriority throws ERR_SYSTEM_ERROR with the errno code in `info`.
  return { code: e.info?.code ?? e.code, message: e.message };
}

function protectOom(asked: number): ProtectMeasure {
  const before = oomScoreAdj();
  let error: ReturnType<typeof failure> | undefined;
  try {
    writeSelf('oom_score_adj', String(asked));
  } catch (err) {
    error = failure(err);
  }
  const now = oomScoreAdj();
  return { measure: 'oom-score-adj', asked, before, now, done: error === undefined && now === asked, ...error };
}

// Linux keeps the nice value per thread, and setpriority(PRIO_PROCESS, 0) sets the calling thread's only: every
// thread running now is set by its tid; threads started later inherit it from the thread that starts them.
function protectNice(asked: number): ProtectMeasure {
  const before = nice();
  let error: ReturnType<typeof failure> | undefined;
  for (const tid of selfThreads()) {
    try {
      setPriority(tid, asked);
    } catch (err) {
      // A thread that ended since the listing is no failure.
      if (statUnchecked(process.pid, `task/${tid}/stat`) !== undefined) error ??= failure(err);
    }
  }
  const now = nice();
  return { measure: 'nice', asked, before, now, done: error === undefined && now === asked, ...error };
}

function protectLock(): ProtectMeasure {
  const before = lockedBytes();
  let error: ReturnType<typeof failure> | undefined;
  try {
    lockMemory();
  } catch (err) {
    error = failure(err);
  }
  return { measure: 'lock', asked: true, before, now: lockedBytes(), done: error === undefined, ...error };
}

/**
 * Protects this process as a low-memory killer must be: writes /proc/self/oom_score_adj (-1000 by default; below
 * its current value only with CAP_SYS_RESOURCE), sets the nice value of every thread (-20 by default; below 0 only
 * with CAP_SYS_NICE or RLIMIT_NICE) and, with `lock`, locks its code in memory (`lockMemory()`; the JavaScript heap
 * cannot be locked, see there). A measure the process may not take is reported (`done: false` and the errno code),
 * never thrown: the killer still runs without it. Only bad options throw (ERR_INVALID_ARG_TYPE, ERR_OUT_OF_RANGE).
 * Call it before `killer.start()`, so that the threads the killer starts inherit the nice value.
 *
 * @example
 * for (const m of selfProtect({ lock: true })) {
 *   console.log(`${m.measure}: ${m.before} -> ${m.now}${m.done ? '' : ` (not done: ${m.code})`}`);
 * }
 */
export function selfProtect(options: SelfProtectOptions = {}): ProtectMeasure[] {
  validateObject(options, 'options');
  const adj = options.oomScoreAdj === undefined ? -1000 : options.oomScoreAdj;
  const prio = options.nice === undefined ? -20 : options.nice;
  if (adj !== null) validateInteger(adj, 'options.oomScoreAdj', -1000, 1000);
  if (prio !== null) validateInteger(prio, 'options.nice', -20, 19);
  validateBoolean(options.lock, 'options.lock');
  const out: ProtectMeasure[] = [];
  if (adj !== null) out.push(protectOom(adj));
  if (prio !== null) out.push(protectNice(prio));
  if (options.lock === true) out.push(protectLock());
  return out;
}

/**
 * What `prewarm()` did.
 *
 * @example
 * const { candidates, ms }: PrewarmResult = await prewarm(killer);
 */
export interface PrewarmResult {
  /** Candidates listed and ranked. */
  candidates: number;
  /** How long it took, in ms. */
  ms: number;
  /** Page faults (minor + major) it took. */
  faults: number;
}

/**
 * Runs the work of a decision once, at start, acting on nothing: the feature probe (cached from then on), the
 * budget's headroom, and the candidates listed, opened, read and ranked, with the first one's smaps_rollup read as
 * a kill reads it. V8 compiles a function when it first runs and the kernel faults code in when it is first
 * touched, both allocating; done here, the first decision under pressure runs compiled code from resident (and,
 * after `selfProtect({ lock: true })`, locked) pages. Call it after `selfProtect()` and before `killer.start()`.
 *
 * @example
 * // lib/service/protect.ts is the CLI's (pidfd lmk); not exported from the package root
 * const killer = new LowMemoryKiller({ candidates: { cgroup: '/sys/fs/cgroup/workers' }, minAvailable: '10%' });
 * const { candidates, ms } = await prewarm(killer);
 * killer.start();
 */
export async function prewarm(killer: LowMemoryKiller): Promise<PrewarmResult> {
  const t0 = performance.now();
  const f0 = process.resourceUsage();
  capabilities();
  killer.threshold(killer.headroom().total);
  const ranked = await killer.candidates();
  const first = ranked.find((c) => !c.protected);
  if (first !== undefined) {
    try {
      first.pidfd.memory();
    } catch {
      /* it exited meanwhile, or its memory is not readable here: the read's code ran all the same */
    }
  }
  const f1 = process.resourceUsage();
  return {
    candidates: ranked.length,
    ms: performance.now() - t0,
    faults: f1.minorPageFault - f0.minorPageFault + (f1.majorPageFault - f0.majorPageFault),
  };
}
