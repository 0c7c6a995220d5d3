// ExitWatcher: one object a supervisor adds processes to and hears each exit from. It is built on
// PidFd.waitExit, so every process watched shares the one native epoll watcher of this JS environment: adding
// 10,000 processes adds 10,000 epoll registrations and promises, and no thread and no timer.
import { EventEmitter } from 'node:events';
import { codedError } from './errors';
import { EventIterators } from './event-iterator';
import { ExitInfo } from './exit';
import { PidFd } from './pidfd';
import { invalidType, validateBoolean, validateInteger, validateObject } from './validate';

/**
 * Options of `new ExitWatcher()`.
 *
 * @example
 * const opts: ExitWatcherOptions = { ref: false }; // watched processes do not keep Node running
 * const watcher = new ExitWatcher(opts);
 */
export interface ExitWatcherOptions {
  /** Whether watched processes keep the event loop alive (default true), like ref'd Node handles. */
  ref?: boolean;
}

interface Entry {
  p: PidFd;
  owned: boolean;
  abort: AbortController;
}

/**
 * Watches any number of processes and emits `'exit'` (with the `ExitInfo` and the `PidFd`) as each one exits,
 * exactly once; it is also an async iterator of those `ExitInfo`s, which ends when the watcher is closed. Add
 * PidFds (they stay yours: the watcher never closes them) or pids (the watcher opens them, and closes them after
 * their exit or when they are removed). An exited process leaves the watcher before its `'exit'` is emitted.
 * A wait that fails (e.g. its PidFd was closed by its owner) emits `'error'` with the error and the PidFd.
 *
 * @example
 * const watcher = new ExitWatcher();
 * watcher.on('exit', (info) => console.log(`${info.pid} exited: ${info.signal ?? info.code}`));
 * for (const child of workers) watcher.add(PidFd.fromChild(child));
 * watcher.add(1234); // any process, not only children
 *
 * for await (const info of watcher) {
 *   if (info.code !== 0) restart(info.pid);
 * }
 */
export class ExitWatcher extends EventEmitter {
  #entries = new Map<PidFd, Entry>();
  #byPid = new Map<number, Set<Entry>>();
  #iters = new EventIterators<ExitInfo>();
  #ref: boolean;
  #closed = false;

  /**
   * A watcher with nothing watched yet. With `ref: false` the watched processes do not keep the event loop alive.
   *
   * @example
   * const watcher = new ExitWatcher({ ref: false });
   */
  constructor(options?: ExitWatcherOptions) {
    super();
    validateObject(options, 'options');
    validateBoolean(options?.ref, 'options.ref');
    this.#ref = options?.ref ?? true;
  }

  /** How many processes are watched. */
  get size(): number {
    return this.#entries.size;
  }

  /** Whether `close()` has been called. */
  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Starts watching a process: a PidFd (stays the caller's) or a pid (opened here: throws `ESRCH` if there is no
   * such process). Returns the PidFd watched. Adding a PidFd that is already watched does nothing. A process that
   * has already exited is reported at once (asynchronously).
   *
   * @example
   * const p = watcher.add(pid);
   * p.kill('SIGTERM');
   */
  add(target: PidFd | number): PidFd {
    if (this.#closed) throw codedError('ERR_PIDFD_CLOSED', 'The ExitWatcher is closed');
    let p: PidFd;
    let owned: boolean;
    if (target instanceof PidFd) {
      if (this.#entries.has(target)) return target;
      p = target;
      owned = false;
      void p.fd; // throws ERR_PIDFD_CLOSED now, rather than as an 'error' event later
    } else if (typeof target === 'number') {
      validateInteger(target, 'target', 1, 2 ** 22);
      p = PidFd.open(target);
      owned = true;
    } else {
      throw invalidType('target', 'a PidFd or a pid (number)', target);
    }
    const entry: Entry = { p, owned, abort: new AbortController() };
    this.#entries.set(p, entry);
    let same = this.#byPid.get(p.pid);
    if (same === undefined) this.#byPid.set(p.pid, (same = new Set()));
    same.add(entry);
    p.waitExit({ signal: entry.abort.signal, ref: this.#ref }).then(
      (info) => {
        if (!this.#remove(entry)) return;
        if (owned) p.close();
        this.#iters.push(info);
        this.emit('exit', info, p);
      },
      (err) => {
        if (!this.#remove(entry)) return; // removed: the abort we caused
        if (owned) p.close();
        this.emit('error', err, p);
      },
    );
    return p;
  }

  /**
   * Stops watching: a PidFd, or every watched PidFd for a pid. Returns whether anything was watched. PidFds the
   * watcher opened itself are closed.
   *
   * @example
   * watcher.delete(p);
   */
  delete(target: PidFd | number): boolean {
    const entries = target instanceof PidFd ? [this.#entries.get(target)] : [...(this.#byPid.get(target) ?? [])];
    let any = false;
    for (const e of entries) {
      if (e === undefined || !this.#remove(e)) continue;
      any = true;
      e.abort.abort();
      if (e.owned) e.p.close();
    }
    return any;
  }

  /**
   * Whether a PidFd, or any PidFd for a pid, is watched.
   *
   * @example
   * if (!watcher.has(pid)) watcher.add(pid);
   */
  has(target: PidFd | number): boolean {
    return target instanceof PidFd ? this.#entries.has(target) : (this.#byPid.get(target)?.size ?? 0) > 0;
  }

  /**
   * The PidFds watched now.
   *
   * @example
   * for (const p of watcher.pidfds()) p.kill('SIGTERM');
   */
  pidfds(): PidFd[] {
    return [...this.#entries.keys()];
  }

  #remove(e: Entry): boolean {
    if (this.#entries.get(e.p) !== e) return false;
    this.#entries.delete(e.p);
    const same = this.#byPid.get(e.p.pid);
    same?.delete(e);
    if (same?.size === 0) this.#byPid.delete(e.p.pid);
    return true;
  }

  /**
   * Stops watching everything (closing the PidFds it opened) and ends every async iterator. Idempotent.
   *
   * @example
   * watcher.close();
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const e of [...this.#entries.values()]) {
      this.#remove(e);
      e.abort.abort();
      if (e.owned) e.p.close();
    }
    this.#iters.end();
  }

  /** `using w = new ExitWatcher()` closes it at the end of the scope. */
  [Symbol.dispose](): void {
    this.close();
  }

  /**
   * The exits from now on, in order. The iteration ends when the watcher is closed. Breaking out of the loop ends
   * only that iteration, as with Node's `events.on()`: the watcher keeps watching, and exits are no longer buffered
   * for that loop. Failed waits go to `'error'` only; they do not end the iteration.
   *
   * @example
   * for await (const { pid, code, signal } of watcher) {
   *   console.log(pid, code ?? signal);
   *   if (watcher.size === 0) break; // the watcher stays open: add more and iterate again
   * }
   */
  [Symbol.asyncIterator](): AsyncIterableIterator<ExitInfo> {
    return this.#iters.iterator();
  }
}
