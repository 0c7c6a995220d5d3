/**
 * pidfd: Linux process file descriptors for Node.js.
 *
 * @example
 * import { PidFd } from 'pidfd';
 * const p = PidFd.open(pid);
 * p.kill('SIGKILL');
 * p.release();
 * console.log(await p.waitExit());
 */
import { C } from './binding';

export { PidFd } from './pidfd';
export type { OpenOptions, KillOptions, WaitOptions, PidFdInfo } from './pidfd';
export type { ExitInfo, ExitStatus } from './exit';
export type { Advice, MemoryRange } from './madvise';
export { capabilities, FEATURES } from './capabilities';
export type { Capabilities } from './capabilities';
export type { SystemError, CodedError, PidfdErrorCode } from './errors';
// Memory view, reclaim, /proc, pressure and the low-memory killer.
export type { MemoryInfo, Mapping, MappingKind, ReclaimOptions, ReclaimResult } from './memory';
export { readProcess } from './procfs';
export type { ProcessView, ProcStat } from './procfs';
export { readPressure, watchPressure, PressureWatcher } from './pressure';
export { LowMemoryKiller, lockMemory, readHeadroom, readOomKills } from './lmk';
export type {
  Candidate,
  CandidateMatcher,
  CandidateSource,
  KillerPsiOptions,
  KillMode,
  LockResult,
  LowMemoryKillerEvents,
  LowMemoryKillerOptions,
  MemoryHeadroom,
  PressureRule,
  PressureStartEvent,
  ReclaimEvent,
  RecoveredEvent,
  TrimEvent,
  KillEvent,
  KilledProcess,
  KernelOomEvent,
  PreKillResult,
  PreKillVictim,
} from './lmk';
export type {
  Pressure,
  PressureLine,
  PressureResource,
  PressureEvent,
  ReadPressureOptions,
  WatchPressureOptions,
} from './pressure';

// Process-manager toolkit: terminate with escalation, race-free tree kill, exit watching.
export { terminate } from './terminate';
export type { Target, TerminateOptions } from './target';
export type { TerminateResult } from './terminate';
export { killTree } from './tree';
export type { KillTreeOptions, KillTreeResult, TreeMember } from './tree';
export { ExitWatcher } from './exit-watcher';
export type { ExitWatcherOptions } from './exit-watcher';

/**
 * Numeric constants of the kernel interfaces this package wraps (PIDFD_*, MADV_*, P_PIDFD, W*, CLD_*, PAGE_SIZE),
 * from the system headers at build time where those define them. Names newer than the build machine's headers
 * (PIDFD_THREAD, PIDFD_SIGNAL_*, PIDFD_INFO_*, MADV_COLD/PAGEOUT/COLLAPSE on old headers) are the kernel ABI's fixed
 * numbers, the same on every architecture, built in (src/addon.cc); UIO_MAXIOV is the kernel's fixed 1024, and
 * PAGE_SIZE is read when the addon loads. Empty off Linux.
 *
 * @example
 * import { constants } from 'pidfd';
 * console.log(constants.PIDFD_NONBLOCK, constants.PAGE_SIZE);
 */
export const constants: Readonly<Record<string, number>> = C;
