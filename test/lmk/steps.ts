// The killer's first two steps: reclaim before any kill where it helps (a worker's page
// cache, charged to the budget, is paged out and nobody dies), and trim (a worker that frees memory when asked is
// not killed, by signal or by callback). Both run the killer's own loop (start()), not check().
//
// Budget: a cgroup v1 memory group with a 512 MiB limit; the killer acts below 128 MiB of headroom. No swap here:
// only the file pages can be reclaimed, which is what the reclaim test relies on.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { closeSync, fsyncSync, mkdtempSync, openSync, readFileSync, rmSync, statfsSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  KillEvent,
  LowMemoryKiller,
  LowMemoryKillerEvents,
  readHeadroom,
  ReclaimEvent,
  TrimEvent,
} from '../../lib/index';
import { reclaimsAnon } from '../../lib/lmk/steps';
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
const GUARD_MS = 15_000;

const TMPFS_MAGIC = 0x01021994;
const base =
  [tmpdir(), join(__dirname, '..', '..', 'build')].find((d) => statfsSync(d).type !== TMPFS_MAGIC) ?? tmpdir();
const dir = mkdtempSync(join(base, 'pidfd-lmk-'));

const workers: Worker[] = [];
t.teardown(async () => {
  for (const w of workers) await w.kill();
  await removeAllGroups();
  rmSync(dir, { recursive: true, force: true });
});

function worker(group: string, adj: number, mib: number): Promise<Worker> {
  return budgetWorker(workers, group, adj, mib);
}
function record(lmk: LowMemoryKiller): { type: string; e: any }[] {
  return recordEvents(lmk);
}

function until(lmk: LowMemoryKiller, type: keyof LowMemoryKillerEvents): Promise<any> {
  return new Promise((resolve, reject) => {
    const guard = setTimeout(() => reject(new Error(`no ${type} event within ${GUARD_MS} ms`)), GUARD_MS);
    lmk.once(type, (e: unknown) => {
      clearTimeout(guard);
      resolve(e);
    });
  });
}

const alive = (w: Worker): boolean => w.proc.exitCode === null && w.proc.signalCode === null;

if (!memoryV1Root()) {
  t.skip('no cgroup v1 memory controller: these tests need a memory group of their own', () => {});
} else {
  t.test('reclaim first: page cache charged to the budget is paged out, and nobody dies', async (t) => {
    const file = join(dir, 'cache');
    const fd = openSync(file, 'w');
    const chunk = Buffer.alloc(MiB, 0x33);
    for (let i = 0; i < 192; i++) writeSync(fd, chunk);
    fsyncSync(fd);
    closeSync(fd);
    const g = makeV1MemoryGroup('lmk-reclaim', LIMIT)!;
    const w1 = await worker(g, 0, 64);
    const w2 = await worker(g, 900, 0);
    await w2.ask(`f ${file}`, 'file');
    // Read twice more from inside the group, the pages become active file pages: the working set, which the budget
    // counts as used (inactive file pages already count as available, so paging them out would gain nothing).
    spawnSync('sh', ['-c', `echo $$ > ${g}/cgroup.procs && cat ${file} ${file} > /dev/null`]);
    const activeFile = Number(/^total_active_file (\d+)$/m.exec(readFileSync(join(g, 'memory.stat'), 'latin1'))?.[1]);
    t.ok(activeFile >= 150 * MiB, `active file pages: ${(activeFile / MiB).toFixed(0)} MiB`);
    const lmk = new LowMemoryKiller({
      candidates: { cgroup: g },
      memory: { cgroup: g },
      minAvailable: MIN_AVAILABLE,
      interval: 100,
    });
    t.teardown(() => lmk.stop());
    const log = record(lmk);
    t.ok(lmk.headroom().available > MIN_AVAILABLE + 64 * MiB, 'room to spare before the push');
    // Past the bound before the killer starts: a burst still running at the crossing would rightly skip reclaim
    // (the headroom falls faster than reclaim and its settle time could make up).
    await w1.ask('a 160', 'anon'); // the file pages are what can go
    const recovered = until(lmk, 'recovered');
    lmk.start();
    await recovered;
    const r = log
      .filter((x) => x.type === 'reclaim')
      .map((x) => x.e)
      .find((e) => e.pid === w2.pid);
    t.ok(r, 'the worker holding the page cache was reclaimed');
    t.ok(
      r.rssBefore - r.rssAfter >= 150 * MiB,
      `its RSS went ${(r.rssBefore / MiB).toFixed(0)} -> ${(r.rssAfter / MiB).toFixed(0)} MiB`,
    );
    const r1 = log
      .filter((x) => x.type === 'reclaim')
      .map((x) => x.e as ReclaimEvent)
      .find((e) => e.pid === w1.pid);
    if (r1 !== undefined) {
      // Advised in the same step: without swap only its file mappings (its binary and libraries), none of the 224 MiB.
      t.ok(!r1.anon && r1.advised < 32 * MiB, `the anonymous worker: ${(r1.advised / MiB).toFixed(1)} MiB advised`);
    }
    t.same(
      log.filter((x) => x.type === 'kill'),
      [],
      'no kill: reclaim was enough',
    );
    t.ok(alive(w1) && alive(w2));
    t.ok(
      lmk.headroom().available >= MIN_AVAILABLE,
      `headroom back to ${(lmk.headroom().available / MiB).toFixed(0)} MiB`,
    );
    await lmk.stop();
  });

  t.test(
    'no swap: an anonymous-only candidate gets nothing advised, and the kill is not held up by the step',
    { skip: readHeadroom().swapTotal > 0 && 'this machine has swap: the case needs a machine without' },
    async (t) => {
      const cap = 1280 * MiB;
      const g = makeV1MemoryGroup('lmk-anon', cap)!;
      // One run as the killer is now (reclaim.anon 'auto'), one with anon: true (what the step did before).
      const run = async (
        anon: boolean | 'auto',
      ): Promise<{ reclaims: ReclaimEvent[]; kill: KillEvent; ms: number }> => {
        const w = await worker(g, 0, 1024);
        const lmk = new LowMemoryKiller({
          candidates: { cgroup: g },
          memory: { cgroup: g },
          // Under pressure with ~250 MiB left; 1 GiB paged out would end it, if anonymous pages could leave.
          minAvailable: 600 * MiB,
          memoryTimeout: 200,
          reclaim: { anon },
        });
        let t0 = 0;
        let t1 = 0;
        const reclaims: ReclaimEvent[] = [];
        let kill: KillEvent | undefined;
        lmk.on('pressure', () => (t0 = performance.now()));
        lmk.on('reclaim', (e) => reclaims.push(e));
        lmk.on('kill', (e) => {
          kill = e;
          t1 = performance.now() - e.memoryMs; // when the SIGKILL went out
        });
        await lmk.check();
        await lmk.stop();
        t.equal(kill?.pid, w.pid, `anon ${anon}: the worker was killed`);
        return { reclaims, kill: kill!, ms: t1 - t0 };
      };
      const auto = await run('auto');
      t.same(auto.reclaims, [], "anon 'auto' without swap: nothing advised (only file pages could leave)");
      const forced = await run(true);
      const r = forced.reclaims[0];
      t.ok(r && r.anon && r.advised >= 1024 * MiB, `anon: true advised ${((r?.advised ?? 0) / MiB).toFixed(0)} MiB`);
      t.ok(
        r.rssAfter >= 0.95 * r.rssBefore,
        `and RSS stayed: ${(r.rssBefore / MiB).toFixed(0)} -> ${(r.rssAfter / MiB).toFixed(0)} MiB`,
      );
      t.comment(
        `pressure -> SIGKILL over a 1 GiB anonymous worker: ${auto.ms.toFixed(1)} ms with reclaim.anon 'auto', ` +
          `${forced.ms.toFixed(1)} ms with anon: true (its advice took ${r.ms.toFixed(1)} ms, then the settle wait)`,
      );
    },
  );

  t.test('reclaim.anon: anonymous memory is advised only where swap or zram can take it', async (t) => {
    // Swap cannot be added on this shared machine, so the 'auto' decision with swap is shown on its inputs.
    t.equal(reclaimsAnon('auto', 0), false, 'auto, no swap: file pages only');
    t.equal(reclaimsAnon(undefined, 0), false, 'the default is auto');
    t.equal(reclaimsAnon('auto', 4 * 2 ** 30), true, 'auto, swap (or zram): everything');
    t.equal(reclaimsAnon(true, 0), true);
    t.equal(reclaimsAnon(false, 4 * 2 ** 30), false);
  });

  for (const how of ['signal', 'callback'] as const) {
    t.test(`trim by ${how}: the worker that frees memory when asked is not killed`, async (t) => {
      const g = makeV1MemoryGroup(`lmk-trim-${how}`, LIMIT)!;
      const first = await worker(g, 1000, 200); // first in line for a kill, but it answers the trim
      const other = await worker(g, 0, 64); // does not trim (it ignores the signal)
      if (how === 'signal') await first.ask('t', 'trim on');
      const asked: number[] = [];
      const lmk = new LowMemoryKiller({
        candidates: { cgroup: g },
        memory: { cgroup: g },
        minAvailable: MIN_AVAILABLE,
        interval: 100,
        reclaim: false,
        trim:
          how === 'signal'
            ? // Generous deadlines: the step ends as soon as the memory is back (and, with a callback, the callback
              // has settled), so they only matter on a slow run (a sanitizer build).
              { signal: 'SIGUSR1', deadline: 10_000 }
            : {
                deadline: 10_000,
                callback: async (c) => {
                  asked.push(c.pid);
                  if (c.pid === first.pid) await first.ask('u', 'unmapped');
                },
              },
      });
      t.teardown(() => lmk.stop());
      const log = record(lmk);
      lmk.start();
      const recovered = until(lmk, 'recovered');
      // The trim events come when the step ends, which may be after `recovered` (the memory is back before the
      // callback's promise settles); all of an episode's trim events are emitted together.
      const trimmed = until(lmk, 'trim');
      await other.ask('a 200', 'anon');
      await recovered;
      await trimmed;
      if (how === 'signal')
        t.match(await first.next('trimmed'), /^trimmed 209715200$/, 'the worker got the signal and freed 200 MiB');
      else t.same(asked.sort(), [first.pid, other.pid].sort(), 'the callback was asked about each candidate');
      const trims = log.filter((x) => x.type === 'trim').map((x) => x.e as TrimEvent);
      const mine = trims.find((e) => e.pid === first.pid);
      t.comment(
        JSON.stringify({
          first: first.pid,
          other: other.pid,
          asked,
          log: log.map((x) => [x.type, x.e.pid, x.e.freed]),
        }),
      );
      t.ok(mine && mine.freed >= 190 * MiB, `trim event: ${((mine?.freed ?? 0) / MiB).toFixed(0)} MiB freed`);
      t.same(
        log.filter((x) => x.type === 'kill'),
        [],
        'no kill',
      );
      t.ok(alive(first) && alive(other), 'both live');
      t.same(
        log.filter((x) => x.type === 'error'),
        [],
      );
      await lmk.stop();
    });
  }
}
