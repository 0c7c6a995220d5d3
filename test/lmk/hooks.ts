// The preKill hook of LowMemoryKiller, over real workers in a memory budget of their own: it runs after the victim
// is chosen and before its first signal (the victim is alive, with no signal pending, at the hook's start and at
// its end); a hook that hangs delays the kill by its timeout and no more (its AbortSignal fires, the kill event
// reports at least the timeout); one that throws or rejects does not stop the kill and is reported through
// 'error', never as an unhandled rejection; the wait ends at once when the victim exits or memory falls below the
// critical level; no hook in a dry run; bad options are refused.
//
// The budget: a cgroup v1 memory group of the test's own with a hard limit (512 MiB); the killer acts below
// minAvailable, and a mem-worker (test/fixtures/mem-worker.c) inside the group allocates to get there.
import t, { type Test } from 'tap';
import { readFileSync } from 'node:fs';
import { LowMemoryKiller, LowMemoryKillerOptions, PreKillVictim } from '../../lib/index';
import { exited } from '../helpers/procs';
import {
  killEvents,
  memoryV1Root,
  pressuredKiller,
  removeAllGroups,
  victimCgroupOf,
  Worker,
} from '../helpers/mem-helpers';

const MiB = 2 ** 20;
const LIMIT = 512 * MiB;

const workers: Worker[] = [];
const unhandled: unknown[] = [];
const onUnhandled = (reason: unknown): void => {
  unhandled.push(reason);
};
process.on('unhandledRejection', onUnhandled);
t.teardown(async () => {
  process.off('unhandledRejection', onUnhandled);
  for (const w of workers) await w.kill();
  await removeAllGroups();
});

/** /proc/<pid>/status fields (State, SigPnd, ShdPnd), or undefined once it is gone. */
function status(pid: number): Map<string, string> | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/status`, 'utf8');
    return new Map(text.split('\n').map((l) => [l.slice(0, l.indexOf(':')), l.slice(l.indexOf(':') + 1).trim()]));
  } catch {
    return undefined;
  }
}

/** A group with a worker holding `mib` MiB, and a killer over it that acts below `minAvailable`. */
async function setup(
  t: Test,
  tag: string,
  mib: number,
  options: Partial<LowMemoryKillerOptions>,
  minAvailable = 128 * MiB,
): Promise<{ w: Worker; lmk: LowMemoryKiller; log: { type: string; e: any }[] }> {
  const r = await pressuredKiller(workers, tag, { limit: LIMIT, mib, minAvailable, options });
  t.ok(r.lmk.headroom().available < minAvailable, 'below minAvailable: the killer will act');
  return r;
}

if (!memoryV1Root()) {
  t.skip('no cgroup v1 memory controller: these tests need a memory group of their own', () => {});
} else {
  main();
}

function main(): void {
  t.test(
    'preKill runs before the first signal: the victim is alive and unsignalled at its start and end',
    async (t) => {
      const seen: { at: string; state?: string; sigPnd?: string; shdPnd?: string; lines: number }[] = [];
      let given: PreKillVictim | undefined;
      const caught = { lines: (): number => 0 };
      const { w, lmk, log } = await setup(t, 'hook-order', 400, {
        // SIGTERM first: the worker catches it and says so, which shows when the first signal arrived.
        graceful: { signal: 'SIGTERM', timeout: 200, critical: 0 },
        preKill: async (v) => {
          given = v;
          const look = (at: string): void => {
            const s = status(v.pid);
            const lines = caught.lines();
            seen.push({ at, state: s?.get('State'), sigPnd: s?.get('SigPnd'), shdPnd: s?.get('ShdPnd'), lines });
          };
          look('start');
          for (let i = 0; i < 5; i++) await new Promise((r) => setTimeout(r, 10));
          look('end');
        },
      });
      caught.lines = () => w.lines.all.filter((l) => l.startsWith('caught')).length;
      t.teardown(() => lmk.stop());
      await w.ask('h 15', 'handling 15');
      const cgroup = victimCgroupOf(w.pid);
      const gone = exited(w.proc);
      await lmk.check();
      t.same(
        log.map((x) => x.type),
        ['pressure', 'kill'],
      );
      const k = killEvents(log)[0];
      t.equal(k.pid, w.pid);
      t.equal(given?.pid, w.pid, 'the hook was told the victim');
      t.equal(given?.comm, 'mem-worker');
      t.match(given?.cmdline[0], /mem-worker$/);
      t.same(given?.cmdline, k.cmdline, 'the kill event carries the same command line');
      t.equal(given?.cgroup, cgroup, 'its cgroup path');
      t.ok(cgroup !== undefined && cgroup !== '/', `in a cgroup of its own: ${cgroup}`);
      t.equal(given?.cgroup, k.victimCgroup);
      t.equal(given?.killMode, 'process');
      t.equal(given?.reason, k.reason);
      t.same(given?.triggered, k.triggered);
      t.same(given?.triggered, ['memory'], 'the minAvailable rule said act');
      t.equal(given?.memory.rss, k.rss);
      t.notOk('pidfd' in (given ?? {}), 'the pidfd is not handed out');
      t.same(
        seen.map((s) => s.at),
        ['start', 'end'],
      );
      for (const s of seen) {
        t.match(s.state, /^[RS] /, `at the hook's ${s.at}: alive (State ${s.state})`);
        t.equal(s.sigPnd, '0000000000000000', `at the hook's ${s.at}: no signal pending for the thread`);
        t.equal(s.shdPnd, '0000000000000000', `at the hook's ${s.at}: no signal pending for the process`);
        t.equal(s.lines, 0, `at the hook's ${s.at}: it has not caught SIGTERM`);
      }
      t.match(await w.next('caught'), /^caught 15$/, 'SIGTERM arrived after the hook');
      t.same(await gone, [null, 'SIGKILL']);
      t.equal(k.preKillResult, 'ok');
      t.ok(k.preKillMs! > 0 && k.preKillMs! <= k.decisionMs, `the hook took ${k.preKillMs!.toFixed(1)} ms`);
    },
  );

  t.test('a hanging preKill delays the kill by its timeout, no more: aborted, reported, killed', async (t) => {
    const TIMEOUT = 300;
    const order: string[] = [];
    let hookSignal: AbortSignal | undefined;
    const { w, lmk, log } = await setup(t, 'hook-hang', 400, {
      preKillTimeout: TIMEOUT,
      preKill: (_v, signal) => {
        hookSignal = signal;
        order.push('hook');
        signal.addEventListener('abort', () => order.push('abort'));
        return new Promise(() => {}); // never settles
      },
    });
    t.teardown(() => lmk.stop());
    lmk.on('kill', () => order.push('kill'));
    const gone = exited(w.proc);
    await lmk.check();
    const k = killEvents(log)[0];
    t.equal(k?.pid, w.pid, 'the victim was killed anyway');
    t.same(await gone, [null, 'SIGKILL']);
    t.equal(k.preKillResult, 'timeout');
    t.ok(k.preKillMs! >= TIMEOUT, `the kill waited ${k.preKillMs!.toFixed(1)} ms (>= ${TIMEOUT}) for the hook`);
    t.ok(k.decisionMs >= k.preKillMs!, 'the wait is part of the decision time');
    t.equal(hookSignal?.aborted, true, "the hook's signal was aborted");
    t.same(order, ['hook', 'abort', 'kill'], 'hook, then its abort, then the kill');
    t.same(
      log.filter((x) => x.type === 'error'),
      [],
      'a timeout is no error',
    );
  });

  for (const how of ['throws', 'rejects'] as const) {
    t.test(`a preKill that ${how} does not stop the kill; 'error' reports it`, async (t) => {
      const boom = new Error('hook broke');
      const { w, lmk, log } = await setup(t, `hook-${how}`, 400, {
        preKill:
          how === 'throws'
            ? () => {
                throw boom;
              }
            : () => Promise.reject(boom),
      });
      t.teardown(() => lmk.stop());
      const gone = exited(w.proc);
      await lmk.check();
      t.same(
        log.map((x) => x.type),
        ['pressure', 'error', 'kill'],
      );
      const err = log[1].e as Error & { code?: string };
      t.equal(err.code, 'ERR_PIDFD_LMK_PRE_KILL');
      t.match(err.message, new RegExp(`preKill hook for mem-worker \\(${w.pid}\\) failed: hook broke`));
      t.equal(err.cause, boom, 'the original error is its cause');
      const k = killEvents(log)[0];
      t.equal(k.pid, w.pid);
      t.equal(k.preKillResult, 'failed');
      t.same(await gone, [null, 'SIGKILL']);
      t.same(unhandled, [], 'no unhandled rejection');
    });
  }

  t.test('a failure after the timeout is still reported, never unhandled', async (t) => {
    let reject: (e: Error) => void = () => {};
    const { lmk, log } = await setup(t, 'hook-late', 400, {
      preKillTimeout: 50,
      preKill: () => new Promise<void>((_, rj) => (reject = rj)),
    });
    t.teardown(() => lmk.stop());
    await lmk.check();
    t.equal(killEvents(log)[0]?.preKillResult, 'timeout');
    reject(new Error('too late'));
    await new Promise((r) => setImmediate(r));
    const errs = log.filter((x) => x.type === 'error').map((x) => x.e as Error);
    t.equal(errs.length, 1);
    t.match(errs[0]?.message, /failed: too late/);
    t.same(unhandled, [], 'no unhandled rejection');
  });

  t.test("the victim exits during preKill: the wait ends, nothing is signalled, no 'kill' event", async (t) => {
    let aborted: boolean | undefined;
    const { w, lmk, log } = await setup(t, 'hook-exit', 400, {
      preKillTimeout: 2 ** 31 - 1, // only the exit can end this wait
      preKill: async (v, signal) => {
        process.kill(v.pid, 'SIGKILL');
        await new Promise<void>((r) => signal.addEventListener('abort', () => r()));
        aborted = signal.aborted;
      },
    });
    t.teardown(() => lmk.stop());
    await lmk.check();
    t.same(await exited(w.proc), [null, 'SIGKILL'], 'the victim died of the SIGKILL the hook sent');
    t.equal(aborted, true, "the hook's signal was aborted when the victim exited");
    t.same(killEvents(log), [], 'no kill event: the killer signalled nothing');
    t.same(
      log.filter((x) => x.type === 'error'),
      [],
    );
  });

  t.test('memory below the critical level ends the wait for a hanging preKill at once', async (t) => {
    // minAvailable 300 MiB: the default critical level is half of it, and 420 MiB used of 512 leaves less.
    const { w, lmk, log } = await setup(
      t,
      'hook-critical',
      420,
      { preKillTimeout: 2 ** 31 - 1, preKill: () => new Promise(() => {}) },
      300 * MiB,
    );
    t.teardown(() => lmk.stop());
    t.ok(lmk.headroom().available < 150 * MiB, 'below the critical level (150 MiB)');
    const gone = exited(w.proc);
    await lmk.check();
    const k = killEvents(log)[0];
    t.equal(k?.preKillResult, 'critical');
    t.same(await gone, [null, 'SIGKILL']);
  });

  t.test('no preKill in a dry run', async (t) => {
    let called = false;
    const { w, lmk, log } = await setup(t, 'hook-dry', 400, {
      dryRun: true,
      preKill: () => {
        called = true;
      },
    });
    t.teardown(() => lmk.stop());
    await lmk.check();
    const k = killEvents(log)[0];
    t.equal(k.dryRun, true);
    t.equal(k.pid, w.pid);
    t.equal(called, false);
    t.equal(k.preKillResult, undefined);
    t.equal(k.preKillMs, undefined);
    t.match(k.cmdline[0], /mem-worker$/, 'the command line is reported in a dry run too');
  });

  t.test('bad preKill options', async (t) => {
    const base = { candidates: { childrenOf: process.pid }, minAvailable: 0 };
    t.throws(() => new LowMemoryKiller({ ...base, preKill: 'echo' as never }), {
      name: 'TypeError',
      code: 'ERR_INVALID_ARG_TYPE',
      message: /"options\.preKill" argument must be a function/,
    });
    t.throws(() => new LowMemoryKiller({ ...base, preKillTimeout: -1 }), {
      name: 'RangeError',
      code: 'ERR_OUT_OF_RANGE',
      message: /"options\.preKillTimeout"/,
    });
    t.throws(() => new LowMemoryKiller({ ...base, preKillTimeout: '2s' as never }), {
      name: 'TypeError',
      code: 'ERR_INVALID_ARG_TYPE',
    });
  });
}
