// The toolkit's shared core, under terminate() and killTree(): the target types and options they share, opening
// a target, and the small steps both take (is it stopped, release after SIGKILL, the ETIMEDOUT they reject with).
import { ChildProcess } from 'node:child_process';
import { codedError, E } from './errors';
import { ExitInfo } from './exit';
import { PidFd } from './pidfd';
import { parseStat, readChecked } from './procfs';
import { toSignalNumber } from './signals';
import {
  invalidType,
  validateAbortSignal,
  validateBoolean,
  validateInteger,
  validateObject,
  validateTimeout,
} from './validate';

/**
 * What `terminate` and `killTree` accept as a process.
 *
 * @example
 * const targets: Target[] = [child, PidFd.open(pid), 1234];
 * await Promise.all(targets.map((t) => terminate(t)));
 */
export type Target = number | PidFd | ChildProcess;

/**
 * Options of `terminate`.
 *
 * @example
 * const opts: TerminateOptions = { signal: 'SIGINT', timeout: 10_000, killSignal: false };
 * await terminate(pid, opts); // never SIGKILL: rejects with ETIMEDOUT after 10 s
 */
export interface TerminateOptions {
  /** The polite signal (default 'SIGTERM'). */
  signal?: NodeJS.Signals | number;
  /** Grace period in ms before escalating (default 5000). */
  timeout?: number;
  /** Sent after the grace period (default 'SIGKILL'); `false`: never escalate, reject with ETIMEDOUT instead. */
  killSignal?: NodeJS.Signals | number | false;
  /** After the kill signal, how long to wait for the exit before rejecting with ETIMEDOUT (default 5000). */
  killTimeout?: number;
  /** Call process_mrelease after the kill signal, so the memory comes back at once (default true). */
  release?: boolean;
  /** Stops waiting (rejects with the signal's reason); signals already sent stay sent. */
  abortSignal?: AbortSignal;
}

const DEFAULTS = {
  signal: 'SIGTERM' as NodeJS.Signals | number,
  timeout: 5000,
  killSignal: 'SIGKILL' as NodeJS.Signals | number | false,
  killTimeout: 5000,
  release: true,
};

/** Validated options with defaults (shared with killTree). */
export interface Resolved {
  signal: number;
  timeout: number;
  killSignal: number | false;
  killTimeout: number;
  release: boolean;
  abortSignal: AbortSignal | undefined;
}

/** Validates the options terminate and killTree share. */
export function resolveOptions(options: TerminateOptions | undefined): Resolved {
  validateObject(options, 'options');
  const o = { ...DEFAULTS, ...stripUndefined(options) };
  const signal = toSignalNumber(o.signal, 'options.signal');
  validateTimeout(o.timeout, 'options.timeout');
  const killSignal = o.killSignal === false ? false : toSignalNumber(o.killSignal, 'options.killSignal');
  validateTimeout(o.killTimeout, 'options.killTimeout');
  validateBoolean(o.release, 'options.release');
  validateAbortSignal(options?.abortSignal, 'options.abortSignal');
  return {
    signal,
    timeout: o.timeout,
    killSignal,
    killTimeout: o.killTimeout,
    release: o.release,
    abortSignal: options?.abortSignal,
  };
}

function stripUndefined<T extends object>(o: T | undefined): Partial<T> {
  const out: Partial<T> = {};
  if (o) for (const [k, v] of Object.entries(o)) if (v !== undefined) (out as Record<string, unknown>)[k] = v;
  return out;
}

/**
 * Opens the target. `owned` says whether the PidFd is ours to close. `gone` when the target had already exited
 * and cannot be opened any more (a pid with no process, a ChildProcess Node has reaped).
 */
export function openTarget(target: Target, name = 'target'): { p: PidFd; owned: boolean } | { gone: ExitInfo } {
  if (target instanceof PidFd) return { p: target, owned: false };
  if (target instanceof ChildProcess) {
    if (typeof target.pid === 'number' && (target.exitCode !== null || target.signalCode !== null)) {
      // Node reaped it and knows how it ended.
      return { gone: { pid: target.pid, code: target.exitCode, signal: target.signalCode, source: 'waitid' } };
    }
    return { p: PidFd.fromChild(target), owned: true };
  }
  if (typeof target !== 'number') throw invalidType(name, 'a pid (number), a PidFd or a ChildProcess', target);
  validateInteger(target, name, 1, 2 ** 22);
  try {
    return { p: PidFd.open(target), owned: true };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).errno === -E.ESRCH) {
      return { gone: { pid: target, code: null, signal: null, source: 'none' } };
    }
    throw err;
  }
}

/**
 * Whether the process is stopped (SIGSTOP/SIGTSTP: state T), read from /proc and trusted only if the process
 * has not exited after the read (then the pid was still its own while we read).
 */
export function isStopped(p: PidFd): boolean {
  try {
    return parseStat(readChecked(p, 'stat', { allowExiting: true })).state === 'T';
  } catch {
    return false; // exited (or closed): not stopped
  }
}

/** The ETIMEDOUT error terminate and killTree reject with. */
export function stillRunning(message: string, extra: Record<string, unknown>): Error {
  return Object.assign(codedError('ETIMEDOUT', message), extra);
}

/** process_mrelease right after SIGKILL; false when the victim got there first (or is not dying after all). */
export function tryRelease(p: PidFd): boolean {
  try {
    return p.release();
  } catch {
    return false; // EINVAL: not dying (a kill signal it survives); nothing to reclaim
  }
}
