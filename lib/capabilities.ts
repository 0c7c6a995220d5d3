import { C, native, platformSupported } from './binding';
import { E, errnoCode, systemError, unsupported } from './errors';

/**
 * What this kernel and this build support. Probed once per process with harmless calls, never from versions.
 *
 * @example
 * const caps: Readonly<Capabilities> = capabilities();
 * if (!caps.pidfdInfoExit) console.log('exit codes are known only for our own children');
 */
export interface Capabilities {
  /** pidfd_open(2), Linux 5.3. */
  pidfdOpen: boolean;
  /** pidfd_send_signal(2), Linux 5.1. */
  pidfdSendSignal: boolean;
  /** pidfd_getfd(2), Linux 5.6. */
  pidfdGetfd: boolean;
  /** waitid(P_PIDFD, ...), Linux 5.4. */
  waitidPidfd: boolean;
  /** process_madvise(2), Linux 5.10. */
  processMadvise: boolean;
  /** process_mrelease(2), Linux 5.15. */
  processMrelease: boolean;
  /** ioctl(PIDFD_GET_INFO), Linux 6.13. */
  pidfdGetInfo: boolean;
  /** PIDFD_INFO_EXIT: exit status of any process once its parent reaped it, Linux 6.15. */
  pidfdInfoExit: boolean;
  /** PIDFD_THREAD: pidfds for single threads, Linux 6.9. */
  pidfdThread: boolean;
  /** PIDFD_NONBLOCK, Linux 5.10. */
  pidfdNonblock: boolean;
  /** pidfd_send_signal scope flags (thread / thread group / process group), Linux 6.9. */
  pidfdSignalScope: boolean;
}

/**
 * Each capability's kernel feature name and the first Linux release that has it.
 *
 * @example
 * import { capabilities, FEATURES } from 'pidfd';
 * for (const [name, ok] of Object.entries(capabilities())) {
 *   const [feature, since] = FEATURES[name as keyof typeof FEATURES];
 *   if (!ok) console.log(`${feature} needs Linux ${since}`);
 * }
 */
export const FEATURES: Readonly<Record<keyof Capabilities, readonly [feature: string, since: string]>> = {
  pidfdOpen: ['pidfd_open', '5.3'],
  pidfdSendSignal: ['pidfd_send_signal', '5.1'],
  pidfdGetfd: ['pidfd_getfd', '5.6'],
  waitidPidfd: ['waitid(P_PIDFD)', '5.4'],
  processMadvise: ['process_madvise', '5.10'],
  processMrelease: ['process_mrelease', '5.15'],
  pidfdGetInfo: ['ioctl(PIDFD_GET_INFO)', '6.13'],
  pidfdInfoExit: ['PIDFD_INFO_EXIT', '6.15'],
  pidfdThread: ['PIDFD_THREAD', '6.9'],
  pidfdNonblock: ['PIDFD_NONBLOCK', '5.10'],
  pidfdSignalScope: ['pidfd_send_signal scope flags', '6.9'],
};

let cached: Readonly<Capabilities> | undefined;
// What the probe got back for a missing feature, when it was not the plain "no such call" (ENOSYS/ENOTTY).
const refusals: Partial<Record<keyof Capabilities, number>> = {};

function probe(): Capabilities {
  const caps: Capabilities = {
    pidfdOpen: false, pidfdSendSignal: false, pidfdGetfd: false, waitidPidfd: false, processMadvise: false,
    processMrelease: false, pidfdGetInfo: false, pidfdInfoExit: false, pidfdThread: false, pidfdNonblock: false,
    pidfdSignalScope: false,
  };
  if (!platformSupported) return caps;
  const self = native.open(process.pid, 0);
  if (self < 0) {
    // No pidfds at all (ENOSYS), or a filter forbids them: nothing else can work.
    for (const name of Object.keys(caps) as (keyof Capabilities)[]) refusals[name] = self;
    return caps;
  }
  const fds = [self];
  try {
    caps.pidfdOpen = true;
    const openWith = (flags: number): boolean => {
      const fd = native.open(process.pid, flags);
      if (fd >= 0) fds.push(fd);
      return fd >= 0;
    };
    caps.pidfdNonblock = openWith(C.PIDFD_NONBLOCK);
    caps.pidfdThread = openWith(C.PIDFD_THREAD);
    // Signal 0 only checks that the target exists and may be signalled.
    const sent = native.sendSignal(self, 0, 0);
    caps.pidfdSendSignal = sent === 0;
    if (sent < 0) refusals.pidfdSendSignal = sent;
    caps.pidfdSignalScope = caps.pidfdSendSignal && native.sendSignal(self, 0, C.PIDFD_SIGNAL_THREAD_GROUP) === 0;
    // fd -1 can never be copied: EBADF proves the call exists.
    const g = native.getfd(self, -1);
    if (g >= 0) native.close(g);
    caps.pidfdGetfd = g === -E.EBADF;
    if (g < 0 && !caps.pidfdGetfd) refusals.pidfdGetfd = g;
    // We are not our own child: ECHILD proves P_PIDFD is understood (an old kernel says EINVAL).
    const waited = native.waitid(self, C.WEXITED | C.WNOHANG);
    caps.waitidPidfd = waited === -E.ECHILD;
    if (!caps.waitidPidfd) refusals.waitidPidfd = waited;
    // An empty range list advises nothing and succeeds where the call exists.
    const advised = native.madvise(self, new BigUint64Array(0), C.MADV_COLD);
    caps.processMadvise = advised === 0;
    if (advised < 0) refusals.processMadvise = advised;
    // We are not dying, so a present process_mrelease refuses with EINVAL.
    const released = native.mrelease(self);
    caps.processMrelease = released === -E.EINVAL;
    if (!caps.processMrelease) refusals.processMrelease = released;
    const info = native.info(self, 0);
    caps.pidfdGetInfo = typeof info === 'object';
    if (typeof info === 'number') refusals.pidfdGetInfo = refusals.pidfdInfoExit = info;
    if (caps.pidfdGetInfo) {
      const reaped = native.openReaped();
      if (reaped >= 0) {
        fds.push(reaped);
        caps.pidfdInfoExit = native.exitStatus(reaped) >= 0;
      }
    }
  } finally {
    for (const fd of fds) native.close(fd);
  }
  return caps;
}

/**
 * What this kernel and this build support, probed once (with harmless calls) and cached. Off Linux every field
 * is `false`.
 *
 * @example
 * const caps = capabilities();
 * if (!caps.processMrelease) console.log('memory is freed only when the victim finishes exiting');
 */
export function capabilities(): Readonly<Capabilities> {
  return (cached ??= Object.freeze(probe()));
}

/** The ERR_PIDFD_UNSUPPORTED error for a missing capability, saying whether the kernel lacks it or refused it. */
function unsupportedError(name: keyof Capabilities): Error {
  const [feature, since] = FEATURES[name];
  const seen = refusals[name];
  const refused = seen !== undefined && seen !== -E.ENOSYS && seen !== -E.ENOTTY ? errnoCode(seen) : undefined;
  return unsupported(feature, since, refused);
}

/** Throws ERR_PIDFD_UNSUPPORTED for a capability that is missing here. */
export function requireCapability(name: keyof Capabilities): void {
  if (!capabilities()[name]) throw unsupportedError(name);
}

/**
 * The error for a failed kernel call `r` (a negative errno) of the feature `name`: ERR_PIDFD_UNSUPPORTED when the
 * call does not exist (ENOSYS) or the probe found the feature missing (a filter answering EPERM, say, must not
 * pass for a permission problem with this one target), else the Node-shaped system error.
 */
export function callError(name: keyof Capabilities, r: number, syscall: string, hint?: string): Error {
  if (r === -E.ENOSYS || !capabilities()[name]) return unsupportedError(name);
  return systemError(r, syscall, hint);
}
