// How a process ended, read from the kernel without disturbing anyone else's bookkeeping.
import { C, native } from './binding';
import { signalName } from './signals';

/**
 * How a process ended. `code` and `signal` are both null when the kernel could not tell (see `source`).
 *
 * @example
 * const info: ExitInfo = await p.waitExit();
 * if (info.signal) console.log(`${info.pid} killed by ${info.signal}`);
 * else if (info.source !== 'none') console.log(`${info.pid} exited with ${info.code}`);
 */
export interface ExitInfo {
  pid: number;
  /** Exit code if it exited normally, else null. */
  code: number | null;
  /** The signal that killed it, else null. */
  signal: NodeJS.Signals | null;
  /**
   * Where the status came from: `waitid` (our own child, read with WNOWAIT so Node still reaps it), `pidfd-info`
   * (PIDFD_INFO_EXIT, any process once its parent reaped it, Linux 6.15+), or `none` (the kernel cannot tell: a
   * zombie whose parent has not reaped it, or an older kernel).
   */
  source: 'waitid' | 'pidfd-info' | 'none';
}

/**
 * The two fields of an exit status.
 *
 * @example
 * const status: ExitStatus | undefined = p.info().exit; // set once the process was reaped
 * if (status?.signal === 'SIGKILL') console.log('it was killed');
 */
export type ExitStatus = Pick<ExitInfo, 'code' | 'signal'>;

/** Decodes a wait(2)-style status word, as PIDFD_INFO_EXIT reports it. */
export function decodeWaitStatus(status: number): ExitStatus {
  const sig = status & 0x7f;
  return sig === 0 ? { code: (status >> 8) & 0xff, signal: null } : { code: null, signal: signalName(sig) };
}

// Our own child, not yet reaped: the status is there with WNOWAIT, which leaves the zombie for Node's
// child_process (or whoever spawned it) to reap and report as usual.
const WAIT_PEEK = C.WEXITED | C.WNOHANG | C.WNOWAIT;

/**
 * The exit status from what the kernel answered: `waited` from waitid with WNOWAIT (our own unreaped child),
 * `status` from PIDFD_INFO_EXIT (any reaped process, 6.15+); negative values are errors. Undefined when neither
 * can tell. This is the hot path of waitExit: plain numbers in, one object out.
 */
export function exitFrom(pid: number, waited: number, status: number): ExitInfo | undefined {
  if (waited > 0) {
    const code = waited >> 8;
    const value = waited & 0xff;
    if (code === C.CLD_EXITED) return { pid, code: value, signal: null, source: 'waitid' };
    if (code === C.CLD_KILLED || code === C.CLD_DUMPED) {
      return { pid, code: null, signal: signalName(value), source: 'waitid' };
    }
  }
  if (status >= 0) {
    const { code, signal } = decodeWaitStatus(status);
    return { pid, code, signal, source: 'pidfd-info' };
  }
  return undefined;
}

/** The exit status of an exited process, read now, or undefined when the kernel cannot tell yet. Never blocks. */
export function readExit(fd: number, pid: number, infoExit: boolean): ExitInfo | undefined {
  return exitFrom(pid, native.waitid(fd, WAIT_PEEK), infoExit ? native.exitStatus(fd) : -1);
}
