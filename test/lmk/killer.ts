// LowMemoryKiller over real workers in a memory budget of their own: the lowest-priority
// worker dies first, protected workers are never chosen, one kill per episode, every kill event carries measured
// bytes freed and times, reclaim comes before the kill; dryRun decides without acting.
//
// The budget: a cgroup v1 memory group of the test's own with a hard limit (512 MiB). The killer measures that
// group's headroom (limit - usage, the same number the kernel would OOM-kill on) and acts below 128 MiB, so it
// always acts well before the kernel would. The workers are test/fixtures/mem-worker.c processes that move
// themselves into the group before they allocate, so the group's usage is theirs alone.
//
// Evaluations are driven with check() after each allocation has finished, so that "one kill per episode" is a
// statement about the killer, not about how fast a worker allocates.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { KillEvent, LowMemoryKiller, PidFd } from '../../lib/index';
import { exited } from '../helpers/procs';
import {
  budgetWorker,
  makeV1MemoryGroup,
  memoryV1Root,
  recordEvents,
  removeAllGroups,
  Worker,
} from '../helpers/mem-helpers';

const MiB = 2 ** 20;
const LIMIT = 512 * MiB;
const MIN_AVAILABLE = 128 * MiB;

const workers: Worker[] = [];
t.teardown(async () => {
  for (const w of workers) await w.kill();
  await removeAllGroups();
});

if (!memoryV1Root()) {
  t.skip('no cgroup v1 memory controller: these tests need a memory group of their own', () => {});
} else {
  main();
}

function worker(group: string, adj: number, mib: number): Promise<Worker> {
  return budgetWorker(workers, group, adj, mib);
}
function record(lmk: LowMemoryKiller): { type: string; e: any }[] {
  return recordEvents(lmk);
}

const alive = (w: Worker): boolean => w.proc.exitCode === null && w.proc.signalCode === null;

function main(): void {
  t.test('lowest priority first, protected never, one kill per episode, measured kill events', async (t) => {
    const g = makeV1MemoryGroup('lmk-a', LIMIT)!;
    const w1 = await worker(g, 0, 64);
    const w2 = await worker(g, 500, 48);
    const w3 = await worker(g, 1000, 32); // the first in line, but protected
    const w4 = await worker(g, 300, 40);
    const lmk = new LowMemoryKiller({
      candidates: { cgroup: g },
      memory: { cgroup: g },
      minAvailable: MIN_AVAILABLE,
      protect: [w3.pid],
    });
    t.teardown(() => lmk.stop());
    const log = record(lmk);
    const h0 = lmk.headroom();
    t.equal(h0.source, 'cgroup-v1');
    t.equal(h0.total, LIMIT);
    t.equal(lmk.threshold(), MIN_AVAILABLE);
    const ranked = await lmk.candidates();
    t.same(
      ranked.map((c) => c.pid),
      [w3.pid, w2.pid, w4.pid, w1.pid],
      'ranked by oom_score_adj',
    );
    t.same(
      ranked.map((c) => c.protected),
      [true, false, false, false],
    );
    t.ok(ranked.every((c) => c.comm === 'mem-worker'));

    await lmk.check();
    t.same(log, [], `no pressure with ${(h0.available / MiB).toFixed(0)} MiB available`);

    // Episode 1: w1 grows past the bound
    await w1.ask('a 200', 'anon');
    const before = lmk.headroom().available;
    t.ok(before < MIN_AVAILABLE, `${(before / MiB).toFixed(0)} MiB available: below the bound`);
    const w2exit = exited(w2.proc);
    await lmk.check();
    const types = log.map((x) => x.type);
    t.equal(types[0], 'pressure');
    t.equal(log[0].e.episode, 1);
    t.match(log[0].e.reason, /available .* < 128\.0 MiB/);
    const kills = log.filter((x) => x.type === 'kill').map((x) => x.e as KillEvent);
    t.equal(kills.length, 1, 'one kill in the episode');
    const k = kills[0];
    t.equal(k.pid, w2.pid, 'the lowest-priority unprotected worker (oom_score_adj 500)');
    t.equal(k.episode, 1);
    t.equal(k.dryRun, false);
    t.equal(k.oomScoreAdj, 500);
    // Reclaim runs only where the candidates' reclaimable pages (file pages: no swap here) could end the episode,
    // which for these anonymous workers depends on a few MiB; test/lmk/steps.ts shows it both ways.
    t.ok(
      types.indexOf('reclaim') < 0 || types.indexOf('reclaim') < types.indexOf('kill'),
      'reclaim, if it ran, came before the kill',
    );
    t.ok(k.bytesFreed >= 0.8 * 48 * MiB, `bytes freed, measured: ${(k.bytesFreed / MiB).toFixed(1)} MiB`);
    t.ok(
      k.deathMs > 0 && k.memoryMs >= k.deathMs,
      `death after ${k.deathMs.toFixed(2)} ms, memory after ${k.memoryMs.toFixed(2)} ms`,
    );
    t.equal(k.regained, true);
    t.equal(typeof k.released, 'boolean', `release() returned ${k.released}`);
    t.same(await w2exit, [null, 'SIGKILL'], 'w2 died of SIGKILL');
    t.ok(alive(w1) && alive(w3) && alive(w4), 'nobody else was touched');

    // The headroom is back above the bound plus the hysteresis: checking again starts nothing
    await lmk.check();
    await lmk.check();
    t.equal(log.filter((x) => x.type === 'kill').length, 1, 'still one kill');
    t.equal(lmk.episodes, 1);
    t.equal(log.filter((x) => x.type === 'recovered').length, 1, 'recovered once');

    // Episode 2: w1 now holds 324 MiB at adj 0, w4 40 MiB at adj 300 (+ 300 x 512 MiB / 1000 = 150 MiB): by the
    // kernel's badness against this budget w1 is next, never w3 (protected, 1000)
    await w1.ask('a 60', 'anon');
    await lmk.check();
    const kills2 = log.filter((x) => x.type === 'kill').map((x) => x.e as KillEvent);
    t.equal(kills2.length, 2);
    t.equal(kills2[1].pid, w1.pid, 'the largest badness: w1');
    t.equal(kills2[1].episode, 2);
    t.ok(alive(w4) && alive(w3), 'w4 (smaller badness) and w3 (protected) live');
    t.same(
      log.filter((x) => x.type === 'error'),
      [],
    );
  });

  t.test('dryRun: decides and reports, acts on nothing', async (t) => {
    const g = makeV1MemoryGroup('lmk-dry', LIMIT)!;
    const a = await worker(g, 200, 100);
    const b = await worker(g, 800, 100);
    const lmk = new LowMemoryKiller({
      candidates: { cgroup: g },
      memory: { cgroup: g },
      minAvailable: '25%',
      dryRun: true,
    });
    t.teardown(() => lmk.stop());
    t.equal(lmk.threshold(), LIMIT / 4);
    const log = record(lmk);
    await a.ask('a 200', 'anon');
    const rssBefore = [a, b]
      .map((w) => PidFd.open(w.pid))
      .map((p) => {
        const r = p.memory().rss;
        p.close();
        return r;
      });
    await lmk.check();
    const kill = log.find((x) => x.type === 'kill')!.e as KillEvent;
    t.equal(kill.pid, b.pid, 'it would kill the oom_score_adj 800 worker');
    t.equal(kill.dryRun, true);
    t.ok(log.filter((x) => x.type === 'reclaim').every((x) => x.e.dryRun === true && x.e.advised === 0));
    t.ok(alive(a) && alive(b), 'both live');
    const rssAfter = [a, b]
      .map((w) => PidFd.open(w.pid))
      .map((p) => {
        const r = p.memory().rss;
        p.close();
        return r;
      });
    t.ok(
      rssAfter.every((r, i) => r >= rssBefore[i] - MiB),
      'no page was reclaimed',
    );
  });

  t.test('candidates: { childrenOf } lists exactly the live children of a process', async (t) => {
    const g = makeV1MemoryGroup('lmk-children', LIMIT)!;
    const kids = [await worker(g, 0, 8), await worker(g, 0, 8)];
    const lmk = new LowMemoryKiller({ candidates: { childrenOf: process.pid }, minAvailable: 0 });
    t.teardown(() => lmk.stop());
    const listed = new Set((await lmk.candidates()).map((c) => c.pid));
    for (const k of kids) t.ok(listed.has(k.pid), `child ${k.pid} listed`);
    for (const w of workers.filter(alive)) t.ok(listed.has(w.pid), `live worker ${w.pid} listed`);
    for (const pid of listed) {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      t.equal(
        Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]),
        process.pid,
        `${pid} is a child of this process`,
      );
    }
    t.notOk(listed.has(process.pid));
    t.notOk(listed.has(1));
    await kids[0].kill();
    t.notOk(new Set((await lmk.candidates()).map((c) => c.pid)).has(kids[0].pid), 'a dead child is gone from the list');
  });

  t.test('bad options', async (t) => {
    const bad: [unknown, string][] = [
      [undefined, 'ERR_INVALID_ARG_TYPE'],
      [{ candidates: 5, minAvailable: 1 }, 'ERR_INVALID_ARG_TYPE'],
      [{ candidates: {}, minAvailable: 1 }, 'ERR_INVALID_ARG_VALUE'],
      [{ candidates: { childrenOf: -1 }, minAvailable: 1 }, 'ERR_OUT_OF_RANGE'],
      [{ candidates: () => [] }, 'ERR_INVALID_ARG_VALUE'],
      [{ candidates: () => [], minAvailable: '10' }, 'ERR_INVALID_ARG_VALUE'],
      [{ candidates: () => [], minAvailable: '120%' }, 'ERR_INVALID_ARG_VALUE'],
      [{ candidates: () => [], minAvailable: -1 }, 'ERR_OUT_OF_RANGE'],
      [{ candidates: () => [], minAvailable: 1, protect: {} }, 'ERR_INVALID_ARG_TYPE'],
      [{ candidates: () => [], minAvailable: 1, prefer: [''] }, 'ERR_INVALID_ARG_TYPE'],
      [{ candidates: () => [], minAvailable: 1, avoid: [1.5] }, 'ERR_INVALID_ARG_TYPE'],
      [{ candidates: () => [], minAvailable: 1, minVictim: '5' }, 'ERR_INVALID_ARG_VALUE'],
      [{ candidates: () => [], minAvailable: 1, killMode: 'all' }, 'ERR_INVALID_ARG_VALUE'],
      [{ candidates: () => [], minAvailable: 1, when: 'some' }, 'ERR_INVALID_ARG_VALUE'],
      [{ candidates: () => [], minAvailable: 1, interval: 0 }, 'ERR_OUT_OF_RANGE'],
      [{ candidates: () => [], minAvailable: 1, interval: { min: 50, max: 10 } }, 'ERR_OUT_OF_RANGE'],
      [{ candidates: () => [], critical: { stall: 0 } }, 'ERR_OUT_OF_RANGE'],
      [{ candidates: () => [], minAvailable: 1, graceful: { signal: 'SIGNOPE' } }, 'ERR_UNKNOWN_SIGNAL'],
      [{ candidates: () => [], minAvailable: 1, reclaim: { anon: 'yes' } }, 'ERR_INVALID_ARG_VALUE'],
      [{ candidates: () => [], minAvailable: 1, trim: { signal: 'SIGUSR2', always: [{}] } }, 'ERR_INVALID_ARG_TYPE'],
      [{ candidates: () => [], minAvailable: 1, trim: { signal: 'SIGNOPE' } }, 'ERR_UNKNOWN_SIGNAL'],
      [{ candidates: () => [], minAvailable: 1, memory: { cgroup: '/proc' } }, 'ERR_PIDFD_NO_MEMORY_CGROUP'],
    ];
    for (const [o, code] of bad) t.throws(() => new LowMemoryKiller(o as never), { code }, JSON.stringify(o));
  });
}
