// Pressure Stall Information: reading /proc/pressure/* (or a cgroup v2 group's *.pressure file), and watching it
// with a kernel PSI trigger where the kernel accepts one, else by sampling the stall totals.
//
// Kernel facts this file is built around (see docs/low-memory-killer.md):
// - A trigger is "some|full <stall µs> <window µs>" written to the file. The /proc write handler overwrites the last
//   byte written with a NUL, so the string must end with "\n" (unterminated, its window is parsed truncated: EINVAL).
// - Without CAP_SYS_RESOURCE the window must be a multiple of 2 s, at most 10 s (2, 4, 6, 8, 10 s), and such
//   "unprivileged" triggers are evaluated only on the 2 s averaging tick. A second trigger on one fd gives EBUSY.
// - A trigger fd reports EPOLLPRI. Inside another epoll set its event is lost (the outer set's readiness check
//   consumes it), so each trigger fd gets its own libuv poll (src/pollfd.cc).
// - A freshly armed unprivileged trigger starts its window from a stall total that only privileged triggers keep
//   up to date, so it fires once or twice within its first windows with no real stall. Every event is therefore
//   checked against the stall totals (see #verify) before it is reported.
import { EventEmitter } from 'node:events';
import { closeSync, openSync, readFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { C, native } from './binding';
import { codedError, outOfResource, systemError, unsupported } from './errors';
import { EventIterators } from './event-iterator';
import { requireLoop, threadPath } from './runtime';
import {
  invalidType,
  invalidValue,
  outOfRange,
  validateAbortSignal,
  validateBoolean,
  validateObject,
} from './validate';

/**
 * A resource PSI reports on.
 *
 * @example
 * for (const r of ['memory', 'cpu', 'io'] as PressureResource[]) console.log(r, readPressure(r).some.avg60);
 */
export type PressureResource = 'memory' | 'cpu' | 'io';

/**
 * One line of a pressure file: averages in percent of wall time, `total` in microseconds of stall since boot.
 *
 * @example
 * const line: PressureLine = readPressure('cpu').some;
 * console.log(`${line.avg10}% over 10 s, ${line.total} µs stalled since boot`);
 */
export interface PressureLine {
  avg10: number;
  avg60: number;
  avg300: number;
  total: number;
}

/**
 * A parsed pressure file. `some`: at least one task stalled; `full`: all non-idle tasks stalled at once (for
 * `cpu`, system-wide `full` reads as zeros; older kernels have no `full` line for cpu).
 *
 * @example
 * const io: Pressure = readPressure('io');
 * if (io.full && io.full.avg10 > 20) console.log('all non-idle tasks stalled on I/O over 20% of the last 10 s');
 */
export interface Pressure {
  some: PressureLine;
  full?: PressureLine;
}

/**
 * Options of `readPressure`.
 *
 * @example
 * const opts: ReadPressureOptions = { cgroup: '/sys/fs/cgroup/workers' };
 * const { some } = readPressure('memory', opts);
 */
export interface ReadPressureOptions {
  /** A cgroup v2 directory: read its `<resource>.pressure` instead of /proc/pressure/<resource>. */
  cgroup?: string;
}

/**
 * Options of `watchPressure`.
 *
 * @example
 * const opts: WatchPressureOptions = { resource: 'io', kind: 'full', threshold: 200, window: 4000, mode: 'poll' };
 * const w = watchPressure(opts);
 */
export interface WatchPressureOptions {
  resource: PressureResource;
  /** `some` (default) or `full`. */
  kind?: 'some' | 'full';
  /** Stall, in ms, within `window` that makes an event. */
  threshold: number;
  /** The window, in ms (500 to 10,000; unprivileged kernel triggers need 2,000, 4,000, 6,000, 8,000 or 10,000). */
  window: number;
  /** A cgroup v2 directory to watch instead of the whole system. */
  cgroup?: string;
  /** `auto` (default): a kernel trigger if the kernel accepts it, else polling; `trigger`: throw if refused;
   *  `poll`: always sample the totals. */
  mode?: 'auto' | 'trigger' | 'poll';
  /** Poll mode: how often to sample the totals, in ms (default: window / 10, between 50 and 1,000). */
  interval?: number;
  /** Keep the event loop alive while watching (default true). */
  ref?: boolean;
  /** Closes the watcher when aborted. */
  signal?: AbortSignal;
}

/**
 * A pressure event: the stall grew by at least the threshold within (about) the window.
 *
 * @example
 * w.on('pressure', (e: PressureEvent) => {
 *   console.log(`${e.resource} ${e.kind}: ${e.stall} ms stalled in ${e.span} ms (${e.mode})`);
 * });
 */
export interface PressureEvent {
  resource: PressureResource;
  kind: 'some' | 'full';
  mode: 'trigger' | 'poll';
  /** Stall measured from the totals, in ms, over `span` ms ending now. */
  stall: number;
  span: number;
  threshold: number;
  window: number;
  /** The stall total, µs since boot. */
  total: number;
  /** `Date.now()` when the event was checked. */
  time: number;
}

const RESOURCES: readonly PressureResource[] = ['memory', 'cpu', 'io'];
const MIN_WINDOW = 500;
const MAX_WINDOW = 10_000;
/** How often totals are sampled while a fresh trigger settles (its first two windows and one tick). */
const SETTLE_SAMPLE_MS = 1000;
const PSI_TICK_MS = 2000;

function validateResource(resource: unknown): asserts resource is PressureResource {
  if (typeof resource !== 'string') throw invalidType('resource', 'of type string', resource);
  if (!RESOURCES.includes(resource as PressureResource))
    throw invalidValue('resource', resource, "must be 'memory', 'cpu' or 'io'");
}

function pressurePath(resource: PressureResource, cgroup: string | undefined): string {
  return cgroup === undefined ? `/proc/pressure/${resource}` : join(cgroup, `${resource}.pressure`);
}

function parseLine(line: string): PressureLine {
  const f = new Map(
    line
      .split(' ')
      .slice(1)
      .map((kv) => kv.split('=', 2) as [string, string]),
  );
  return {
    avg10: Number(f.get('avg10')),
    avg60: Number(f.get('avg60')),
    avg300: Number(f.get('avg300')),
    total: Number(f.get('total')),
  };
}

/** Parses the text of a pressure file. */
export function parsePressure(text: string): Pressure {
  const out: Partial<Pressure> = {};
  for (const line of text.split('\n')) {
    if (line.startsWith('some ')) out.some = parseLine(line);
    else if (line.startsWith('full ')) out.full = parseLine(line);
  }
  if (out.some === undefined)
    throw codedError('ERR_PIDFD_PROC_FORMAT', `not a pressure file: ${JSON.stringify(text.slice(0, 80))}`);
  return out as Pressure;
}

function readFile(path: string, cgroup: string | undefined): string {
  try {
    return readFileSync(path, 'latin1');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (cgroup === undefined && (code === 'ENOENT' || code === 'EOPNOTSUPP')) {
      throw unsupported('Pressure Stall Information (/proc/pressure, CONFIG_PSI, not disabled with psi=0)', '4.20');
    }
    if (cgroup !== undefined && code === 'ENOENT') {
      (err as Error).message += ' (a cgroup v2 directory has *.pressure files; cgroup v1 has none)';
    }
    throw err;
  }
}

/**
 * Reads and parses the pressure of `resource`, system-wide or of a cgroup v2 group.
 *
 * @example
 * const { some, full } = readPressure('memory');
 * console.log(`${some.avg10}% of the last 10 s some task waited for memory`);
 */
export function readPressure(resource: PressureResource, options?: ReadPressureOptions): Pressure {
  validateResource(resource);
  validateObject(options, 'options');
  const cgroup = options?.cgroup;
  if (cgroup !== undefined && typeof cgroup !== 'string') throw invalidType('options.cgroup', 'of type string', cgroup);
  return parsePressure(readFile(pressurePath(resource, cgroup), cgroup));
}

function validateMs(value: unknown, name: string, min: number, max: number): asserts value is number {
  if (typeof value !== 'number') throw invalidType(name, 'of type number', value);
  if (!(value >= min && value <= max)) throw outOfRange(name, `>= ${min} and <= ${max}`, value);
}

type Sample = [time: number, total: number]; // performance.now() ms, stall total µs

/**
 * Watches pressure: an EventEmitter (`'pressure'`, `'error'`, `'close'`) and an async iterator of
 * `PressureEvent`s. Create it with `watchPressure()`.
 *
 * @example
 * const w = watchPressure({ resource: 'memory', threshold: 150, window: 2000 });
 * console.log(w.mode, w.fallbackReason ?? '');
 * for await (const e of w) console.log(`${e.stall.toFixed(0)} ms stalled in ${e.span.toFixed(0)} ms`);
 */
export class PressureWatcher extends EventEmitter implements AsyncIterable<PressureEvent> {
  /** `trigger`: the kernel wakes us (one libuv poll on the trigger fd); `poll`: the totals are sampled. */
  readonly mode: 'trigger' | 'poll';
  /** Why a kernel trigger is not used (poll mode only), e.g. the kernel's answer to the trigger write. */
  readonly fallbackReason: string | undefined;
  /** The pressure file watched. */
  readonly path: string;
  /** The resource watched. */
  readonly resource: PressureResource;
  /** `some` or `full`. */
  readonly kind: 'some' | 'full';
  /** Stall in ms within `window` that makes an event. */
  readonly threshold: number;
  /** The window in ms. */
  readonly window: number;
  /** Poll mode: the sampling interval in ms. */
  readonly interval: number;
  /** Kernel events that the stall totals did not confirm (the arming noise of a fresh trigger), and dropped. */
  ignored = 0;

  #cgroup: string | undefined;
  #poll = 0; // native poll id (trigger mode)
  #timer: NodeJS.Timeout | undefined;
  #settleUntil = 0;
  #history: Sample[] = [];
  #lastEvent = -Infinity;
  #closed = false;
  #ref: boolean;
  #signal: AbortSignal | undefined;
  #onAbort = (): void => this.close();
  #iters = new EventIterators<PressureEvent>();

  /** @internal Use `watchPressure()`. */
  constructor(options: WatchPressureOptions) {
    super();
    validateObject(options, 'options');
    if (options === undefined) throw invalidType('options', 'of type object', options);
    validateResource(options.resource);
    const kind = options.kind ?? 'some';
    if (kind !== 'some' && kind !== 'full') throw invalidValue('options.kind', kind, "must be 'some' or 'full'");
    validateMs(options.window, 'options.window', MIN_WINDOW, MAX_WINDOW);
    validateMs(options.threshold, 'options.threshold', 1, options.window);
    const mode = options.mode ?? 'auto';
    if (mode !== 'auto' && mode !== 'trigger' && mode !== 'poll')
      throw invalidValue('options.mode', mode, "must be 'auto', 'trigger' or 'poll'");
    if (options.interval !== undefined) validateMs(options.interval, 'options.interval', 10, options.window);
    if (options.cgroup !== undefined && typeof options.cgroup !== 'string')
      throw invalidType('options.cgroup', 'of type string', options.cgroup);
    validateBoolean(options.ref, 'options.ref');
    validateAbortSignal(options.signal, 'options.signal');
    this.resource = options.resource;
    this.kind = kind;
    this.threshold = options.threshold;
    this.window = options.window;
    this.interval = options.interval ?? Math.min(1000, Math.max(50, options.window / 10));
    this.#cgroup = options.cgroup;
    this.#ref = options.ref ?? true;
    this.path = pressurePath(this.resource, this.#cgroup);
    this.#sample(); // throws if the file cannot be read at all: then neither mode can work

    let reason: string | undefined = 'mode: poll was asked for';
    if (mode !== 'poll') {
      reason = this.#arm();
      if (reason !== undefined && mode === 'trigger') {
        throw codedError('ERR_PIDFD_PSI_TRIGGER', `The kernel refused a PSI trigger on ${this.path}: ${reason}`);
      }
    }
    this.mode = reason === undefined ? 'trigger' : 'poll';
    this.fallbackReason = reason;
    if (this.mode === 'poll') this.#schedule(this.interval, this.#onTick);
    else {
      this.#settleUntil = performance.now() + 2 * this.window + PSI_TICK_MS;
      this.#schedule(SETTLE_SAMPLE_MS, this.#onSettleTick);
    }
    this.#signal = options.signal;
    if (this.#signal?.aborted) this.close();
    else this.#signal?.addEventListener('abort', this.#onAbort, { once: true });
  }

  // Opens the file, writes the trigger and polls the fd for EPOLLPRI. Returns why not, if the kernel refused.
  #arm(): string | undefined {
    requireLoop('A PSI trigger poll');
    let fd: number;
    try {
      fd = openSync(this.path, 'r+');
    } catch (err) {
      if (outOfResource((err as NodeJS.ErrnoException).code)) throw err; // no fd now: no answer about triggers
      return `open(${this.path}) for writing failed: ${(err as Error).message}`;
    }
    const trigger = `${this.kind} ${Math.round(this.threshold * 1000)} ${Math.round(this.window * 1000)}\n`;
    try {
      writeSync(fd, trigger);
    } catch (err) {
      closeSync(fd);
      const e = err as NodeJS.ErrnoException;
      if (outOfResource(e.code)) throw e;
      const hint =
        e.code === 'EINVAL' && this.window % 2000 !== 0
          ? ' (without CAP_SYS_RESOURCE the window must be 2, 4, 6, 8 or 10 s)'
          : '';
      return `writing the trigger ${JSON.stringify(trigger)} failed with ${e.code}${hint}`;
    }
    // The poll keeps a duplicate (the trigger lives on in it); ours is closed through fs, which opened it, so that
    // in a worker Node's own record of the fds it opened stays true.
    const id = native.pollStart(fd, C.UV_PRIORITIZED, this.#onPoll, threadPath);
    closeSync(fd);
    if (id < 0) {
      if (outOfResource(id)) throw systemError(id, 'uv_poll_start');
      return `polling the trigger fd failed: ${systemError(id, 'uv_poll_start').message}`;
    }
    this.#poll = id;
    if (!this.#ref) native.pollRef(id, false);
    return undefined;
  }

  #schedule(ms: number, fn: () => void): void {
    this.#timer = setTimeout(fn, ms);
    if (!this.#ref) this.#timer.unref();
  }

  #total(): number {
    const p = parsePressure(readFile(this.path, this.#cgroup));
    const line = this.kind === 'some' ? p.some : p.full;
    if (line === undefined) throw codedError('ERR_PIDFD_PROC_FORMAT', `${this.path} has no "${this.kind}" line`);
    return line.total;
  }

  #sample(): Sample {
    const s: Sample = [performance.now(), this.#total()];
    this.#history.push(s);
    // Keep what a window-long look back needs: every sample newer than a window, and the newest older one.
    const cut = s[0] - this.window;
    let keep = 0;
    while (keep + 1 < this.#history.length && this.#history[keep + 1][0] <= cut) keep++;
    if (keep > 0) this.#history.splice(0, keep);
    return s;
  }

  // Stall over about one window ending at `now`: from the newest sample at least a window old (or the oldest, if
  // none is that old yet). An event needs stall >= threshold there. That is exact while samples are dense (poll
  // mode, and a fresh trigger's settling time, when its spurious events come), and a necessary condition always.
  #verify(now: Sample): { stall: number; span: number } {
    const cut = now[0] - this.window;
    let ref = this.#history[0];
    for (const s of this.#history) if (s[0] <= cut && s !== now) ref = s;
    return { stall: (now[1] - ref[1]) / 1000, span: now[0] - ref[0] };
  }

  #emitEvent(now: Sample, v: { stall: number; span: number }): void {
    this.#lastEvent = now[0];
    const event: PressureEvent = {
      resource: this.resource,
      kind: this.kind,
      mode: this.mode,
      stall: v.stall,
      span: v.span,
      threshold: this.threshold,
      window: this.window,
      total: now[1],
      time: Date.now(),
    };
    this.#iters.push(event);
    this.emit('pressure', event);
  }

  #onPoll = (status: number, events: number): void => {
    if (this.#closed) return;
    if (status < 0) {
      return this.#fail(
        codedError(
          'ERR_PIDFD_PSI_TRIGGER',
          `The PSI trigger on ${this.path} reported an error (${systemError(status, 'epoll').code}): ` +
            'the file or its cgroup is gone',
        ),
      );
    }
    if ((events & C.UV_PRIORITIZED) === 0) return;
    try {
      const now = this.#sample();
      const v = this.#verify(now);
      if (v.stall >= this.threshold) this.#emitEvent(now, v);
      else this.ignored++;
    } catch (err) {
      this.#fail(err);
    }
  };

  #onSettleTick = (): void => {
    if (this.#closed) return;
    try {
      this.#sample();
    } catch (err) {
      return this.#fail(err);
    }
    if (performance.now() < this.#settleUntil) this.#schedule(SETTLE_SAMPLE_MS, this.#onSettleTick);
    else this.#timer = undefined;
  };

  #onTick = (): void => {
    if (this.#closed) return;
    try {
      const now = this.#sample();
      const v = this.#verify(now);
      // One event per window at most, as the kernel's triggers do.
      if (v.stall >= this.threshold && now[0] - this.#lastEvent >= this.window) this.#emitEvent(now, v);
    } catch (err) {
      return this.#fail(err);
    }
    if (!this.#closed) this.#schedule(this.interval, this.#onTick);
  };

  #fail(err: unknown): void {
    const rejected = this.#iters.fail(err);
    if (this.listenerCount('error') > 0 || rejected === 0) this.emit('error', err);
    this.close();
  }

  /** Whether `close()` has been called (or the watcher failed). */
  get closed(): boolean {
    return this.#closed;
  }

  /** Keep the event loop alive while watching (the default), like a ref'd Node handle. */
  ref(): this {
    this.#setRef(true);
    return this;
  }

  /** Let the process exit while watching. */
  unref(): this {
    this.#setRef(false);
    return this;
  }

  #setRef(ref: boolean): void {
    this.#ref = ref;
    if (this.#poll > 0) native.pollRef(this.#poll, ref);
    if (ref) this.#timer?.ref();
    else this.#timer?.unref();
  }

  /**
   * Stops watching: closes the trigger fd, stops sampling, ends iterators. No event is emitted afterwards. Idempotent.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#poll > 0) native.pollStop(this.#poll);
    this.#poll = 0;
    clearTimeout(this.#timer);
    this.#signal?.removeEventListener('abort', this.#onAbort);
    this.#iters.end();
    this.emit('close');
  }

  /** `using w = watchPressure(...)` closes it at the end of the scope. */
  [Symbol.dispose](): void {
    this.close();
  }

  /**
   * Pressure events from now on, until `close()`. Breaking out of the loop ends only that iteration, as with Node's
   * `events.on()`: the watcher keeps watching (close it when done), and events are no longer buffered for that loop.
   * A failure of the watcher rejects the pending and later `next()` calls.
   *
   * @example
   * for await (const e of w) if (e.stall > 500) break;
   * w.close(); // breaking out did not close it
   */
  [Symbol.asyncIterator](): AsyncIterableIterator<PressureEvent> {
    return this.#iters.iterator();
  }
}

/**
 * Watches Pressure Stall Information: an event each time tasks stalled on `resource` for at least `threshold` ms
 * within `window` ms. Uses a kernel PSI trigger where the kernel accepts it (`mode: 'trigger'`), else samples the
 * stall totals every `interval` ms (`mode: 'poll'`, with `fallbackReason`). Every event is checked against the
 * stall totals first: a freshly armed trigger fires with no real stall.
 *
 * @example
 * const w = watchPressure({ resource: 'memory', kind: 'some', threshold: 150, window: 2000 });
 * w.on('pressure', (e) => console.log(`memory: ${e.stall} ms stalled (${e.mode})`));
 * // later
 * w.close();
 */
export function watchPressure(options: WatchPressureOptions): PressureWatcher {
  return new PressureWatcher(options);
}
