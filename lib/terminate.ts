// terminate(): signal, wait, escalate, release: the one call a process manager needs to stop a process.
//
// Every signal goes through a pidfd, so none can reach a stranger that inherited the pid: if the process exits
// exactly as the grace period runs out (and its pid is recycled at once), the kill signal finds the pidfd's
// process already exited and is not sent (PidFd.kill returns false). The outcome is reported only once the kernel
// says the process has exited, never because a timer ran out.
import { performance } from 'node:perf_hooks';
import { capabilities } from './capabilities';
import { abortReason } from './errors';
import { ExitInfo } from './exit';
import { statUnchecked } from './procfs';
import { SIGCONT, SIGKILL, signalName } from './signals';
import { isStopped, openTarget, resolveOptions, stillRunning, Target, TerminateOptions, tryRelease } from './target';

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
 * const how = exit.signal ?? `exit(${exit.code})`;
 * console.log(`${exit.pid} ended by ${how}${escalated ? ' after SIGKILL' : ''} in ${elapsedMs} ms`);
 */
export async function terminate(target: Target, options?: TerminateOptions): Promise<TerminateResult> {
  const t0 = performance.now();
  const o = resolveOptions(options);
  if (o.abortSignal?.aborted) throw abortReason(o.abortSignal);
  const opened = openTarget(target);
  if ('gone' in opened) {
    return {
      pid: opened.gone.pid,
      exit: opened.gone,
      escalated: false,
      released: false,
      signals: [],
      elapsedMs: performance.now() - t0,
    };
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
      if (send(o.signal) && o.signal !== SIGKILL && isStopped(p)) send(SIGCONT);
    }
    let exit: ExitInfo | undefined;
    try {
      exit = await p.waitExit({ timeout: o.timeout, signal: o.abortSignal });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ETIMEDOUT') throw err;
    }
    if (exit === undefined) {
      if (o.killSignal === false) {
        throw stillRunning(
          `process ${p.pid} is still running ${o.timeout} ms after ${signalName(o.signal)} (killSignal: false)`,
          {
            pid: p.pid,
            signals,
          },
        );
      }
      // The timer may fire in the same loop turn in which the process exited: kill() then sees the exit through
      // the pidfd and sends nothing, so escalated stays false and no one else can be hit.
      if (send(o.killSignal)) {
        escalated = true;
        if (o.killSignal !== SIGKILL && isStopped(p)) send(SIGCONT);
        if (o.release && o.killSignal === SIGKILL && capabilities().processMrelease) released = tryRelease(p);
      }
      try {
        exit = await p.waitExit({ timeout: o.killTimeout, signal: o.abortSignal });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ETIMEDOUT') throw err;
        const state = statUnchecked(p.pid)?.state; // for the message only
        const why =
          state === 'D'
            ? ' (it is in uninterruptible sleep, state D: waiting in the kernel, e.g. on I/O or a frozen cgroup)'
            : state
              ? ` (state ${state})`
              : '';
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
