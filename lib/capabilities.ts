import { C, native, platformSupported } from './binding';
import { E, errnoCode, outOfResource, systemError, unsupported } from './errors';

/**
 * What this kernel and this build support. Probed with harmless calls, never from versions.
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

/**
 * One probe's answer. `supported` and `refused` are answers about the feature and are kept for the life of the
 * process: `refused` is the kernel lacking it (`errno` undefined: ENOSYS, or the probe's own "no such flag" errno)
 * or the kernel, an emulator or a filter forbidding it (`errno`: EPERM, EACCES ...). `couldNotRun` says nothing of
 * the feature (this process was out of fds or memory: see `outOfResource`): it is never kept, the next use probes
 * again.
 */
type Probe =
  | { readonly state: 'supported' }
  | { readonly state: 'refused'; readonly errno?: number }
  | { readonly state: 'couldNotRun'; readonly errno: number; readonly syscall: string };

type Name = keyof Capabilities;
type Answer = Exclude<Probe, { state: 'couldNotRun' }>;

const SUPPORTED: Answer = { state: 'supported' };
const NAMES = Object.keys(FEATURES) as Name[];
const known: Partial<Record<Name, Answer>> = {};
let cached: Readonly<Capabilities> | undefined;

/**
 * Judges a probe call's result `r`: `ok` when `r` proves the feature; `absent` lists the errnos (positive) with
 * which a kernel that lacks it answers, besides ENOSYS.
 */
function judge(r: number, ok: boolean, syscall: string, ...absent: number[]): Probe {
  if (ok) return SUPPORTED;
  if (r >= 0) return { state: 'refused' }; // an answer no kernel with the feature gives
  if (outOfResource(r)) return { state: 'couldNotRun', errno: r, syscall };
  return r === -E.ENOSYS || absent.includes(-r) ? { state: 'refused' } : { state: 'refused', errno: r };
}

/** Each feature's probe on `self` (a pidfd of this process); fds it opens go to `fds`, closed afterwards. */
const PROBES: Record<Exclude<Name, 'pidfdOpen'>, (self: number, fds: number[]) => Probe> = {
  pidfdNonblock: (_, fds) => openSelf(C.PIDFD_NONBLOCK, fds),
  pidfdThread: (_, fds) => openSelf(C.PIDFD_THREAD, fds),
  // Signal 0 only checks that the target exists and may be signalled.
  pidfdSendSignal: (self) => {
    const r = native.sendSignal(self, 0, 0);
    return judge(r, r === 0, 'pidfd_send_signal');
  },
  pidfdSignalScope: (self) => {
    const r = native.sendSignal(self, 0, C.PIDFD_SIGNAL_THREAD_GROUP);
    return judge(r, r === 0, 'pidfd_send_signal', E.EINVAL);
  },
  // fd -1 can never be copied: EBADF proves the call exists.
  pidfdGetfd: (self) => {
    const r = native.getfd(self, -1);
    if (r >= 0) native.close(r);
    return judge(r, r === -E.EBADF, 'pidfd_getfd');
  },
  // We are not our own child: ECHILD proves P_PIDFD is understood (an old kernel says EINVAL).
  waitidPidfd: (self) => {
    const r = native.waitid(self, C.WEXITED | C.WNOHANG);
    return judge(r, r === -E.ECHILD, 'waitid', E.EINVAL);
  },
  // An empty range list advises nothing and succeeds where the call exists.
  processMadvise: (self) => {
    const r = native.madvise(self, new BigUint64Array(0), C.MADV_COLD);
    return judge(r, r === 0, 'process_madvise');
  },
  // We are not dying, so a present process_mrelease refuses with EINVAL.
  processMrelease: (self) => {
    const r = native.mrelease(self);
    return judge(r, r === -E.EINVAL, 'process_mrelease');
  },
  pidfdGetInfo: (self) => {
    const r = native.info(self, 0);
    return typeof r === 'object' ? SUPPORTED : judge(r, false, 'ioctl(PIDFD_GET_INFO)', E.ENOTTY);
  },
  // A reaped child of ours has an exit status only where the kernel keeps it for pidfds.
  pidfdInfoExit: (_, fds) => {
    const reaped = native.openReaped();
    if (reaped < 0) return judge(reaped, false, reaped === -E.EMFILE || reaped === -E.ENFILE ? 'pidfd_open' : 'vfork');
    fds.push(reaped);
    const r = native.exitStatus(reaped);
    return judge(r, r >= 0, 'ioctl(PIDFD_GET_INFO)', E.ENOTTY, E.ENODATA);
  },
};

/** Probes that can only succeed where another one did: without it, they share its answer. */
const NEEDS: Partial<Record<Name, Name>> = { pidfdSignalScope: 'pidfdSendSignal', pidfdInfoExit: 'pidfdGetInfo' };

function openSelf(flags: number, fds: number[]): Probe {
  const fd = native.open(process.pid, flags);
  if (fd >= 0) fds.push(fd);
  return judge(fd, fd >= 0, 'pidfd_open', E.EINVAL);
}

/**
 * Runs the probes whose answer is not known yet, keeps their answers, and returns those that could not run
 * (this time only: they run again on the next call).
 */
function probe(): Partial<Record<Name, Probe>> {
  const missed: Partial<Record<Name, Probe>> = {};
  if (!platformSupported) {
    for (const name of NAMES) known[name] = { state: 'refused' };
    return missed;
  }
  const self = native.open(process.pid, 0);
  const opened = judge(self, self >= 0, 'pidfd_open');
  if (opened.state !== 'supported') {
    // No pidfd of our own: nothing else can be probed. Refused (ENOSYS, or a filter): nothing else can work.
    for (const name of NAMES) {
      if (known[name] !== undefined) continue;
      if (opened.state === 'refused') known[name] = opened;
      else missed[name] = opened;
    }
    return missed;
  }
  known.pidfdOpen = SUPPORTED;
  const fds = [self];
  try {
    for (const [name, run] of Object.entries(PROBES) as [Name, (self: number, fds: number[]) => Probe][]) {
      if (known[name] !== undefined) continue;
      const need = NEEDS[name];
      const base = need === undefined ? SUPPORTED : (known[need] ?? missed[need] ?? SUPPORTED);
      const p = base.state === 'supported' ? run(self, fds) : base;
      if (p.state === 'couldNotRun') missed[name] = p;
      else known[name] = p;
    }
  } finally {
    for (const fd of fds) native.close(fd);
  }
  return missed;
}

/** The answer for `name`, probing if it is not known yet; `couldNotRun` when the probe cannot run right now. */
function answer(name: Name): Probe {
  const missed = known[name] === undefined ? probe()[name] : undefined;
  return missed ?? known[name] ?? { state: 'refused' };
}

/** The resource error that kept a probe from running, as the Node-shaped error of its call. */
function couldNotRunError(p: Extract<Probe, { state: 'couldNotRun' }>): Error {
  return systemError(p.errno, p.syscall, 'the feature probe could not run; it is tried again on the next call');
}

/**
 * What this kernel and this build support, probed with harmless calls and cached. Off Linux every field is
 * `false`. A probe that could not run because this process was out of a resource right now (EMFILE, ENFILE,
 * ENOMEM, EAGAIN) reads `false` in this result only: nothing is cached until every probe has answered.
 *
 * @example
 * const caps = capabilities();
 * if (!caps.processMrelease) console.log('memory is freed only when the victim finishes exiting');
 */
export function capabilities(): Readonly<Capabilities> {
  if (cached !== undefined) return cached;
  const missed = probe();
  const caps = Object.fromEntries(NAMES.map((name) => [name, known[name]?.state === 'supported']));
  const result = Object.freeze(caps as unknown as Capabilities);
  if (Object.keys(missed).length === 0) cached = result;
  return result;
}

/** The ERR_PIDFD_UNSUPPORTED error for a missing capability, saying whether the kernel lacks it or refused it. */
function unsupportedError(name: Name): Error {
  const [feature, since] = FEATURES[name];
  const p = known[name];
  return unsupported(feature, since, p?.state === 'refused' && p.errno !== undefined ? errnoCode(p.errno) : undefined);
}

/**
 * Throws ERR_PIDFD_UNSUPPORTED for a capability that is missing here, or the resource error (EMFILE ...) that
 * keeps its probe from running right now.
 */
export function requireCapability(name: Name): void {
  const p = answer(name);
  if (p.state === 'couldNotRun') throw couldNotRunError(p);
  if (p.state === 'refused') throw unsupportedError(name);
}

/**
 * The error for a failed kernel call `r` (a negative errno) of the feature `name`. A resource errno (EMFILE,
 * ENOMEM ...) is the system error itself: it says nothing of the feature. Otherwise ERR_PIDFD_UNSUPPORTED when the
 * call does not exist (ENOSYS) or the probe found the feature missing (a filter answering EPERM, say, must not
 * pass for a permission problem with this one target), else the Node-shaped system error.
 */
export function callError(name: Name, r: number, syscall: string, hint?: string): Error {
  if (outOfResource(r)) return systemError(r, syscall, hint);
  if (r === -E.ENOSYS || answer(name).state === 'refused') return unsupportedError(name);
  return systemError(r, syscall, hint);
}
