import { ChildProcess } from 'node:child_process';
import { C, native } from './binding';
import { callError, capabilities, requireCapability } from './capabilities';
import { abortReason, closedError, codedError, E, timeoutError } from './errors';
import { decodeWaitStatus, ExitInfo, exitFrom, ExitStatus, readExit } from './exit';
import { adoptWith, formatIdentity, idSource, readId } from './identity';
import { adviseRanges, Advice, MemoryRange } from './madvise';
import {
  Mapping,
  MemoryInfo,
  readMaps,
  readMemory,
  reclaim as reclaimMemory,
  ReclaimOptions,
  ReclaimResult,
} from './memory';
import { toSignalNumber } from './signals';
import {
  invalidType,
  invalidValue,
  validateAbortSignal,
  validateBoolean,
  validateInteger,
  validateObject,
  validateTimeout,
} from './validate';
import * as watcher from './watcher';

/**
 * Options of `PidFd.open`.
 *
 * @example
 * const p = PidFd.open(tid, { thread: true }); // reports this thread's exit, not the process's
 */
export interface OpenOptions {
  /** PIDFD_NONBLOCK: a waitid on this fd returns EAGAIN instead of blocking (Linux 5.10). */
  nonblocking?: boolean;
  /** PIDFD_THREAD: a pidfd for one thread (pass a thread id); it reports that thread's exit (Linux 6.9). */
  thread?: boolean;
}

/**
 * Options of `pidfd.kill`.
 *
 * @example
 * const opts: KillOptions = { scope: 'process-group' }; // Linux 6.9
 * p.kill('SIGTERM', opts);
 */
export interface KillOptions {
  /** Who receives the signal: the process (default), only the thread, or the whole process group (Linux 6.9). */
  scope?: 'process' | 'thread' | 'process-group';
  /** An integer the target receives in `si_value` (the signal is sent as by sigqueue(3), si_code SI_QUEUE). */
  value?: number;
}

/**
 * Options of `pidfd.waitExit`.
 *
 * @example
 * const opts: WaitOptions = { timeout: 5000, signal: ac.signal, ref: false };
 * const info = await p.waitExit(opts); // rejects with ETIMEDOUT after 5 s
 */
export interface WaitOptions {
  /** Reject with an `ETIMEDOUT` error after this many milliseconds. */
  timeout?: number;
  /** Reject with the signal's reason when it aborts. */
  signal?: AbortSignal;
  /** Keep the event loop alive while waiting (default true), like a ref'd Node handle. */
  ref?: boolean;
}

/**
 * What PIDFD_GET_INFO returned; fields the kernel did not fill are absent (a reaped process has no ids).
 *
 * @example
 * const info: PidFdInfo = p.info();
 * console.log(info.pid, info.ppid, info.euid, info.exit?.code ?? info.exit?.signal);
 */
export interface PidFdInfo {
  /** The process id, from the kernel when it says, else the pid this PidFd was opened for. */
  pid: number;
  tgid?: number;
  ppid?: number;
  ruid?: number;
  rgid?: number;
  euid?: number;
  egid?: number;
  suid?: number;
  sgid?: number;
  fsuid?: number;
  fsgid?: number;
  /** The cgroup v2 id of the process's cgroup. */
  cgroupId?: bigint;
  /** How it ended, once it has exited and been reaped (PIDFD_INFO_EXIT, Linux 6.15). */
  exit?: ExitStatus;
}

interface Waiter {
  resolve(info: ExitInfo): void;
  reject(err: unknown): void;
  ref: boolean;
  timer: NodeJS.Timeout | undefined;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
}

/** A non-child that has exited but whose parent has not reaped it yet: how long to wait for that reap (and with
 *  it PIDFD_INFO_EXIT) before resolving with `source: 'none'`. Parents that reap promptly take microseconds. */
export const REAP_GRACE_MS = 100;

const NO_TOKEN = 0;

const constructing = Symbol('PidFd.constructing');
const SCOPE_FLAGS = { process: 0, thread: C.PIDFD_SIGNAL_THREAD, 'process-group': C.PIDFD_SIGNAL_PROCESS_GROUP };

// A PidFd dropped without close() still has its fd closed, with a warning, as Node does for a FileHandle.
const registry = new FinalizationRegistry<{ fd: number; pid: number }>(({ fd, pid }) => {
  if (native.close(fd) === 0) {
    process.emitWarning(`Closing pidfd ${fd} (pid ${pid}) on garbage collection; call close() instead`, {
      code: 'PIDFD_GC_CLOSE',
    });
  }
});

/**
 * A handle to one process that cannot be confused with another: the kernel ties the fd to the process itself, not
 * to its pid, so signals never reach a stranger that inherited the pid, and the exit is reported the moment it
 * happens, for any process.
 *
 * @example
 * const p = PidFd.open(pid);
 * p.kill('SIGTERM');
 * const { code, signal } = await p.waitExit({ timeout: 5000 });
 * p.close();
 */
export class PidFd {
  #fd: number;
  readonly #pid: number;
  readonly #child: ChildProcess | undefined;
  #exited = false;
  #thread = false; // opened with PIDFD_THREAD
  #exit: ExitInfo | undefined; // final status, once known
  #waiters = new Set<Waiter>();
  #token = NO_TOKEN; // pending watcher registration
  #reapTimer: NodeJS.Timeout | undefined;
  #id: bigint | undefined; // see lib/identity.ts

  /** @internal Use `PidFd.open` or `PidFd.fromChild`. */
  constructor(secret?: unknown, fd?: number, pid?: number, child?: ChildProcess) {
    if (secret !== constructing) {
      throw codedError(
        'ERR_ILLEGAL_CONSTRUCTOR',
        'Illegal constructor: use PidFd.open() or PidFd.fromChild()',
        TypeError,
      );
    }
    this.#fd = fd as number;
    this.#pid = pid as number;
    this.#child = child;
    registry.register(this, { fd: this.#fd, pid: this.#pid }, this);
  }

  /**
   * Opens a pidfd for `pid` (pidfd_open(2), Linux 5.3).
   *
   * @example
   * const p = PidFd.open(1234);
   */
  static open(pid: number, options?: OpenOptions): PidFd {
    validateInteger(pid, 'pid', 1, 2 ** 22);
    validateObject(options, 'options');
    validateBoolean(options?.nonblocking, 'options.nonblocking');
    validateBoolean(options?.thread, 'options.thread');
    let flags = 0;
    if (options?.nonblocking) {
      requireCapability('pidfdNonblock');
      flags |= C.PIDFD_NONBLOCK;
    }
    if (options?.thread) {
      requireCapability('pidfdThread');
      flags |= C.PIDFD_THREAD;
    }
    const p = PidFd.#open(pid, flags, undefined);
    p.#thread = options?.thread === true;
    return p;
  }

  /**
   * Opens a pidfd for a child started with `child_process`. Race-free only while Node has not reaped the child,
   * so it throws `ERR_PIDFD_CHILD_EXITED` once the child's exit has been reported.
   *
   * @example
   * const child = spawn('sleep', ['10']);
   * const p = PidFd.fromChild(child);
   */
  static fromChild(child: ChildProcess): PidFd {
    if (!(child instanceof ChildProcess)) throw invalidType('child', 'an instance of ChildProcess', child);
    // libuv reaps a child and sets exitCode/signalCode in the same callback, so while both are null the pid still
    // names this child (alive or a zombie) and cannot have been recycled.
    if (typeof child.pid !== 'number') throw invalidValue('child', child, 'has no pid (it failed to spawn)');
    if (child.exitCode !== null || child.signalCode !== null) {
      throw codedError('ERR_PIDFD_CHILD_EXITED', `Child ${child.pid} has already exited and been reaped`);
    }
    return PidFd.#open(child.pid, 0, child);
  }

  static #open(pid: number, flags: number, child: ChildProcess | undefined): PidFd {
    const fd = native.open(pid, flags);
    if (fd < 0) throw callError('pidfdOpen', fd, 'pidfd_open');
    return new PidFd(constructing, fd, pid, child);
  }

  /**
   * Re-opens the process named by an identity string from `pidfd.identity()` (say, read from a pid file after a
   * daemon restart). Throws `ERR_PIDFD_STALE` if that pid now names a different process or the machine has
   * rebooted since, and an `ESRCH` system error if no process has that pid any more.
   *
   * @example
   * let worker;
   * try {
   *   worker = PidFd.adopt(fs.readFileSync('worker.pid', 'utf8'));
   * } catch (err) {
   *   if (err.code !== 'ERR_PIDFD_STALE' && err.code !== 'ESRCH') throw err;
   *   worker = undefined; // gone: start a new one
   * }
   */
  static adopt(identity: string): PidFd {
    return adoptWith(identity, (pid) => PidFd.open(pid));
  }

  /**
   * The process's identity for this boot: its pidfs inode number (Linux 6.9+, read from the pidfd, exact, also
   * after exit), or on older kernels its start time in clock ticks after boot (read from /proc while it runs).
   * Two PidFds name the same process exactly when their ids are equal. Cached after the first read.
   *
   * @example
   * const a = PidFd.open(pid), b = PidFd.open(pid);
   * console.log(a.id === b.id); // true: the same process
   */
  get id(): bigint {
    if (this.#id === undefined) {
      const fd = this.#live();
      this.#id = readId(this, idSource(fd));
    }
    return this.#id;
  }

  /**
   * A string naming this process across restarts of the caller, for a pid file: boot id, id and pid
   * (`pidfd1:<boot id>:<ino|start>:<id>:<pid>`). `PidFd.adopt` turns it back into a PidFd, or refuses.
   *
   * @example
   * fs.writeFileSync('worker.pid', PidFd.fromChild(child).identity() + '\n');
   */
  identity(): string {
    const id = this.id;
    return formatIdentity(idSource(this.#fd < 0 ? -1 : this.#fd), id, this.#pid);
  }

  /** The pid this PidFd was opened for. Stays readable after close. */
  get pid(): number {
    return this.#pid;
  }

  /** The file descriptor, for use with other APIs. Throws `ERR_PIDFD_CLOSED` once closed. */
  get fd(): number {
    if (this.#fd < 0) throw closedError();
    return this.#fd;
  }

  /** Whether `close()` has been called. */
  get closed(): boolean {
    return this.#fd < 0;
  }

  /** True once the process has exited (a zombie counts as exited). Throws `ERR_PIDFD_CLOSED` if closed and not
   *  known to have exited. */
  get exited(): boolean {
    if (this.#exited) return true;
    const r = native.poll(this.#live());
    if (r > 0 && (r & C.POLLIN) !== 0) this.#exited = true;
    return this.#exited;
  }

  /**
   * True once the process has exited and its parent has reaped it (the pidfd reports POLLHUP): from then on its pid
   * may name another process. An unreaped zombie is `exited` but not `reaped`. Throws `ERR_PIDFD_CLOSED` if closed.
   *
   * @example
   * if (p.exited && !p.reaped) console.log(`${p.pid} is a zombie: its pid is still its own`);
   */
  get reaped(): boolean {
    return (native.poll(this.#live()) & C.POLLHUP) !== 0;
  }

  #live(): number {
    if (this.#fd < 0) throw closedError();
    return this.#fd;
  }

  /**
   * Sends a signal to exactly this process (pidfd_send_signal(2)). Returns `false` if the process had already
   * exited; other failures throw a system error (e.g. `EPERM`).
   *
   * @example
   * if (!p.kill('SIGTERM')) console.log('already gone');
   * p.kill('SIGUSR1', { value: 42 }); // the target sees si_value 42
   */
  kill(signal: NodeJS.Signals | number = 'SIGTERM', options?: KillOptions): boolean {
    const signo = toSignalNumber(signal);
    validateObject(options, 'options');
    const scope = options?.scope === undefined ? 'process' : options.scope;
    if (typeof scope !== 'string' || !Object.prototype.hasOwnProperty.call(SCOPE_FLAGS, scope)) {
      throw invalidValue('options.scope', scope, "must be 'process', 'thread' or 'process-group'");
    }
    const value = options?.value;
    if (value !== undefined) validateInteger(value, 'options.value', -(2 ** 31), 2 ** 31 - 1);
    const fd = this.#live();
    if (scope !== 'process') requireCapability('pidfdSignalScope');
    // A zombie accepts signals silently; "already exited" must be false, so look first. (Not for the process
    // group: its other members may live on.)
    if (scope !== 'process-group' && this.exited) return false;
    // With no flag the kernel takes the scope from the pidfd's type, so a thread pidfd would signal only its
    // thread: 'process' must say so explicitly there.
    const flags = scope === 'process' && this.#thread ? C.PIDFD_SIGNAL_THREAD_GROUP : SCOPE_FLAGS[scope];
    const r = native.sendSignal(fd, signo, flags, value);
    if (r === 0) return true;
    if (r === -E.ESRCH) {
      // For a process group, ESRCH means no process has this pid as its group id: it says nothing about this one.
      if (scope !== 'process-group') this.#exited = true;
      return false;
    }
    throw callError('pidfdSendSignal', r, 'pidfd_send_signal');
  }

  /**
   * Resolves once the process has exited, with its exit status where the kernel can tell (see `ExitInfo.source`).
   * Resolves at once if it already has. Any number of waits share one native watcher; a settled, timed-out or
   * aborted wait leaves nothing registered.
   *
   * @example
   * const info = await p.waitExit({ timeout: 10_000, signal: AbortSignal.timeout(60_000), ref: false });
   */
  waitExit(options?: WaitOptions): Promise<ExitInfo> {
    let ref: boolean;
    try {
      validateObject(options, 'options');
      validateTimeout(options?.timeout, 'options.timeout');
      validateAbortSignal(options?.signal, 'options.signal');
      validateBoolean(options?.ref, 'options.ref');
      ref = options?.ref ?? true;
      this.#live();
    } catch (err) {
      return Promise.reject(err);
    }
    const signal = options?.signal;
    if (signal?.aborted) return Promise.reject(abortReason(signal));
    if (this.#exit !== undefined) return Promise.resolve(this.#exit);
    return new Promise<ExitInfo>((resolve, reject) => {
      const w: Waiter = { resolve, reject, ref, timer: undefined, signal, onAbort: undefined };
      // First: starting the watcher can throw (EMFILE; a runtime without the mechanism), which rejects this promise
      // with nothing registered yet.
      if (ref) watcher.retain();
      this.#waiters.add(w);
      const timeout = options?.timeout;
      if (timeout !== undefined) {
        w.timer = setTimeout(() => this.#cancel(w, timeoutError(timeout)), timeout);
        if (!ref) w.timer.unref();
      }
      if (signal) {
        w.onAbort = () => this.#cancel(w, abortReason(signal));
        signal.addEventListener('abort', w.onAbort, { once: true });
      }
      if (this.#token === NO_TOKEN && this.#reapTimer === undefined) {
        try {
          this.#arm();
        } catch (err) {
          this.#cancel(w, err);
        }
      }
    });
  }

  // Starts watching: settle now if the process has already exited, else register for EPOLLIN.
  #arm(): void {
    if (this.exited) this.#onExited();
    else this.#token = watcher.watch(this.#fd, C.EPOLLIN, this.#onReady);
  }

  // The watcher read the exit status at wake-up (see src/watcher.cc): the hot path makes no further native call.
  #onReady = (events: number, waited: number, status: number): void => {
    this.#token = NO_TOKEN;
    if (this.#reapTimer !== undefined) this.#disarm(); // the reap-grace timer, if this was the EPOLLHUP of a reap
    this.#exited = true;
    const info = exitFrom(this.#pid, waited, status);
    if (info !== undefined) this.#settle(info);
    else if ((events & C.EPOLLIN) !== 0) this.#awaitReap();
    else this.#onReaped();
  };

  #onExited(): void {
    const info = readExit(this.#fd, this.#pid, capabilities().pidfdInfoExit);
    if (info !== undefined) return this.#settle(info);
    this.#awaitReap();
  }

  #awaitReap(): void {
    // Exited, but neither our unreaped child nor reaped with PIDFD_INFO_EXIT: a zombie of another parent. The
    // kernel fills the exit status when that parent reaps it, and the pidfd reports EPOLLHUP then; give the
    // parent a moment to do so.
    // Our own child lands here too when waitid(P_PIDFD) is missing or filtered: its parent (Node) reaps it
    // promptly, and PIDFD_INFO_EXIT or child_process's exitCode has the status once it has.
    const caps = capabilities();
    if (this.#child === undefined ? caps.pidfdInfoExit : !caps.waitidPidfd) {
      this.#token = watcher.watch(this.#fd, 0, this.#onReady);
      this.#reapTimer = setTimeout(this.#onReaped, REAP_GRACE_MS).unref();
    } else {
      this.#onReaped();
    }
  }

  // Reaped (EPOLLHUP), or the reap grace ran out: settle with what the kernel can tell now.
  #onReaped = (): void => {
    this.#disarm();
    const info = readExit(this.#fd, this.#pid, capabilities().pidfdInfoExit);
    if (info !== undefined) return this.#settle(info);
    // Node reaped our child before we could peek at it, on a kernel without PIDFD_INFO_EXIT: Node has the status.
    const child = this.#child;
    if (child !== undefined && (child.exitCode !== null || child.signalCode !== null)) {
      return this.#settle({ pid: this.#pid, code: child.exitCode, signal: child.signalCode, source: 'waitid' });
    }
    this.#settle({ pid: this.#pid, code: null, signal: null, source: 'none' }, false);
  };

  #settle(info: ExitInfo, final = true): void {
    if (final) this.#exit = info;
    // resolve() runs no user code synchronously (reactions are microtasks), so the set cannot change under us.
    for (const w of this.#waiters) {
      this.#cleanup(w);
      w.resolve(info);
    }
    this.#waiters.clear();
  }

  #cancel(w: Waiter, reason: unknown): void {
    if (!this.#waiters.delete(w)) return;
    this.#cleanup(w);
    if (this.#waiters.size === 0) this.#disarm();
    w.reject(reason);
  }

  #cleanup(w: Waiter): void {
    if (w.timer !== undefined) clearTimeout(w.timer);
    if (w.onAbort !== undefined) w.signal?.removeEventListener('abort', w.onAbort);
    if (w.ref) watcher.release();
  }

  #disarm(): void {
    if (this.#token !== NO_TOKEN) {
      watcher.unwatch(this.#fd, this.#token);
      this.#token = NO_TOKEN;
    }
    if (this.#reapTimer !== undefined) {
      clearTimeout(this.#reapTimer);
      this.#reapTimer = undefined;
    }
  }

  /**
   * process_mrelease(2) (Linux 5.15): frees a dying process's memory now instead of when it finishes exiting.
   * Call it right after `kill('SIGKILL')`. Returns `false` if the process is already gone (its memory is freed or
   * being freed by its own exit). Throws `EINVAL` if the process is not dying.
   *
   * @example
   * p.kill('SIGKILL');
   * p.release();
   */
  release(): boolean {
    const r = native.mrelease(this.#live());
    if (r === 0) return true;
    if (r === -E.ESRCH) return false;
    const hint = r === -E.EINVAL ? 'the process is not dying: send SIGKILL first, then call release()' : undefined;
    throw callError('processMrelease', r, 'process_mrelease', hint);
  }

  /**
   * process_madvise(2) (Linux 5.10): advice about ranges of the target's memory. Returns the bytes advised.
   * Any number of ranges: they are sent in batches within the kernel's limits.
   *
   * @example
   * p.madvise('pageout', [{ address: 0x7f0000000000n, length: 1 << 20 }]);
   */
  madvise(advice: Advice, ranges: MemoryRange[]): number {
    return adviseRanges(this.#live(), advice, ranges);
  }

  /**
   * The process's memory in bytes, from /proc/<pid>/smaps_rollup (falling back to status, then statm), read
   * through this pidfd: throws `ESRCH` once the process has exited, never data of a process that inherited the pid.
   * A process whose main thread has exited while other threads run is alive: it is read through a live thread.
   * See `MemoryInfo` for how each field is derived.
   *
   * @example
   * const { rss, pss, anon, file } = p.memory();
   */
  memory(): MemoryInfo {
    return readMemory(this);
  }

  /**
   * The process's mappings (/proc/<pid>/maps), read through this pidfd: throws `ESRCH` once the process has exited
   * (a zombie's maps read back empty; that is never returned as "no mappings"). A process whose main thread has
   * exited while other threads run is read through a live thread.
   *
   * @example
   * const anon = p.maps().filter((m) => m.kind === 'anon');
   */
  maps(): Mapping[] {
    return readMaps(this);
  }

  /**
   * Advises the kernel to reclaim (`pageout`, default) or deactivate (`cold`) the process's memory: the ranges
   * come from `maps()` (all but the special mappings), sent with process_madvise(2) in batches. Reports what it
   * advised, the RSS before and after, and whether the mappings changed under it. Without swap only file-backed
   * pages can leave memory.
   *
   * @example
   * const { advised, rssBefore, rssAfter } = p.reclaim({ advice: 'pageout', kinds: ['file'] });
   */
  reclaim(options?: ReclaimOptions): ReclaimResult {
    return reclaimMemory(this, options);
  }

  /**
   * ioctl(PIDFD_GET_INFO) (Linux 6.13): ids, cgroup, and (6.15+) the exit status once the process was reaped.
   *
   * @example
   * const { ppid, euid, cgroupId, exit } = p.info();
   */
  info(): PidFdInfo {
    const r = native.info(this.#live(), C.PIDFD_INFO_EXIT | C.PIDFD_INFO_CGROUPID);
    if (typeof r === 'number') {
      throw callError('pidfdGetInfo', r === -E.ENOTTY ? -E.ENOSYS : r, 'ioctl(PIDFD_GET_INFO)');
    }
    const out: PidFdInfo = { pid: this.#pid };
    if (r.mask & C.PIDFD_INFO_PID) Object.assign(out, { pid: r.pid, tgid: r.tgid, ppid: r.ppid });
    if (r.mask & C.PIDFD_INFO_CREDS) {
      Object.assign(out, {
        ruid: r.ruid,
        rgid: r.rgid,
        euid: r.euid,
        egid: r.egid,
        suid: r.suid,
        sgid: r.sgid,
        fsuid: r.fsuid,
        fsgid: r.fsgid,
      });
    }
    if (r.mask & C.PIDFD_INFO_CGROUPID) out.cgroupId = r.cgroupid;
    if (r.mask & C.PIDFD_INFO_EXIT) out.exit = decodeWaitStatus(r.exitCode);
    return out;
  }

  /**
   * pidfd_getfd(2) (Linux 5.6): a copy, in this process, of the target's file descriptor `targetFd`
   * (close-on-exec). Closing it is the caller's job (`fs.closeSync`).
   *
   * @example
   * const copy = p.getfd(3);
   */
  getfd(targetFd: number): number {
    validateInteger(targetFd, 'targetFd', 0, 2 ** 31 - 1);
    const r = native.getfd(this.#live(), targetFd);
    if (r >= 0) return r;
    throw callError('pidfdGetfd', r, 'pidfd_getfd');
  }

  /** Closes the fd. Pending waits reject with `ERR_PIDFD_CLOSED`. Idempotent. */
  close(): void {
    const fd = this.#fd;
    if (fd < 0) return;
    this.#disarm();
    const waiters = this.#waiters;
    this.#waiters = new Set();
    this.#fd = -1;
    registry.unregister(this);
    native.close(fd);
    for (const w of waiters) {
      this.#cleanup(w);
      w.reject(closedError());
    }
  }

  /** `using p = PidFd.open(pid)` closes it at the end of the scope. */
  [Symbol.dispose](): void {
    this.close();
  }
}
