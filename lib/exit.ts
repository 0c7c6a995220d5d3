// How a process ended, read from the kernel without disturbing anyone else's bookkeeping.
import { C, native } from './binding';
import { signalName } from './signals';

/** How a process ended. `code` and `signal` are both null when the kernel could not tell (see `source`). */
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

/** The two fields of an exit status. */
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
 * The exit status of an exited process, or undefined when the kernel cannot tell yet. Never blocks.
 * Order: waitid (own unreaped child) → PIDFD_INFO_EXIT (any reaped process, 6.15+). This is the hot path of
 * waitExit: the native calls return plain numbers, no objects.
 */
export function readExit(fd: number, pid: number, infoExit: boolean): ExitInfo | undefined {
  const w = native.waitid(fd, WAIT_PEEK);
  if (w > 0) {
    const code = w >> 8;
    const status = w & 0xff;
    if (code === C.CLD_EXITED) return { pid, code: status, signal: null, source: 'waitid' };
    if (code === C.CLD_KILLED || code === C.CLD_DUMPED) {
      return { pid, code: null, signal: signalName(status), source: 'waitid' };
    }
  }
  if (infoExit) {
    const status = native.exitStatus(fd);
    if (status >= 0) {
      const { code, signal } = decodeWaitStatus(status);
      return { pid, code, signal, source: 'pidfd-info' };
    }
  }
  return undefined;
}
