// The events of LowMemoryKiller and what each listener gets.
import type { PressureEvent } from '../pressure';

/**
 * Emitted once per episode, when the killer starts responding.
 *
 * @example
 * lmk.on('pressure', (e: PressureStartEvent) => console.log(`episode ${e.episode}: ${e.reason}`));
 */
export interface PressureStartEvent {
  episode: number;
  reason: string;
  available: number;
  total: number;
  /** minAvailable in bytes, if set. */
  threshold: number | undefined;
  psi: PressureEvent | undefined;
}

/**
 * Emitted for each candidate the reclaim step advised.
 *
 * @example
 * lmk.on('reclaim', (e: ReclaimEvent) => console.log(`${e.comm} (${e.pid}): RSS ${e.rssBefore} -> ${e.rssAfter}`));
 */
export interface ReclaimEvent {
  episode: number;
  pid: number;
  comm: string;
  advised: number;
  rssBefore: number;
  rssAfter: number;
  dryRun: boolean;
}

/**
 * Emitted for each candidate asked to trim, once the deadline passed (or pressure ended).
 *
 * @example
 * lmk.on('trim', (e: TrimEvent) => console.log(`${e.comm} (${e.pid}) freed ${e.freed} bytes`));
 */
export interface TrimEvent {
  episode: number;
  pid: number;
  comm: string;
  /** PSS before minus PSS after the deadline (or the moment pressure ended). */
  freed: number;
  dryRun: boolean;
}

/**
 * Emitted for each kill (or, with dryRun, each kill it would have made).
 *
 * @example
 * lmk.on('kill', (e: KillEvent) => {
 *   console.log(`killed ${e.comm} (${e.pid}): ${e.reason}; ${e.bytesFreed} bytes back in ${e.memoryMs} ms`);
 * });
 */
export interface KillEvent {
  episode: number;
  pid: number;
  comm: string;
  reason: string;
  oomScoreAdj: number;
  pss: number;
  rss: number;
  /** Available memory after minus before the kill, measured. */
  bytesFreed: number;
  /** ms from SIGKILL to the pidfd reporting the death. */
  deathMs: number;
  /** ms from SIGKILL to the memory being back (see `regained`). */
  memoryMs: number;
  /** Whether at least 80% of the victim's PSS came back within memoryTimeout. */
  regained: boolean;
  /** What release() returned (`undefined`: not called). */
  released: boolean | undefined;
  dryRun: boolean;
}

/**
 * Emitted when an episode ends: the headroom is back above the threshold plus its hysteresis (or the PSI stall is
 * over).
 *
 * @example
 * lmk.on('recovered', (e: RecoveredEvent) => console.log(`episode ${e.episode} over: ${e.available} bytes free`));
 */
export interface RecoveredEvent {
  episode: number;
  /** Available bytes when the episode ended. */
  available: number;
  total: number;
}

/**
 * Emitted when a sample finds that the kernel's OOM killer killed something in the budget since the previous one
 * (memory.events / memory.oom_control `oom_kill` of the budget's cgroup, /proc/vmstat `oom_kill` for the system).
 *
 * @example
 * lmk.on('kernel-oom', (e: KernelOomEvent) => console.warn(`the kernel killed ${e.count} (${e.kills} in all)`));
 */
export interface KernelOomEvent {
  /** Kills the kernel counted since the previous sample. */
  count: number;
  /** Kills the kernel counted since the killer was created (`lmk.kernelOomKills`). */
  kills: number;
  /** The current episode (0 before the first), and whether the killer was in a pressure state. */
  episode: number;
  pressured: boolean;
  /** The headroom measured in the same sample. */
  available: number;
  total: number;
  limitedBy: string;
}

/**
 * The events of a `LowMemoryKiller` and the argument each listener gets.
 *
 * @example
 * const log = (name: keyof LowMemoryKillerEvents) => lmk.on(name, (e) => console.log(name, e));
 */
export interface LowMemoryKillerEvents {
  pressure: [PressureStartEvent];
  reclaim: [ReclaimEvent];
  trim: [TrimEvent];
  kill: [KillEvent];
  recovered: [RecoveredEvent];
  'kernel-oom': [KernelOomEvent];
  error: [Error];
}
