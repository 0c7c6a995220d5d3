// The userspace low-memory killer: watches memory (MemAvailable or a memory cgroup's headroom) and/or PSI, and
// answers pressure in steps: reclaim (process_madvise on the lowest-priority candidates), trim (ask candidates to
// free memory, with a deadline), kill (one victim: SIGKILL through its pidfd, process_mrelease, wait for the death
// and for the memory to come back before anything else is decided). See docs/low-memory-killer.md.
//
// Safety rules, each enforced where it can be checked, not assumed:
// - Only candidates are ever signalled. Pids are turned into PidFds when the candidates are listed, and membership
//   (the cgroup, the parent) is checked again *after* pidfd_open, with the pidfd alive after that check: from then on
//   the PidFd names that process and no other, so a pid recycled later (even between the decision and the kill)
//   cannot redirect the signal.
// - Never this process, never pid 1.
// - One victim at a time, and never while the previous victim's memory is still coming back.
import { EventEmitter } from 'node:events';
import { C, native } from './binding';
import { readCgroupProcs, readMemoryCgroup } from './cgroup';
import { codedError, systemError } from './errors';
import { MemoryInfo, parseMaps } from './memory';
import { PidFd } from './pidfd';
import { childrenByScan, parseStat, readChecked, readMeminfo, readSelf } from './procfs';
import { PressureEvent, PressureResource, PressureWatcher, watchPressure, WatchPressureOptions } from './pressure';
import { toSignalNumber } from './signals';
import { invalidType, invalidValue, outOfRange, validateBoolean, validateObject, validateTimeout } from './validate';

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

/**
 * Available memory as the killer measures it.
 *
 * @example
 * const h: MemoryHeadroom = lmk.headroom();
 * console.log(`${((100 * h.available) / h.total).toFixed(1)}% available (${h.source})`);
 */
export interface MemoryHeadroom {
  available: number;
  total: number;
  source: 'meminfo' | 'cgroup-v1' | 'cgroup-v2';
}

/**
 * Emitted once per episode, when the killer starts responding.
 *
 * @example
 * lmk.on('pressure', (e: PressureStartEvent) => console.log(`episode ${e.episode}: ${e.reason}`));
 */
export interface PressureStartEvent {
  episode: number;
  reason: string;
  available: number;
  total: number;
  /** minAvailable in bytes, if set. */
  threshold: number | undefined;
  psi: PressureEvent | undefined;
}

/**
 * Emitted for each candidate the reclaim step advised.
 *
 * @example
 * lmk.on('reclaim', (e: ReclaimEvent) => console.log(`${e.comm} (${e.pid}): RSS ${e.rssBefore} -> ${e.rssAfter}`));
 */
export interface ReclaimEvent {
  episode: number;
  pid: number;
  comm: string;
  advised: number;
  rssBefore: number;
  rssAfter: number;
  dryRun: boolean;
}

/**
 * Emitted for each candidate asked to trim, once the deadline passed (or pressure ended).
 *
 * @example
 * lmk.on('trim', (e: TrimEvent) => console.log(`${e.comm} (${e.pid}) freed ${e.freed} bytes`));
 */
export interface TrimEvent {
  episode: number;
  pid: number;
  comm: string;
  /** PSS before minus PSS after the deadline (or the moment pressure ended). */
  freed: number;
  dryRun: boolean;
}

/**
 * Emitted for each kill (or, with dryRun, each kill it would have made).
 *
 * @example
 * lmk.on('kill', (e: KillEvent) => {
 *   console.log(`killed ${e.comm} (${e.pid}): ${e.reason}; ${e.bytesFreed} bytes back in ${e.memoryMs} ms`);
 * });
 */
export interface KillEvent {
  episode: number;
  pid: number;
  comm: string;
  reason: string;
  oomScoreAdj: number;
  pss: number;
  rss: number;
  /** Available memory after minus before the kill, measured. */
  bytesFreed: number;
  /** ms from SIGKILL to the pidfd reporting the death. */
  deathMs: number;
  /** ms from SIGKILL to the memory being back (see `regained`). */
  memoryMs: number;
  /** Whether at least 80% of the victim's PSS came back within memoryTimeout. */
  regained: boolean;
  /** What release() returned (`undefined`: not called). */
  released: boolean | undefined;
  dryRun: boolean;
}

/**
 * Emitted when an episode ends: the headroom is back above the threshold plus its hysteresis (or the PSI stall is
 * over).
 *
 * @example
 * lmk.on('recovered', (e: RecoveredEvent) => console.log(`episode ${e.episode} over: ${e.available} bytes free`));
 */
export interface RecoveredEvent {
  episode: number;
  /** Available bytes when the episode ended. */
  available: number;
  total: number;
}

/**
 * The events of a `LowMemoryKiller` and the argument each listener gets.
 *
 * @example
 * const log = (name: keyof LowMemoryKillerEvents) => lmk.on(name, (e) => console.log(name, e));
 */
export interface LowMemoryKillerEvents {
  pressure: [PressureStartEvent];
  reclaim: [ReclaimEvent];
  trim: [TrimEvent];
  kill: [KillEvent];
  recovered: [RecoveredEvent];
  error: [Error];
}

const MiB = 2 ** 20;
// A trim callback may reject with any value; listeners of 'error' get an Error.
const toError = (err: unknown): Error => (err instanceof Error ? err : new Error(String(err)));
const fmt = (b: number): string => `${(b / MiB).toFixed(1)} MiB`;
const sleep = (ms: number, ref: boolean): Promise<void> =>
  new Promise((r) => {
    const t = setTimeout(r, ms);
    if (!ref) t.unref();
  });

/**
 * Available memory as the killer measures it: the system's (MemAvailable of MemTotal), or a memory cgroup's
 * headroom (v1: limit_in_bytes - usage_in_bytes; v2: memory.max - memory.current; the limit capped at MemTotal).
 *
 * @example
 * const { available, total, source } = readHeadroom('/sys/fs/cgroup/memory/workers');
 */
export function readHeadroom(cgroup?: string): MemoryHeadroom {
  if (cgroup === undefined) {
    const m = readMeminfo();
    return {
      available: m.get('MemAvailable') ?? m.get('MemFree') ?? 0,
      total: m.get('MemTotal') ?? 0,
      source: 'meminfo',
    };
  }
  const cg = readMemoryCgroup(cgroup);
  if (cg === undefined) {
    throw codedError(
      'ERR_PIDFD_NO_MEMORY_CGROUP',
      `${cgroup} is not a memory cgroup (no memory.usage_in_bytes or memory.current)`,
    );
  }
  const memTotal = readMeminfo().get('MemTotal') ?? Infinity;
  const lim = cg.limit === undefined ? memTotal : Math.min(cg.limit, memTotal);
  return { available: lim - cg.usage, total: lim, source: cg.version === 1 ? 'cgroup-v1' : 'cgroup-v2' };
}

/**
 * What `lockMemory()` locked.
 *
 * @example
 * const { ranges, bytes }: LockResult = lockMemory();
 * console.log(`locked ${ranges} file mappings, ${bytes} bytes`);
 */
export interface LockResult {
  /** File-backed mappings locked. */
  ranges: number;
  /** Their total size in bytes (pages are locked as they are or become resident). */
  bytes: number;
}

/**
 * Keeps this process's code in memory, so that under memory pressure the killer itself is not slowed down by page
 * faults on its own code. It locks every file-backed mapping (the node binary, shared libraries, this addon,
 * read-only data) with mlock2(MLOCK_ONFAULT): pages resident now stay, pages touched later are locked as they
 * fault in, nothing is read in just to lock it. Those are the pages the kernel drops first under pressure.
 *
 * Anonymous memory (the JavaScript heap) is not locked, on purpose: mlockall makes Node abort, because V8 hands heap
 * pages back with madvise(MADV_DONTNEED), which the kernel refuses on locked memory, and V8 treats the refusal as
 * fatal. Without swap anonymous memory cannot be paged out anyway; with swap, run the killer with a small heap.
 * Throws a system error (EPERM without CAP_IPC_LOCK beyond RLIMIT_MEMLOCK, ENOMEM).
 *
 * @example
 * import { lockMemory } from 'pidfd';
 * const { ranges, bytes } = lockMemory();
 */
export function lockMemory(): LockResult {
  const maps = parseMaps(readSelf('maps')).filter((m) => m.kind === 'file');
  const flat: bigint[] = [];
  let bytes = 0;
  for (const m of maps) {
    flat.push(m.start, m.end - m.start);
    bytes += Number(m.end - m.start);
  }
  const r = native.mlock(BigUint64Array.from(flat), C.MLOCK_ONFAULT);
  if (r < 0) throw systemError(r, 'mlock2');
  return { ranges: maps.length, bytes };
}

interface Listed {
  pidfd: PidFd;
  ours: boolean; // opened by the killer (closed by it)
}

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
  #source: CandidateSource;
  #listed = new Map<number, Listed>();
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

  /** Validates the options (and that `memory.cgroup` is a memory cgroup); `start()` starts watching. */
  constructor(options: LowMemoryKillerOptions) {
    super();
    validateObject(options, 'options');
    if (options === undefined) throw invalidType('options', 'of type object', options);
    const src = options.candidates;
    if (typeof src !== 'function') {
      if (src === null || typeof src !== 'object')
        throw invalidType('options.candidates', 'a function or { cgroup } or { childrenOf }', src);
      if ('cgroup' in src) {
        if (typeof src.cgroup !== 'string')
          throw invalidType('options.candidates.cgroup', 'of type string', src.cgroup);
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
    this.options = options;
    this.#source = src;
    this.#ref = options.ref ?? true;
    this.#dryRun = options.dryRun ?? false;
    if (options.memory !== undefined) readHeadroom(options.memory.cgroup); // fail now, not at the first check
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
    return readHeadroom(this.options.memory?.cgroup);
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
    this.#timer = setInterval(() => this.#wake(), this.options.interval ?? 1000);
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
    for (const l of this.#listed.values()) if (l.ours) l.pidfd.close();
    this.#listed.clear();
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
    const handles = await this.#list();
    const out: Candidate[] = [];
    const protect = this.options.protect;
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
    const rank =
      this.options.rank ??
      ((a: Candidate, b: Candidate) => b.oomScoreAdj - a.oomScoreAdj || b.memory.pss - a.memory.pss);
    return out.sort(rank);
  }

  // Pids (or PidFds) from the source → live PidFds whose membership was checked after opening.
  async #list(): Promise<PidFd[]> {
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

  #psiRecent(): boolean {
    return performance.now() < this.#psiUntil;
  }

  // Is the killer in a pressure state now? Updates the state (and emits `recovered` on leaving it).
  #measure(): { low: boolean; m: MemoryHeadroom; threshold: number | undefined; reason: string } {
    const m = this.headroom();
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

    // 1. Reclaim: push the lowest-priority candidates' pages out (only file pages can go without swap).
    const rc = this.options.reclaim;
    if (rc !== false) {
      const count = rc?.count ?? ranked.length;
      for (const c of ranked.slice(0, count)) {
        if (this.#dryRun) {
          this.emit('reclaim', {
            episode,
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
          this.emit('reclaim', {
            episode,
            pid: c.pid,
            comm: c.comm,
            advised: r.advised,
            rssBefore: r.rssBefore,
            rssAfter: r.rssAfter,
            dryRun: false,
          } satisfies ReclaimEvent);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ESRCH') this.emit('error', err as Error);
        }
      }
      if (!this.#dryRun) {
        await sleep(rc?.settle ?? 200, this.#ref);
        s = this.#measure();
        if (!s.low) return;
      }
    }

    // 2. Trim: ask, then give them until the deadline (less if pressure ends sooner).
    const trim = this.options.trim;
    if (trim !== undefined && (trim.signal !== undefined || trim.callback !== undefined)) {
      const deadline = trim.deadline ?? 1000;
      if (this.#dryRun) {
        for (const c of ranked)
          this.emit('trim', { episode, pid: c.pid, comm: c.comm, freed: 0, dryRun: true } satisfies TrimEvent);
      } else {
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
                  .catch((err: unknown) => this.emit('error', toError(err))),
              );
          } catch (err) {
            this.emit('error', err as Error);
          }
        }
        const until = performance.now() + deadline;
        let settled = calls.length === 0;
        void Promise.all(calls).then(() => (settled = true));
        while (performance.now() < until) {
          await sleep(25, this.#ref);
          s = this.#measure();
          if (!s.low && settled) break;
        }
        ac.abort();
        for (const c of asked) {
          let after = c.memory.pss;
          try {
            after = c.pidfd.memory().pss;
          } catch {
            after = 0; // it exited: all of it is back
          }
          this.emit('trim', {
            episode,
            pid: c.pid,
            comm: c.comm,
            freed: c.memory.pss - after,
            dryRun: false,
          } satisfies TrimEvent);
        }
        s = this.#measure();
        if (!s.low) return;
        ranked = (await this.candidates()).filter((c) => !c.protected); // sizes changed: rank again
        if (ranked.length === 0) return;
      }
    }

    // 3. Kill one victim.
    await this.#kill(episode, ranked[0], s.reason, s.m);
  }

  async #kill(episode: number, v: Candidate, reason: string, before: MemoryHeadroom): Promise<void> {
    if (v.pid === process.pid || v.pid === 1) return; // never; #list already leaves them out
    const base: Omit<KillEvent, 'bytesFreed' | 'deathMs' | 'memoryMs' | 'regained' | 'released' | 'dryRun'> = {
      episode,
      pid: v.pid,
      comm: v.comm,
      reason,
      oomScoreAdj: v.oomScoreAdj,
      pss: v.memory.pss,
      rss: v.memory.rss,
    };
    if (this.#dryRun) {
      this.emit('kill', {
        ...base,
        bytesFreed: 0,
        deathMs: 0,
        memoryMs: 0,
        regained: false,
        released: undefined,
        dryRun: true,
      } satisfies KillEvent);
      return;
    }
    const t0 = performance.now();
    if (!v.pidfd.kill('SIGKILL')) return; // it exited meanwhile: its memory is coming back anyway; measure again
    let released: boolean | undefined;
    if (this.options.release ?? true) {
      try {
        released = v.pidfd.release();
      } catch (err) {
        released = false;
        if ((err as NodeJS.ErrnoException).code !== 'ERR_PIDFD_UNSUPPORTED') this.emit('error', err as Error);
      }
    }
    await v.pidfd.waitExit({ timeout: this.options.killTimeout ?? 5000 });
    const deathMs = performance.now() - t0;
    // Memory back: the headroom has grown by most of what the victim held (PSS: its own share).
    const want = before.available + 0.8 * v.memory.pss;
    const until = t0 + (this.options.killTimeout ?? 5000) + (this.options.memoryTimeout ?? 2000);
    const stopAt = Math.min(until, performance.now() + (this.options.memoryTimeout ?? 2000));
    let now = this.headroom();
    while (now.available < want && performance.now() < stopAt) {
      await sleep(2, this.#ref);
      now = this.headroom();
    }
    const memoryMs = performance.now() - t0;
    const listed = this.#listed.get(v.pid);
    if (listed?.pidfd === v.pidfd) {
      if (listed.ours) v.pidfd.close();
      this.#listed.delete(v.pid);
    }
    this.emit('kill', {
      ...base,
      bytesFreed: now.available - before.available,
      deathMs,
      memoryMs,
      regained: now.available >= want,
      released,
      dryRun: false,
    } satisfies KillEvent);
    // PSI seen so far describes the time before this kill: the next PSI-driven decision needs a whole new window.
    this.#psiUntil = -Infinity;
    this.#lastKillEnd = performance.now();
    // The next decision, if pressure remains, is a new episode: run it now rather than at the next tick.
    if (this.#running) this.#again = true;
  }
}
