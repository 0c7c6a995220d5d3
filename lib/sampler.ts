// A threshold sampler: a native thread reads one number from a file (a /proc or cgroupfs counter) on a timer and
// wakes JavaScript only when that number crosses a bound, so sampling every 10 ms costs a few syscalls per sample
// and no JS turn (src/sampler.cc). The period adapts in the thread, clamp(|value - bound| / rate, minMs, maxMs):
// far from the bound it samples rarely. It is one-shot: after a crossing (or a read error) it waits, disarmed,
// until its owner has measured for itself and re-arms it with update().
import { EventEmitter } from 'node:events';
import { native } from './binding';
import { codedError, E, systemError } from './errors';
import { runtimeUnsupported } from './runtime';
import { invalidType, invalidValue, outOfRange, validateBoolean, validateObject } from './validate';

/** When the sampler fires, and how often it samples until then. `bound` and `rate` are in the sampler's units. */
export interface SamplerArming {
  /** The bound: fires when the value is above it (`op: 'above'`) or below it (`op: 'below'`). */
  bound: number;
  /** Shortest period, ms (default 10, at least 1). */
  minMs?: number;
  /** Longest period, ms (default 1000, at most 3,600,000). */
  maxMs?: number;
  /** The fastest the value is expected to move toward the bound, in units per ms: the next sample comes when the
   *  value could have covered the distance at that rate. 0 (the default): always `maxMs`. */
  rate?: number;
}

/** Options of a `ThresholdSampler`. */
export interface ThresholdSamplerOptions extends SamplerArming {
  /** The file, opened once: a /proc or cgroupfs file (they answer each read from offset 0 with fresh contents). */
  path: string;
  /** The number is the one after `key` at the start of a line (`'MemAvailable:'`, `'oom_kill'`); a key ending in
   *  a letter, digit or `_` must be followed by a blank. `''` (the default): the first number in the file. */
  key?: string;
  /** The sampler's units per unit of the file: 1024 for /proc/meminfo's kB to bytes (default 1). */
  scale?: number;
  op: 'below' | 'above';
  /** Whether it keeps the event loop alive while open (default true). */
  ref?: boolean;
}

/** Events of a `ThresholdSampler`. */
export interface ThresholdSamplerEvents {
  /** The value crossed the bound (in the sampler's units). The sampler is disarmed until `update()`. */
  cross: [value: number];
  /** The file could not be read, or has no number after the key any more. The sampler is disarmed until `update()`. */
  error: [err: Error];
  close: [];
}

const DEFAULTS = { minMs: 10, maxMs: 1000, rate: 0 };
const MAX_MS = 3_600_000;

function finite(value: unknown, name: string, min = -Infinity): asserts value is number {
  if (typeof value !== 'number') throw invalidType(name, 'of type number', value);
  if (!Number.isFinite(value) || value < min) {
    throw outOfRange(name, min === -Infinity ? 'a finite number' : `a finite number >= ${min}`, value);
  }
}

function validateArming(a: Required<SamplerArming>, prefix: string): void {
  finite(a.bound, `${prefix}bound`);
  finite(a.rate, `${prefix}rate`, 0);
  if (typeof a.minMs !== 'number') throw invalidType(`${prefix}minMs`, 'of type number', a.minMs);
  if (!(a.minMs >= 1 && a.minMs <= MAX_MS)) throw outOfRange(`${prefix}minMs`, `>= 1 and <= ${MAX_MS}`, a.minMs);
  if (typeof a.maxMs !== 'number') throw invalidType(`${prefix}maxMs`, 'of type number', a.maxMs);
  if (!(a.maxMs >= a.minMs && a.maxMs <= MAX_MS)) {
    throw outOfRange(`${prefix}maxMs`, `>= minMs (${a.minMs}) and <= ${MAX_MS}`, a.maxMs);
  }
}

/**
 * Samples one number in a file on a native thread and emits `'cross'` once when it crosses a bound; re-arm it
 * with `update()`. Read errors are `'error'` events (disarmed too). Where the runtime cannot run the thread,
 * `start()` throws `ERR_PIDFD_UNSUPPORTED` naming what is missing (sample with timers instead).
 *
 * @example
 * const s = new ThresholdSampler({ path: '/proc/meminfo', key: 'MemAvailable:', scale: 1024, op: 'below',
 *   bound: 512 * 2 ** 20, rate: 6000 * 2 ** 20 / 1000 });
 * s.on('cross', (bytes) => { console.log(`MemAvailable ${bytes} B`); s.update({ bound: 256 * 2 ** 20 }); });
 * s.on('error', (err) => console.error(err));
 * s.start();
 */
export class ThresholdSampler extends EventEmitter<ThresholdSamplerEvents> {
  readonly path: string;
  readonly key: string;
  readonly scale: number;
  readonly op: 'below' | 'above';
  #arming: Required<SamplerArming>;
  #id = 0;
  #armed = false;
  #closed = false;
  #ref: boolean;

  /** Validates the options; `start()` opens the file and starts sampling. */
  constructor(options: ThresholdSamplerOptions) {
    super();
    validateObject(options, 'options');
    if (options === undefined) throw invalidType('options', 'of type object', options);
    const { path, key = '', scale = 1, op } = options;
    if (typeof path !== 'string') throw invalidType('options.path', 'of type string', path);
    if (path === '' || path.includes('\0')) throw invalidValue('options.path', path, 'must be a non-empty path');
    if (typeof key !== 'string') throw invalidType('options.key', 'of type string', key);
    if (/[\n\0]/.test(key) || key.length > 256) {
      throw invalidValue('options.key', key, 'must be at most 256 characters, without newline or NUL');
    }
    finite(scale, 'options.scale');
    if (!(scale > 0)) throw outOfRange('options.scale', '> 0', scale);
    if (op !== 'below' && op !== 'above') throw invalidValue('options.op', op, "must be 'below' or 'above'");
    validateBoolean(options.ref, 'options.ref');
    this.#arming = {
      bound: options.bound,
      minMs: options.minMs ?? DEFAULTS.minMs,
      maxMs: options.maxMs ?? DEFAULTS.maxMs,
      rate: options.rate ?? DEFAULTS.rate,
    };
    validateArming(this.#arming, 'options.');
    this.path = path;
    this.key = key;
    this.scale = scale;
    this.op = op;
    this.#ref = options.ref ?? true;
  }

  /** The current bound and periods (in the sampler's units). */
  get arming(): Readonly<Required<SamplerArming>> {
    return { ...this.#arming };
  }

  /** Whether it is sampling (started, not fired since the last arming, not closed). */
  get armed(): boolean {
    return this.#armed;
  }

  /** Whether `close()` has been called. */
  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Opens the file, reads it once (a missing file or key throws here, as a system error or
   * `ERR_PIDFD_PROC_FORMAT`), and samples it at once and then on every period. Idempotent.
   */
  start(): this {
    if (this.#closed) throw codedError('ERR_PIDFD_CLOSED', 'The sampler is closed');
    if (this.#id > 0) return this;
    if (typeof native.samplerStart !== 'function') {
      throw runtimeUnsupported('A threshold sampler', 'the loaded native addon has none (rebuild it)');
    }
    const a = this.#arming;
    const s = this.scale;
    const id = native.samplerStart(
      this.path,
      this.key,
      this.op === 'above',
      a.bound / s,
      a.minMs,
      a.maxMs,
      a.rate / s,
      this.#onEvent,
    );
    if (id < 0) {
      if (id === -E.ENOTSUP) {
        throw runtimeUnsupported('A threshold sampler', 'it needs a native thread and threadsafe functions');
      }
      throw this.#error(id, 'open');
    }
    this.#id = id;
    this.#armed = true;
    if (!this.#ref) native.samplerRef?.(id, false);
    return this;
  }

  /**
   * Re-arms it (after a crossing, an error, or to change the bound while armed), with these parameters merged into
   * the current ones, and samples at once. A crossing seen but not yet delivered is dropped: this sample sees it
   * again if it still holds.
   *
   * @example
   * s.on('cross', () => s.update({ bound: s.arming.bound / 2, minMs: 10 }));
   */
  update(arming?: Partial<SamplerArming>): this {
    if (this.#closed) throw codedError('ERR_PIDFD_CLOSED', 'The sampler is closed');
    validateObject(arming, 'arming');
    const next = { ...this.#arming };
    for (const k of ['bound', 'minMs', 'maxMs', 'rate'] as const) {
      const v = arming?.[k];
      if (v !== undefined) next[k] = v;
    }
    validateArming(next, 'arming.');
    this.#arming = next;
    if (this.#id > 0) {
      const s = this.scale;
      native.samplerUpdate?.(this.#id, next.bound / s, next.minMs, next.maxMs, next.rate / s);
      this.#armed = true;
    }
    return this;
  }

  /** Keep the event loop alive while open (the default). */
  ref(): this {
    this.#setRef(true);
    return this;
  }

  /** Let the process exit while it samples. */
  unref(): this {
    this.#setRef(false);
    return this;
  }

  #setRef(ref: boolean): void {
    this.#ref = ref;
    if (this.#id > 0) native.samplerRef?.(this.#id, ref);
  }

  /** Stops sampling and closes the file; no event after this but `'close'`. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#armed = false;
    if (this.#id > 0) native.samplerStop?.(this.#id);
    this.#id = 0;
    this.emit('close');
  }

  /** `using s = new ThresholdSampler(...)` closes it at the end of the scope. */
  [Symbol.dispose](): void {
    this.close();
  }

  #error(status: number, syscall: string): Error {
    if (status === -E.ENODATA) {
      const what = this.key === '' ? 'no number' : `no number after ${JSON.stringify(this.key)} at a line start`;
      return codedError('ERR_PIDFD_PROC_FORMAT', `${this.path}: ${what}`);
    }
    const err = systemError(status, syscall) as Error & { path?: string };
    err.message += ` '${this.path}'`;
    err.path = this.path;
    return err;
  }

  #onEvent = (status: number, value: number): void => {
    if (this.#closed) return;
    this.#armed = false;
    if (status < 0) this.emit('error', this.#error(status, 'read'));
    else this.emit('cross', value * this.scale);
  };
}
