// The preKill hook: what it is told of the victim, and the bounded wait for it before the first signal. The wait
// ends at the first of: the hook settles, the timeout, the victim's exit, available memory below the critical
// level. A hook's failure is reported through the 'error' event and never thrown.
import { performance } from 'node:perf_hooks';
import { setTimeout as delay } from 'node:timers/promises';
import { cgroupOf, cgroupV1Of } from '../cgroup';
import { codedError } from '../errors';
import { readChecked } from '../procfs';
import type { Candidate } from './candidates';
import type { PreKillResult, PreKillVictim } from './events';
import { criticalLevel } from './kill';
import type { PressureRule } from './rules';
import type { EpisodeContext } from './steps';

// How often the wait looks at the headroom while a hook runs (as the graceful kill's wait does).
const POLL_MS = 10;

/** The victim's command line and cgroup path, read through its pidfd (empty / undefined once it has exited). */
export function victimTexts(v: Candidate): { cmdline: string[]; cgroup: string | undefined } {
  let cmdline: string[] = [];
  try {
    cmdline = readChecked(v.pidfd, 'cmdline', { allowExiting: true })
      .split('\0')
      .filter((s) => s !== '');
  } catch {
    /* exited: nothing to tell */
  }
  const v2 = cgroupOf(v.pidfd);
  const cgroup = v2 !== undefined && v2 !== '/' ? v2 : (cgroupV1Of(v.pidfd, 'memory') ?? v2);
  return { cmdline, cgroup };
}

/** What the hook is given: copies only, never the PidFd. */
export function preKillVictim(
  ctx: EpisodeContext,
  v: Candidate,
  why: { reason: string; triggered: readonly PressureRule[] },
  texts: { cmdline: string[]; cgroup: string | undefined },
): PreKillVictim {
  return {
    episode: ctx.episode,
    pid: v.pid,
    comm: v.comm,
    cmdline: [...texts.cmdline],
    cgroup: texts.cgroup,
    oomScoreAdj: v.oomScoreAdj,
    memory: { ...v.memory },
    reason: why.reason,
    triggered: [...why.triggered],
    killMode: ctx.options.killMode ?? 'process',
  };
}

// With no 'error' listener EventEmitter throws; from a hook's settlement that would be an unhandled rejection.
function report(ctx: EpisodeContext, v: Candidate, err: unknown): void {
  const why = err instanceof Error ? err.message : String(err);
  const e = codedError('ERR_PIDFD_LMK_PRE_KILL', `preKill hook for ${v.comm} (${v.pid}) failed: ${why}`);
  e.cause = err;
  try {
    ctx.emit('error', e);
  } catch {
    /* nobody listens */
  }
}

/**
 * Calls options.preKill (synchronously, so it starts before any signal) and waits for it as the top of this file
 * says; resolves to how it went (`exited`: the victim is gone, so nothing is to be signalled) and how long the
 * wait took, or undefined without a hook.
 */
export async function runPreKill(
  ctx: EpisodeContext,
  v: Candidate,
  victim: PreKillVictim,
): Promise<{ result: PreKillResult | 'exited'; ms: number } | undefined> {
  const hook = ctx.options.preKill;
  if (hook === undefined) return undefined;
  const timeout = ctx.options.preKillTimeout ?? 2000;
  const critical = criticalLevel(ctx, true);
  const ac = new AbortController();
  const t0 = performance.now();
  let settled: 'ok' | 'failed' | undefined;
  let call: Promise<void>;
  try {
    call = Promise.resolve(hook(victim, ac.signal)).then(
      () => {
        settled ??= 'ok';
      },
      (err: unknown) => {
        settled ??= 'failed';
        report(ctx, v, err);
      },
    );
  } catch (err) {
    settled = 'failed';
    report(ctx, v, err);
    call = Promise.resolve();
  }
  const gone = v.pidfd.waitExit({ signal: ac.signal, ref: ctx.ref }).then(
    () => {},
    () => {},
  );
  const until = t0 + timeout;
  try {
    for (;;) {
      if (settled !== undefined) return { result: settled, ms: performance.now() - t0 };
      if (v.pidfd.exited) return { result: 'exited', ms: performance.now() - t0 };
      if (critical !== undefined && ctx.headroom().available < critical)
        return { result: 'critical', ms: performance.now() - t0 };
      const left = until - performance.now();
      if (left <= 0) return { result: 'timeout', ms: performance.now() - t0 };
      const nap = delay(critical === undefined ? left : Math.min(POLL_MS, left), undefined, {
        signal: ac.signal,
        ref: ctx.ref,
      }).catch(() => {});
      await Promise.race([call, gone, nap]);
    }
  } finally {
    ac.abort();
  }
}
