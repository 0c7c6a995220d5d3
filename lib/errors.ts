import { constants } from 'node:os';
import { getSystemErrorMap } from 'node:util';

/** errno numbers by name (positive; the native layer returns them negated). */
export const E = constants.errno;

/**
 * Error codes this library raises itself (system errors carry the kernel's code, e.g. `ESRCH`).
 *
 * @example
 * function isGone(err: unknown): boolean {
 *   const code = (err as CodedError).code as PidfdErrorCode | 'ESRCH';
 *   return code === 'ERR_PIDFD_STALE' || code === 'ESRCH';
 * }
 */
export type PidfdErrorCode =
  | 'ERR_PIDFD_CLOSED'
  | 'ERR_PIDFD_CHILD_EXITED'
  | 'ERR_PIDFD_STALE'
  | 'ERR_PIDFD_UNSUPPORTED'
  | 'ERR_PIDFD_UNSUPPORTED_PLATFORM'
  | 'ERR_PIDFD_NATIVE_LOAD'
  | 'ERR_PIDFD_PSI_TRIGGER'
  | 'ERR_PIDFD_PROC_FORMAT'
  | 'ERR_PIDFD_NO_MEMORY_CGROUP'
  | 'ERR_PIDFD_LMK_NO_CANDIDATE'
  | 'ERR_PIDFD_LMK_PRE_KILL'
  | 'ERR_ILLEGAL_CONSTRUCTOR';

/**
 * A Node-shaped system error, as `fs` raises them: message `ESRCH: no such process, pidfd_open`, and the
 * properties `errno` (negative), `code` and `syscall`.
 *
 * @example
 * try { PidFd.open(pid); } catch (err) {
 *   const e = err as SystemError;
 *   if (e.code === 'ESRCH') console.log(`no process ${pid} (${e.syscall} failed)`); else throw err;
 * }
 */
export interface SystemError extends Error {
  errno: number;
  code: string;
  syscall: string;
}

/**
 * An error with a Node-style `code` property.
 *
 * @example
 * try { p.release(); } catch (err) {
 *   if ((err as CodedError).code !== 'ERR_PIDFD_UNSUPPORTED') throw err; // older than Linux 5.15
 * }
 */
export interface CodedError extends Error {
  code: string;
}

let errorMap: Map<number, [string, string]> | undefined;

/** The errno code (`EPERM`) of a negative errno as returned by the native layer. */
export function errnoCode(negErrno: number): string {
  errorMap ??= getSystemErrorMap();
  return errorMap.get(negErrno)?.[0] ?? `errno ${-negErrno}`;
}

const OUT_OF_RESOURCE = new Set(['EMFILE', 'ENFILE', 'ENOMEM', 'EAGAIN']);

/**
 * Whether an errno (negative, as the native layer returns it) or an error code means "this process is out of a
 * resource right now" (fds, memory, a limit that frees up) rather than "the kernel, an emulator or a filter
 * refuses this call". Such an error is reported as itself and never taken as an answer about a feature.
 */
export function outOfResource(err: number | string | undefined): boolean {
  if (err === undefined) return false;
  return OUT_OF_RESOURCE.has(typeof err === 'number' ? errnoCode(err) : err);
}

/** Builds a system error from a negative errno as returned by the native layer. */
export function systemError(negErrno: number, syscall: string, hint?: string): SystemError {
  errorMap ??= getSystemErrorMap();
  const [code, description] = errorMap.get(negErrno) ?? [`Unknown system error ${-negErrno}`, 'unknown error'];
  const err = new Error(`${code}: ${description}, ${syscall}${hint ? ` (${hint})` : ''}`) as SystemError;
  err.errno = negErrno;
  err.code = code;
  err.syscall = syscall;
  return err;
}

/** An `Error` with a `code`; `Ctor` picks TypeError / RangeError for argument errors. */
export function codedError(
  code: string,
  message: string,
  Ctor: ErrorConstructor | TypeErrorConstructor | RangeErrorConstructor = Error,
): CodedError {
  const err = new Ctor(message) as CodedError;
  err.code = code;
  return err;
}

/**
 * Thrown when a feature is not available here; names the feature and the kernel that added it. `blockedBy` is the
 * errno code the probe saw when it was not ENOSYS (EPERM, EACCES: a seccomp filter or a security module forbids the
 * call on a kernel that may well have it).
 */
export function unsupported(feature: string, since: string, blockedBy?: string): CodedError & { feature: string } {
  const why = blockedBy
    ? `is not available here: the kernel refused it with ${blockedBy} ` +
      `(a seccomp filter or security module blocks it; it exists since Linux ${since})`
    : `is not supported by this kernel (it needs Linux ${since} or later), or a seccomp filter hides it`;
  const err = codedError('ERR_PIDFD_UNSUPPORTED', `${feature} ${why}`) as CodedError & { feature: string };
  err.feature = feature;
  return err;
}

export function closedError(): CodedError {
  return codedError('ERR_PIDFD_CLOSED', 'The PidFd is closed');
}

export function timeoutError(ms: number): CodedError {
  return codedError('ETIMEDOUT', `waitExit timed out after ${ms} ms`);
}

/**
 * The rejection for an aborted wait: the signal's own reason when the caller gave one, otherwise an `AbortError`
 * with code `ABORT_ERR`, as Node's own promise APIs reject.
 */
export function abortReason(signal: AbortSignal): unknown {
  const reason: unknown = signal.reason;
  if (reason === undefined || (reason instanceof DOMException && reason.name === 'AbortError')) {
    const err = codedError('ABORT_ERR', 'The operation was aborted');
    err.name = 'AbortError';
    (err as Error & { cause?: unknown }).cause = reason;
    return err;
  }
  return reason;
}
