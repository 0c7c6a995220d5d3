// terminate(): signal, wait, escalate, release: the one call a process manager needs to stop a process.
//
// Every signal goes through a pidfd, so none can reach a stranger that inherited the pid: if the process exits
// exactly as the grace period runs out (and its pid is recycled at once), the kill signal finds the pidfd's
// process already exited and is not sent (PidFd.kill returns false). The outcome is reported only once the kernel
// says the process has exited, never because a timer ran out.
import { ChildProcess } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { capabilities } from './capabilities';
import { abortReason, codedError, E } from './errors';
import { ExitInfo } from './exit';
import { PidFd } from './pidfd';
import { readStat } from './procfs';
import { signalName, toSignalNumber } from './signals';
import {
  invalidType, validateAbortSignal, validateBoolean, validateInteger, validateObject, validateTimeout,
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

/**
 * What `terminate` resolves with.
 *
 * @example
 * const r: TerminateResult = await terminate(child);
 * console.log(r.signals.join(' -> '), r.escalated ? 'escalated' : '', `${r.elapsedMs} ms`);
 */
export interface TerminateResult {
  pid: number;
  /** How it exited. For a process that is not our child, `code`/`signal` are null unless the kernel can tell. */
  exit: ExitInfo;
  /** Whether the kill signal was sent (the process outlived the grace period). */
  escalated: boolean;
  /** Whether process_mrelease reclaimed its memory (false if it freed it itself first, or is unsupported). */
  released: boolean;
  /** The signals actually sent, in order, e.g. ['SIGTERM', 'SIGCONT', 'SIGKILL']. */
  signals: string[];
  /** From the call to the exit, in ms. */
  elapsedMs: number;
}

const DEFAULTS = { signal: 'SIGTERM' as NodeJS.Signals | number, timeout: 5000, killSignal: 'SIGKILL' as NodeJS.Signals | number | false, killTimeout: 5000, release: true };

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
  return { signal, timeout: o.timeout, killSignal, killTimeout: o.killTimeout, release: o.release, abortSignal: options?.abortSignal };
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
export function openTarget(target: Target, name = 'target'):
  | { p: PidFd; owned: boolean }
  | { gone: ExitInfo } {
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
  const st = readStat(p.pid);
  return st !== undefined && st.state === 'T' && !p.exited;
}

/** The ETIMEDOUT error terminate and killTree reject with. */
export function stillRunning(message: string, extra: Record<string, unknown>): Error {
  return Object.assign(codedError('ETIMEDOUT', message), extra);
}

/**
 * Stops a process for good: sends `signal` (continuing it first if it is stopped, so it can act on the signal),
 * waits up to `timeout` ms, then sends `killSignal` and calls process_mrelease, and resolves once the kernel
 * reports the exit. Never signals anything but the original process, even if its pid is recycled meanwhile. A
 * process that has already exited resolves (with `signals: []`).
 *
 * Rejects with `ETIMEDOUT` when `killSignal` is false and the grace period ran out (the process is left running),
 * or when the process has still not exited `killTimeout` ms after the kill signal (e.g. stuck in uninterruptible
 * sleep, state D; the error says so). A PidFd passed in stays open; one opened here is closed.
 *
 * @example
 * const { exit, escalated, elapsedMs } = await terminate(child, { timeout: 3000 });
 * console.log(`${exit.pid} ended by ${exit.signal ?? `exit(${exit.code})`}${escalated ? ' after SIGKILL' : ''} in ${elapsedMs} ms`);
 */
export async function terminate(target: Target, options?: TerminateOptions): Promise<TerminateResult> {
  const t0 = performance.now();
  const o = resolveOptions(options);
  if (o.abortSignal?.aborted) throw abortReason(o.abortSignal);
  const opened = openTarget(target);
  if ('gone' in opened) {
    return { pid: opened.gone.pid, exit: opened.gone, escalated: false, released: false, signals: [], elapsedMs: performance.now() - t0 };
  }
  const { p, owned } = opened;
  const signals: string[] = [];
  let escalated = false;
  let released = false;
  const send = (signo: number): boolean => {
    const sent = p.kill(signo);
    if (sent) signals.push(signalName(signo));
    return sent;
  };
  try {
    if (!p.exited) {
      if (send(o.signal) && o.signal !== 9 && isStopped(p)) send(toSignalNumber('SIGCONT'));
    }
    let exit: ExitInfo | undefined;
    try {
      exit = await p.waitExit({ timeout: o.timeout, signal: o.abortSignal });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ETIMEDOUT') throw err;
    }
    if (exit === undefined) {
      if (o.killSignal === false) {
        throw stillRunning(`process ${p.pid} is still running ${o.timeout} ms after ${signalName(o.signal)} (killSignal: false)`, {
          pid: p.pid, signals,
        });
      }
      // The timer may fire in the same loop turn in which the process exited: kill() then sees the exit through
      // the pidfd and sends nothing, so escalated stays false and no one else can be hit.
      if (send(o.killSignal)) {
        escalated = true;
        if (o.killSignal !== 9 && isStopped(p)) send(toSignalNumber('SIGCONT'));
        if (o.release && o.killSignal === 9 && capabilities().processMrelease) released = tryRelease(p);
      }
      try {
        exit = await p.waitExit({ timeout: o.killTimeout, signal: o.abortSignal });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ETIMEDOUT') throw err;
        const state = readStat(p.pid)?.state;
        const why = state === 'D' ? ' (it is in uninterruptible sleep, state D: waiting in the kernel, e.g. on I/O or a frozen cgroup)' : state ? ` (state ${state})` : '';
        throw stillRunning(
          `process ${p.pid} has not exited ${o.killTimeout} ms after ${signalName(o.killSignal)}${why}`,
          { pid: p.pid, signals, state },
        );
      }
    }
    return { pid: p.pid, exit, escalated, released, signals, elapsedMs: performance.now() - t0 };
  } finally {
    if (owned) p.close();
  }
}

/** process_mrelease right after SIGKILL; false when the victim got there first (or is not dying after all). */
export function tryRelease(p: PidFd): boolean {
  try {
    return p.release();
  } catch {
    return false; // EINVAL: not dying (a kill signal it survives); nothing to reclaim
  }
}
