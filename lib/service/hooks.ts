// The command hooks of `pidfd lmk` (pre-kill, post-kill): running a command with a deadline, the environment
// each hook gets (HOOK_ENV lists it), the pre-kill command as the killer's preKill, and the post-kill runner that
// never delays the killer.
import { ChildProcess, spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { getPriority, setPriority } from 'node:os';
import { performance } from 'node:perf_hooks';
import { capabilities } from '../capabilities';
import type { KillEvent, PreKillVictim } from '../lmk/events';
import { PidFd } from '../pidfd';
import { codedError } from '../errors';
import { invalidType, outOfRange, validateAbortSignal } from '../validate';

/** What one run of a hook command came to. */
export interface HookResult {
  /** Its exit status (null when killed by a signal, or when it could not be started). */
  status: number | null;
  signal: NodeJS.Signals | null;
  /** Killed at its timeout. */
  timedOut: boolean;
  /** Killed because its `signal` was aborted (the killer stopped waiting for a pre-kill command). */
  aborted: boolean;
  /** ms from the start to its end (its exit, and its output closed). */
  ms: number;
  /** What it wrote to stdout and stderr, interleaved as it came, up to OUTPUT_LIMIT bytes. */
  output: string;
  /** Whether output was cut at OUTPUT_LIMIT. */
  truncated: boolean;
  /** Why it could not be started (spawn's error), if so. */
  error: Error | undefined;
}

/** Bytes of a hook's output kept for its log line. */
export const OUTPUT_LIMIT = 8192;

/**
 * Runs `command` through `/bin/sh -c`, with `env` added to this process's environment, and resolves once it has
 * exited and its output has closed (or at the deadline; it never rejects). It runs in a process group of its own
 * (so that SIGKILL reaches what it started), with stdin on /dev/null (a read gets end-of-file at once, and fd 0 is
 * not left free for the next open to take) and its stdout and stderr captured. At `timeoutMs` (Infinity: none), or
 * when `signal` aborts, its whole process group gets SIGKILL. A process it leaves behind with the output still
 * open keeps the hook running until then; one started with its output redirected (`cmd >/dev/null 2>&1 &`)
 * outlives the hook.
 */
export function runHook(
  command: string,
  env: Readonly<Record<string, string>>,
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<HookResult> {
  if (typeof command !== 'string' || command === '') throw invalidType('command', 'a non-empty string', command);
  if (env === null || typeof env !== 'object') throw invalidType('env', 'of type object', env);
  if (typeof timeoutMs !== 'number') throw invalidType('timeoutMs', 'of type number', timeoutMs);
  if (!(timeoutMs > 0 && (timeoutMs <= 2 ** 31 - 1 || timeoutMs === Infinity)))
    throw outOfRange('timeoutMs', '> 0 and <= 2147483647, or Infinity', timeoutMs);
  validateAbortSignal(signal, 'signal');
  const t0 = performance.now();
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let truncated = false;
    let timedOut = false;
    let aborted = false;
    let exited: { status: number | null; signal: NodeJS.Signals | null } | undefined;
    let killed = false;
    let done = false;
    let child: ChildProcess;
    let group: PidFd | undefined;
    const finish = (error?: Error): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      child.stdout?.destroy();
      child.stderr?.destroy();
      group?.close();
      resolve({
        status: exited?.status ?? null,
        signal: exited?.signal ?? null,
        timedOut,
        aborted,
        ms: performance.now() - t0,
        output: Buffer.concat(chunks).toString('utf8'),
        truncated,
        error,
      });
    };
    const kill = (): void => {
      killed = true;
      try {
        // Through the shell's pidfd where the kernel can (6.9): the pidfd pins the pid, so the group is the hook's
        // even after the shell was reaped. Elsewhere by number: the shell is the group's leader, and a group id
        // stays taken while any member lives.
        if (group !== undefined && capabilities().pidfdSignalScope) group.kill('SIGKILL', { scope: 'process-group' });
        else if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
      } catch {
        /* the group is gone already */
      }
      // Something outside the group may still hold the output open: the shell's exit is the end then.
      if (exited !== undefined) finish();
    };
    const onAbort = (): void => {
      aborted = true;
      kill();
    };
    try {
      child = spawn('/bin/sh', ['-c', command], {
        detached: true, // setsid: a process group (and session) of its own
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...process.env, ...env },
      });
    } catch (err) {
      child = undefined as unknown as ChildProcess;
      resolve({
        status: null,
        signal: null,
        timedOut: false,
        aborted: false,
        ms: performance.now() - t0,
        output: '',
        truncated: false,
        error: err as Error,
      });
      return;
    }
    unprotect(child.pid);
    try {
      group = PidFd.fromChild(child);
    } catch {
      /* it failed to spawn, or pidfds are unsupported here: the group is killed by number */
    }
    const keep = (b: Buffer): void => {
      const room = OUTPUT_LIMIT - size;
      if (b.length > room) truncated = true;
      if (room > 0) {
        chunks.push(room >= b.length ? b : b.subarray(0, room));
        size += Math.min(room, b.length);
      }
    };
    child.stdout!.on('data', keep);
    child.stderr!.on('data', keep);
    child.on('error', (err) => finish(err));
    child.on('exit', (status, sig) => {
      exited = { status, signal: sig };
      if (killed) finish();
    });
    child.on('close', () => finish());
    const timer =
      timeoutMs === Infinity
        ? undefined
        : setTimeout(() => {
            timedOut = true;
            kill();
          }, timeoutMs);
    if (signal?.aborted) onAbort();
    else signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * A hook is an ordinary process, not the killer: it must not inherit the killer's oom_score_adj -1000 (the kernel
 * would never pick it, while it allocates under the very shortage) nor its nice -20. Both are raised to the
 * defaults, which needs no privilege, right after the spawn (an unreaped child: its pid is still its own), before
 * the shell has read its command; a value already above the default is left as it is (lowering it would need a
 * privilege the hook should not have).
 */
function unprotect(pid: number | undefined): void {
  if (pid === undefined) return;
  try {
    if (Number(readFileSync(`/proc/${pid}/oom_score_adj`, 'latin1')) < 0)
      writeFileSync(`/proc/${pid}/oom_score_adj`, '0');
  } catch {
    /* it has exited already */
  }
  try {
    if (getPriority(pid) < 0) setPriority(pid, 0);
  } catch {
    /* it has exited already */
  }
}

/**
 * The environment of the hook commands: each variable, which hooks get it, and what it holds. Byte counts and ms
 * are integers (rounded), so that a shell can compare them with `$(( ))`; lists are separated by spaces.
 *
 * @example
 * for (const [name, { hooks, text }] of Object.entries(HOOK_ENV)) console.log(`${name} (${hooks.join(', ')}): ${text}`);
 */
export const HOOK_ENV = {
  PIDFD_LMK_HOOK: { hooks: ['pre-kill', 'post-kill'], text: 'which hook this is: pre-kill or post-kill' },
  PIDFD_LMK_EPISODE: { hooks: ['pre-kill', 'post-kill'], text: 'the episode number' },
  PIDFD_LMK_PID: { hooks: ['pre-kill', 'post-kill'], text: "the victim's pid" },
  PIDFD_LMK_NAME: { hooks: ['pre-kill', 'post-kill'], text: "the victim's command name (comm)" },
  PIDFD_LMK_CMDLINE: {
    hooks: ['pre-kill', 'post-kill'],
    text: "the victim's command line, its arguments joined by spaces",
  },
  PIDFD_LMK_CGROUP: {
    hooks: ['pre-kill', 'post-kill'],
    text: "the victim's cgroup path (v2, or the v1 memory one where v2 is the root; empty if unknown)",
  },
  PIDFD_LMK_PSS: { hooks: ['pre-kill', 'post-kill'], text: "the victim's PSS when chosen, bytes" },
  PIDFD_LMK_RSS: { hooks: ['pre-kill', 'post-kill'], text: "the victim's RSS when chosen, bytes" },
  PIDFD_LMK_OOM_SCORE_ADJ: { hooks: ['pre-kill', 'post-kill'], text: "the victim's oom_score_adj" },
  PIDFD_LMK_REASON: { hooks: ['pre-kill', 'post-kill'], text: 'why the episode acts, in words' },
  PIDFD_LMK_TRIGGERED: {
    hooks: ['pre-kill', 'post-kill'],
    text: 'the rules that said act (memory, swap, psi, critical), critical first',
  },
  PIDFD_LMK_KILL_MODE: {
    hooks: ['pre-kill', 'post-kill'],
    text: 'pre-kill: the kill mode asked for; post-kill: the one applied (process, group, tree, cgroup)',
  },
  PIDFD_LMK_KILLED: { hooks: ['post-kill'], text: 'the pids the kill took, the victim first' },
  PIDFD_LMK_HELD: { hooks: ['post-kill'], text: 'what they held when chosen, bytes' },
  PIDFD_LMK_BYTES_FREED: { hooks: ['post-kill'], text: 'the headroom regained, measured, bytes' },
  PIDFD_LMK_REGAINED: { hooks: ['post-kill'], text: '1 if at least 80% of HELD came back, else 0' },
  PIDFD_LMK_DECISION_MS: {
    hooks: ['post-kill'],
    text: 'ms from the measurement that began the episode to the first signal',
  },
  PIDFD_LMK_DEATH_MS: { hooks: ['post-kill'], text: 'ms from the first signal to the last death' },
  PIDFD_LMK_MEMORY_MS: { hooks: ['post-kill'], text: 'ms from the first signal to the memory measured back' },
  PIDFD_LMK_ESCALATED: {
    hooks: ['post-kill'],
    text: 'timeout or critical when a graceful kill ended in SIGKILL, else empty',
  },
  PIDFD_LMK_CGROUP_KILLED: { hooks: ['post-kill'], text: 'the cgroup directory a cgroup kill took, else empty' },
  PIDFD_LMK_PRE_KILL: {
    hooks: ['post-kill'],
    text: 'how the pre-kill hook went: ok, failed, timeout, critical; empty without one',
  },
  PIDFD_LMK_PRE_KILL_MS: { hooks: ['post-kill'], text: 'ms the kill waited for the pre-kill hook; empty without one' },
} as const satisfies Record<string, { hooks: readonly ('pre-kill' | 'post-kill')[]; text: string }>;

/**
 * The names of HOOK_ENV.
 *
 * @example
 * const name: HookEnvName = 'PIDFD_LMK_PID';
 */
export type HookEnvName = keyof typeof HOOK_ENV;

/** The variables the pre-kill hook gets (the victim's part, the same in both hooks). */
type VictimEnvName = {
  [K in HookEnvName]: 'pre-kill' extends (typeof HOOK_ENV)[K]['hooks'][number] ? K : never;
}[HookEnvName];

const int = (n: number): string => String(Math.round(n));

/** The victim's part, the same in both hooks. */
function victimEnv(
  hook: 'pre-kill' | 'post-kill',
  v: Pick<
    PreKillVictim,
    'episode' | 'pid' | 'comm' | 'cmdline' | 'cgroup' | 'oomScoreAdj' | 'reason' | 'triggered' | 'killMode'
  >,
  pss: number,
  rss: number,
): Record<VictimEnvName, string> {
  return {
    PIDFD_LMK_HOOK: hook,
    PIDFD_LMK_EPISODE: String(v.episode),
    PIDFD_LMK_PID: String(v.pid),
    PIDFD_LMK_NAME: v.comm,
    PIDFD_LMK_CMDLINE: v.cmdline.join(' '),
    PIDFD_LMK_CGROUP: v.cgroup ?? '',
    PIDFD_LMK_PSS: int(pss),
    PIDFD_LMK_RSS: int(rss),
    PIDFD_LMK_OOM_SCORE_ADJ: String(v.oomScoreAdj),
    PIDFD_LMK_REASON: v.reason,
    PIDFD_LMK_TRIGGERED: v.triggered.join(' '),
    PIDFD_LMK_KILL_MODE: v.killMode,
  };
}

/**
 * The pre-kill command's environment (HOOK_ENV, `pre-kill`), from what the killer's preKill is given.
 *
 * @example
 * const lmk = new LowMemoryKiller({ ...options, preKill: (v) => console.log(preKillEnv(v).PIDFD_LMK_CMDLINE) });
 */
export function preKillEnv(v: PreKillVictim): Record<string, string> {
  return victimEnv('pre-kill', v, v.memory.pss, v.memory.rss);
}

/**
 * The post-kill command's environment (HOOK_ENV, `post-kill`), from the kill event.
 *
 * @example
 * lmk.on('kill', (e) => console.log(postKillEnv(e).PIDFD_LMK_KILLED));
 */
export function postKillEnv(e: KillEvent): Record<string, string> {
  return {
    ...victimEnv('post-kill', { ...e, cgroup: e.victimCgroup }, e.pss, e.rss),
    PIDFD_LMK_KILLED: e.killed.map((k) => k.pid).join(' '),
    PIDFD_LMK_HELD: int(e.held),
    PIDFD_LMK_BYTES_FREED: int(e.bytesFreed),
    PIDFD_LMK_REGAINED: e.regained ? '1' : '0',
    PIDFD_LMK_DECISION_MS: int(e.decisionMs),
    PIDFD_LMK_DEATH_MS: int(e.deathMs),
    PIDFD_LMK_MEMORY_MS: int(e.memoryMs),
    PIDFD_LMK_ESCALATED: e.escalated === false ? '' : e.escalated,
    PIDFD_LMK_CGROUP_KILLED: e.cgroup ?? '',
    PIDFD_LMK_PRE_KILL: e.preKillResult ?? '',
    PIDFD_LMK_PRE_KILL_MS: e.preKillMs === undefined ? '' : int(e.preKillMs),
  } satisfies Record<HookEnvName, string>;
}

/** Rejects with this when a pre-kill command exits non-zero or dies of a signal (not when the killer ended it). */
function commandFailed(command: string, r: HookResult): Error {
  const how = r.error
    ? `could not start: ${r.error.message}`
    : r.signal !== null
      ? `died of ${r.signal}`
      : `exited with status ${r.status}`;
  const out = r.output.trim();
  return codedError('ERR_PIDFD_LMK_HOOK', `pre-kill command ${JSON.stringify(command)} ${how}${out ? `: ${out}` : ''}`);
}

/**
 * The pre-kill command as the killer's `preKill`: it runs with preKillEnv(victim) until it exits, or until the
 * killer stops waiting (its `preKillTimeout`, the critical level, the victim's exit: then its process group gets
 * SIGKILL, so no pre-kill command outlives the wait). A non-zero status rejects, so the killer reports it through
 * its `error` event and the kill event says `failed`. `onDone` gets every result, for the log.
 *
 * @example
 * const lmk = new LowMemoryKiller({
 *   ...options, preKillTimeout: 2000,
 *   preKill: preKillCommand('logger -t lmk "killing $PIDFD_LMK_NAME ($PIDFD_LMK_PID)"', (r) => log(r.output)),
 * });
 */
export function preKillCommand(
  command: string,
  onDone?: (r: HookResult, v: PreKillVictim) => void,
): (v: PreKillVictim, signal: AbortSignal) => Promise<void> {
  if (typeof command !== 'string' || command === '') throw invalidType('command', 'a non-empty string', command);
  return async (v, signal) => {
    const r = await runHook(command, preKillEnv(v), Infinity, signal);
    onDone?.(r, v);
    if (!r.aborted && (r.error !== undefined || r.status !== 0)) throw commandFailed(command, r);
  };
}

/**
 * Runs the post-kill command after each kill event, apart from the killer's loop: `push()` returns at once, and
 * the commands run one at a time, in order, each with postKillEnv(event) and its own timeout. One at a time,
 * because a hook runs while memory is short and several at once would take more of it; a bounded queue
 * (`limit` waiting, default 16), because kills can come faster than a slow hook ends: what does not fit is
 * dropped, and `onDrop` says so. Dry-run events are not hooked (no hook runs in a dry run).
 *
 * @example
 * const post = new PostKillRunner('curl -s -d "killed $PIDFD_LMK_NAME" http://alerts/', 5000, {
 *   onDone: (r, e) => log(`post-kill for ${e.pid}: status ${r.status} in ${r.ms.toFixed(0)} ms`),
 *   onDrop: (e) => log(`post-kill for ${e.pid} dropped: the queue is full`),
 * });
 * lmk.on('kill', (e) => post.push(e));
 * // at shutdown: await post.idle();
 */
export class PostKillRunner {
  readonly command: string;
  readonly timeoutMs: number;
  readonly limit: number;
  #queue: KillEvent[] = [];
  #running: Promise<void> | undefined;
  #onDone: ((r: HookResult, e: KillEvent) => void) | undefined;
  #onDrop: ((e: KillEvent) => void) | undefined;
  #dropped = 0;

  /** Validates the arguments (the same rules as runHook's). */
  constructor(
    command: string,
    timeoutMs: number,
    options: {
      limit?: number;
      onDone?: (r: HookResult, e: KillEvent) => void;
      onDrop?: (e: KillEvent) => void;
    } = {},
  ) {
    if (typeof command !== 'string' || command === '') throw invalidType('command', 'a non-empty string', command);
    if (typeof timeoutMs !== 'number') throw invalidType('timeoutMs', 'of type number', timeoutMs);
    if (!(timeoutMs > 0 && timeoutMs <= 2 ** 31 - 1)) throw outOfRange('timeoutMs', '> 0 and <= 2147483647', timeoutMs);
    const limit = options.limit ?? 16;
    if (!Number.isInteger(limit) || limit < 0) throw outOfRange('options.limit', 'an integer >= 0', limit);
    this.command = command;
    this.timeoutMs = timeoutMs;
    this.limit = limit;
    this.#onDone = options.onDone;
    this.#onDrop = options.onDrop;
  }

  /** Events dropped so far because the queue was full. */
  get dropped(): number {
    return this.#dropped;
  }

  /** Events waiting (not counting the one running). */
  get waiting(): number {
    return this.#queue.length;
  }

  /** Queues a run for the kill event; false when it was not queued (a dry run, or the queue is full). */
  push(e: KillEvent): boolean {
    if (e.dryRun) return false;
    if (this.#running !== undefined && this.#queue.length >= this.limit) {
      this.#dropped++;
      this.#call(() => this.#onDrop?.(e));
      return false;
    }
    this.#queue.push(e);
    this.#running ??= this.#drain();
    return true;
  }

  /** Resolves when no command runs or waits (for a clean shutdown, after the killer has stopped). */
  async idle(): Promise<void> {
    while (this.#running !== undefined) await this.#running;
  }

  async #drain(): Promise<void> {
    for (let e = this.#queue.shift(); e !== undefined; e = this.#queue.shift()) {
      const ev = e;
      const r = await runHook(this.command, postKillEnv(ev), this.timeoutMs);
      this.#call(() => this.#onDone?.(r, ev));
    }
    this.#running = undefined;
  }

  // A throwing callback is the caller's bug: it surfaces as an uncaught exception, as from any listener, never as
  // an unhandled rejection of the runner's own chain (which would also stop the queue).
  #call(f: () => void): void {
    try {
      f();
    } catch (err) {
      queueMicrotask(() => {
        throw err;
      });
    }
  }
}
