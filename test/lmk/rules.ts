// When the killer acts: each rule on its own or combined (`when: 'all' | 'any'`), and the critical PSI level that
// acts while available memory looks fine, each deciding on a real stall the kernel measured (two processes pinned
// to one CPU in a cgroup v2 group of our own: the PSI resource this machine lets a test drive on demand; memory
// stalls need swap or a thrashing page cache, and the code path is the same). And the sampling period's arithmetic.
import t from 'tap';
import { ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { LowMemoryKiller, LowMemoryKillerOptions } from '../../lib/index';
import { ASSUMED_RATE, DEFAULT_INTERVAL, evaluateRules, nextDelay } from '../../lib/lmk/rules';
import { sleeper } from '../helpers/procs';
import {
  cgroup2Root,
  makeV2Group,
  recordEvents,
  removeAllGroups,
  sleep,
  spinners,
  stopAll,
} from '../helpers/mem-helpers';

const MiB = 2 ** 20;
const procs: ChildProcess[] = [];
t.teardown(async () => {
  await stopAll(procs);
  await removeAllGroups();
});

const someTotal = (g: string): number =>
  Number(/^some .*total=(\d+)/m.exec(readFileSync(join(g, 'cpu.pressure'), 'latin1'))![1]);

t.test('the sampling period follows the distance to the threshold', async (t) => {
  const o: LowMemoryKillerOptions = { candidates: () => [], minAvailable: '10%' };
  t.equal(nextDelay(o, { pressured: false, distance: 100 * 2 ** 30, rate: 0 }), DEFAULT_INTERVAL.max, 'far: 1 s');
  t.equal(nextDelay(o, { pressured: false, distance: MiB, rate: 0 }), DEFAULT_INTERVAL.min, 'near: 10 ms');
  t.equal(nextDelay(o, { pressured: true, distance: 100 * 2 ** 30, rate: 0 }), DEFAULT_INTERVAL.min, 'episode');
  const mid = 600 * MiB;
  t.equal(nextDelay(o, { pressured: false, distance: mid, rate: 0 }), mid / ASSUMED_RATE, 'at the assumed rate');
  t.equal(
    nextDelay(o, { pressured: false, distance: mid, rate: 4 * ASSUMED_RATE }),
    mid / (5 * ASSUMED_RATE),
    'a faster rate seen shortens it',
  );
  t.equal(nextDelay({ ...o, interval: 250 }, { pressured: false, distance: MiB, rate: 0 }), 250, 'fixed');
  t.equal(
    nextDelay({ ...o, interval: { min: 50, max: 200 } }, { pressured: false, distance: 100 * 2 ** 30, rate: 0 }),
    200,
  );
  t.equal(
    nextDelay({ ...o, critical: { stall: 100 } }, { pressured: false, distance: 100 * 2 ** 30, rate: 0 }),
    500,
    'a critical level keeps sampling within half a second',
  );
  t.equal(
    nextDelay(
      { candidates: () => [], psi: { threshold: 1, window: 2000 } },
      { pressured: false, distance: undefined, rate: 0 },
    ),
    1000,
  );
});

t.test(
  'PSI with when: any acts alone, with when: all it waits for memory; critical overrides',
  { skip: !cgroup2Root() && 'no cgroup v2 mounted: the PSI stall cannot be made' },
  async (t) => {
    const g = makeV2Group('lmk-rules')!;
    const idle = sleeper();
    procs.push(idle);
    await new Promise((r) => idle.once('spawn', r));
    writeFileSync(join(g, 'cgroup.procs'), String(idle.pid));
    const quietGroup = makeV2Group('lmk-rules-quiet')!;
    const psi = { resource: 'cpu', kind: 'some', threshold: 200, window: 2000, cgroup: g, mode: 'poll', interval: 100 };
    // minAvailable 0 is never reached: the memory rule always says "fine".
    const base = { candidates: () => [idle.pid!], minAvailable: 0, dryRun: true, reclaim: false } as const;
    const killers = {
      any: new LowMemoryKiller({ ...base, psi, when: 'any' } as LowMemoryKillerOptions),
      all: new LowMemoryKiller({ ...base, psi, when: 'all' } as LowMemoryKillerOptions),
      critical: new LowMemoryKiller({
        ...base,
        when: 'all',
        critical: { stall: 300, kind: 'some', resource: 'cpu', cgroup: g },
      }),
      quiet: new LowMemoryKiller({
        ...base,
        when: 'any',
        // The same rule on a group where nothing runs: no stall there, whatever the rest of the machine does.
        psi: { ...psi, cgroup: quietGroup } as LowMemoryKillerOptions['psi'],
      }),
    };
    const logs = Object.fromEntries(Object.entries(killers).map(([k, l]) => [k, recordEvents(l)]));
    for (const l of Object.values(killers)) l.start();
    t.teardown(() => Promise.all(Object.values(killers).map((l) => l.stop())));
    await sleep(1500);
    for (const [k, log] of Object.entries(logs)) t.same(log, [], `${k}: nothing before the stall`);

    const before = someTotal(g);
    const spin = await spinners(2, 0, g);
    procs.push(...spin);
    const kills = (k: keyof typeof logs): { type: string; e: any }[] => logs[k].filter((x) => x.type === 'kill');
    for (let i = 0; i < 100 && (kills('any').length === 0 || kills('critical').length === 0); i++) await sleep(100);
    await sleep(1500); // the stall goes on: time for the killers that must not act to be wrong
    const stalled = (someTotal(g) - before) / 1000;
    await stopAll(spin);
    t.ok(stalled > 1000, `the kernel measured ${stalled.toFixed(0)} ms of CPU stall in the group`);

    t.equal(kills('any').length, 1, 'when: any: the PSI rule alone decided (one dry-run decision per episode)');
    t.match(kills('any')[0]?.e.reason, /cpu some stall \d+ ms/);
    t.equal(kills('any')[0]?.e.pid, idle.pid);
    t.same(kills('all'), [], 'when: all: PSI alone is not enough while memory is fine');
    t.equal(kills('critical').length, 1, 'critical: acts although the memory rule says fine');
    t.match(kills('critical')[0]?.e.reason, /cpu some stall \d+ ms in 1 s \(critical\)/);
    t.same(kills('quiet'), [], 'the same PSI rule on a group with no stall decides nothing');
    t.equal(idle.exitCode, null, 'dry runs: the candidate lives');
    for (const [k, log] of Object.entries(logs))
      t.same(
        log.filter((x) => x.type === 'error'),
        [],
        `${k}: no errors`,
      );
  },
);

t.test('minAvailable with when: any acts with no PSI event; with all it needs one', async (t) => {
  const idle = sleeper();
  procs.push(idle);
  await new Promise((r) => idle.once('spawn', r));
  const psi = { resource: 'memory', threshold: 1900, window: 2000, mode: 'poll', interval: 100 } as const;
  const mk = (when: 'all' | 'any'): LowMemoryKiller =>
    new LowMemoryKiller({
      candidates: () => [idle.pid!],
      minAvailable: '100%',
      psi,
      when,
      dryRun: true,
      reclaim: false,
    });
  const any = mk('any');
  const all = mk('all');
  const la = recordEvents(any);
  const ll = recordEvents(all);
  await any.check();
  await all.check();
  t.same(
    la.filter((x) => x.type === 'kill').map((x) => x.e.pid),
    [idle.pid],
    'any: available memory below 100% decides alone',
  );
  t.match(la.find((x) => x.type === 'kill')?.e.reason, /available [\d.]+ MiB < [\d.]+ MiB/);
  t.same(ll, [], 'all: no PSI event, no decision');
  await any.stop();
  await all.stop();
});

// The swap rule's arithmetic. This machine has no swap, and turning zram on would change what every test running
// beside this one measures (swap is machine-wide): the rule is shown on measurements as readHeadroom makes them.
t.test('the swap rule: alone, with memory (all / any), and left out without swap', async (t) => {
  const GiB = 2 ** 30;
  const m = (available: number, swapFree: number, swapTotal: number) => ({
    available,
    total: 16 * GiB,
    source: 'meminfo' as const,
    swapFree,
    swapTotal,
    limitedBy: 'MemAvailable',
  });
  const x = { psiLow: false, psiText: undefined, fullStallMs: undefined };
  const o = (extra: Partial<LowMemoryKillerOptions>): LowMemoryKillerOptions => ({ candidates: () => [], ...extra });
  const both = o({ minAvailable: GiB, minSwapFree: '10%' });
  t.equal(evaluateRules(both, m(GiB / 2, 4 * GiB, 8 * GiB), x).enter, false, 'memory short, swap free: all waits');
  t.equal(evaluateRules(both, m(GiB / 2, GiB / 2, 8 * GiB), x).enter, true, 'both short: acts');
  t.match(evaluateRules(both, m(GiB / 2, GiB / 2, 8 * GiB), x).reason, /swap free 512\.0 MiB < 819\.2 MiB/);
  const any = o({ minAvailable: GiB, minSwapFree: '10%', when: 'any' });
  t.equal(evaluateRules(any, m(4 * GiB, GiB / 2, 8 * GiB), x).enter, true, 'any: swap alone is enough');
  const swapOnly = o({ minSwapFree: '10%' });
  t.equal(evaluateRules(swapOnly, m(GiB, 0, 0), x).enter, false, 'no swap: the rule is left out, nothing to act on');
  t.equal(evaluateRules(both, m(GiB / 2, 0, 0), x).enter, true, 'no swap: memory alone decides');
  t.equal(evaluateRules(both, m(GiB / 2, GiB / 2, 8 * GiB), x).ok, false);
  t.equal(evaluateRules(both, m(1.2 * GiB, GiB / 2, 8 * GiB), x).ok, true, 'all: one rule past its hysteresis ends it');
  // Which rules triggered, for counting: the low ones when the rules say act, critical first when it is reached.
  t.same(evaluateRules(both, m(GiB / 2, GiB / 2, 8 * GiB), x).triggered, ['memory', 'swap'], 'all: both');
  t.same(evaluateRules(both, m(GiB / 2, 4 * GiB, 8 * GiB), x).triggered, [], 'all, one low: none');
  t.same(evaluateRules(any, m(4 * GiB, GiB / 2, 8 * GiB), x).triggered, ['swap'], 'any: the one that is low');
  const crit = o({ minAvailable: GiB, critical: { stall: 100 } });
  const stalled = { ...x, fullStallMs: 300 };
  t.same(evaluateRules(crit, m(4 * GiB, 0, 0), stalled).triggered, ['critical'], 'critical alone');
  t.same(evaluateRules(crit, m(GiB / 2, 0, 0), stalled).triggered, ['critical', 'memory'], 'critical first');
});
