// The events of LowMemoryKiller and what each listener gets.
import type { MemoryInfo } from '../memory';
import type { PressureEvent } from '../pressure';
import type { KillMode } from './options';
import type { PressureRule } from './rules';

/**
 * Emitted once per episode, when the killer starts responding.
 *
 * @example
 * lmk.on('pressure', (e: PressureStartEvent) => console.log(`episode ${e.episode}: ${e.reason}`));
 */
export interface PressureStartEvent {
  episode: number;
  /** The measurement in words, e.g. `available 195.8 MiB < 204.8 MiB`. */
  reason: string;
  /** The rules that started the episode, `critical` first (a closed set, for counting). */
  triggered: PressureRule[];
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
  /** Whether anonymous memory was advised too (only where swap or zram can take it, unless `reclaim.anon` says). */
  anon: boolean;
  /** ms this candidate's advice took (reading its mappings and memory included). */
  ms: number;
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
  /** Whether `trim.signal` was sent to it (it catches that signal, or `trim.always` names it). */
  signalled: boolean;
  dryRun: boolean;
}

/**
 * One process a kill took (the victim, or a member of its group, tree or cgroup).
 *
 * @example
 * lmk.on('kill', (e) => console.log(e.killed.map((k: KilledProcess) => `${k.comm} (${k.pid})`).join(', ')));
 */
export interface KilledProcess {
  pid: number;
  comm: string;
  /** Its RSS when it was chosen, in bytes (the victim's from the candidate listing, the others' VmRSS). */
  rss: number;
  /** What process_mrelease returned after its SIGKILL (`undefined`: not called). */
  released: boolean | undefined;
}

/**
 * What `preKill` is told of the victim, read through its pidfd once it was chosen (the pidfd itself stays the
 * killer's: the hook cannot signal through it, nor keep it past the kill).
 *
 * @example
 * const lmk = new LowMemoryKiller({
 *   candidates: { cgroup: dir }, minAvailable: '10%',
 *   preKill: (v: PreKillVictim) => console.log(`about to kill ${v.comm} (${v.pid}) ${v.cmdline.join(' ')}: ${v.reason}`),
 * });
 */
export interface PreKillVictim {
  episode: number;
  pid: number;
  comm: string;
  /** Its command line, split at the NULs (empty for a kernel thread or a process that cleared it). */
  cmdline: string[];
  /** Its cgroup path as /proc/<pid>/cgroup shows it: the cgroup v2 one, or the v1 memory one where the v2 path is
   *  the root; undefined if neither is known. */
  cgroup: string | undefined;
  oomScoreAdj: number;
  /** Its memory when it was listed (a copy of the candidate's). */
  memory: MemoryInfo;
  /** Why the episode acts: the measurement in words, and the rules that said act (`critical` first). */
  reason: string;
  triggered: PressureRule[];
  /** The kill mode asked for (the one applied is the `kill` event's: memory.oom.group may widen it). */
  killMode: KillMode;
}

/**
 * How the `preKill` hook went: `ok` (it returned or resolved in time), `failed` (it threw or rejected: the error
 * went to the `error` event), `timeout` (still running at `preKillTimeout`), `critical` (the wait ended because
 * available memory fell below the critical level).
 *
 * @example
 * lmk.on('kill', (e) => {
 *   const r: PreKillResult | undefined = e.preKillResult;
 *   if (r !== undefined && r !== 'ok') console.warn(`preKill ${r} after ${e.preKillMs!.toFixed(0)} ms`);
 * });
 */
export type PreKillResult = 'ok' | 'failed' | 'timeout' | 'critical';

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
  /** The measurement that decided the kill, in words. */
  reason: string;
  /** The rules that said act at that measurement, `critical` first (a closed set, for counting). */
  triggered: PressureRule[];
  oomScoreAdj: number;
  pss: number;
  rss: number;
  /** The victim's command line, read when it was chosen (before any hook and any signal). */
  cmdline: string[];
  /** The victim's cgroup path, as `PreKillVictim.cgroup` (`cgroup` below is the directory a cgroup kill took). */
  victimCgroup: string | undefined;
  /** Available memory after minus before the kill, measured: the memory regained. */
  bytesFreed: number;
  /** ms from the first signal (SIGKILL, or the graceful signal) to every killed process's pidfd reporting its
   *  death. */
  deathMs: number;
  /** ms from the measurement that started the episode to the first signal: the time spent deciding (listing and
   *  ranking the candidates, and the reclaim and trim steps and the preKill hook when they ran). */
  decisionMs: number;
  /** How the `preKill` hook went (undefined: no hook, or a dry run). */
  preKillResult: PreKillResult | undefined;
  /** ms the kill waited for the `preKill` hook: what the hook took, or up to `preKillTimeout` (at least that
   *  when `preKillResult` is `timeout`). Undefined without a hook. */
  preKillMs: number | undefined;
  /** ms from the first signal until the memory was measured back: the deaths (and, for a cgroup kill, the group
   *  empty), when the kernel has freed what they held. */
  memoryMs: number;
  /** Whether the headroom grew by at least 80% of what the killed held (`held`). */
  regained: boolean;
  /** What release() returned for the victim (`undefined`: not called). */
  released: boolean | undefined;
  /** The kill mode applied: the one asked for, `cgroup` when memory.oom.group asks for it, or `process` when the
   *  mode found no set (see `modeReason`). */
  killMode: KillMode;
  /** Why `killMode` is not the one asked for, if it is not. */
  modeReason: string | undefined;
  /** The cgroup directory killed (`cgroup` mode), and whether by cgroup.kill (else one process at a time: cgroup
   *  v1, no cgroup.kill, or a cgroup holding this process, an ancestor of it or a protected candidate). */
  cgroup: string | undefined;
  cgroupKill: boolean;
  /** Every process the kill took, the victim first. */
  killed: KilledProcess[];
  /** What they held when chosen, in bytes: the victim's PSS plus the others' RSS. */
  held: number;
  /** With `graceful`: whether SIGKILL followed the graceful signal, and why (`timeout`, or `critical`: available
   *  memory fell below the critical level); false when every process exited on the graceful signal, or
   *  without `graceful`. */
  escalated: 'timeout' | 'critical' | false;
  /** ms from the graceful signal to the SIGKILL (when escalated). */
  escalatedMs: number | undefined;
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
