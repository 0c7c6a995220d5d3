// Who the killer picks, on real processes: the kernel's OOM badness weighed against the budget the killer guards
// (for the whole system the order of /proc/<pid>/oom_score; inside a memory cgroup, the adj weighed against the
// cgroup's limit), the prefer / avoid tiers, protect, minVictim and a custom rank; what a kill mode takes along
// counted for the candidate; and a process whose leader thread has exited seen, ranked by its memory and killed.
//
// Every worker that holds memory is in a cgroup v1 memory group of the test's own with a hard cap.
import t from 'tap';
import { ChildProcess, spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Candidate, KillEvent, LowMemoryKiller, LowMemoryKillerOptions } from '../../lib/index';
import { leaderExited } from '../helpers/leader-exit';
import { Lines } from '../helpers/lines';
import {
  budgetWorker,
  makeV1MemoryGroup,
  makeV2Group,
  memoryV1Root,
  recordEvents,
  removeAllGroups,
  Worker,
} from '../helpers/mem-helpers';
import { exited, fixture, sleeper, track } from '../helpers/procs';

const MiB = 2 ** 20;
const PAGE = 4096;

const workers: Worker[] = [];
const others: ChildProcess[] = [];
t.teardown(async () => {
  for (const w of workers) await w.kill();
  for (const c of others) {
    try {
      process.kill(-c.pid!, 'SIGKILL'); // the process group of a detached shell
    } catch {
      c.kill('SIGKILL');
    }
  }
  await removeAllGroups();
});

const meminfo = (key: string): number =>
  Number(new RegExp(`^${key}:\\s+(\\d+) kB$`, 'm').exec(readFileSync('/proc/meminfo', 'latin1'))![1]) * 1024;
const oomScore = (pid: number): number => Number(readFileSync(`/proc/${pid}/oom_score`, 'latin1'));
const alive = (c: ChildProcess): boolean => c.exitCode === null && c.signalCode === null;

function killer(pids: number[], extra: Partial<LowMemoryKillerOptions> = {}): LowMemoryKiller {
  return new LowMemoryKiller({ candidates: () => pids, minAvailable: 0, ...extra });
}

async function ranked(pids: number[], extra: Partial<LowMemoryKillerOptions> = {}): Promise<Candidate[]> {
  const lmk = killer(pids, extra);
  try {
    return await lmk.candidates();
  } finally {
    await lmk.stop();
  }
}

// Whether oom_score_adj could be set (lowering it needs CAP_SYS_RESOURCE).
function setAdj(pid: number, adj: number): boolean {
  try {
    writeFileSync(`/proc/${pid}/oom_score_adj`, String(adj));
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EACCES' || (err as NodeJS.ErrnoException).code === 'EIO') return false;
    throw err;
  }
}

const order = (cs: Candidate[]): number[] => cs.map((c) => c.pid);

if (!memoryV1Root()) {
  t.skip('no cgroup v1 memory controller: these tests need a memory group of their own', () => {});
} else {
  main();
}

function main(): void {
  t.test('whole-system budget: the order of /proc/<pid>/oom_score', async (t) => {
    const g = makeV1MemoryGroup('rank-sys', 1024 * MiB)!;
    // adj × (MemTotal + SwapTotal) / 1000 weighs against the size: one adj point is ~25 MiB on a 24 GiB machine.
    // Negative adjs need CAP_SYS_RESOURCE, which this machine withholds even from root: -1000 is tried below.
    const spec: [number, number][] = [
      [400, 0],
      [8, 10],
      [8, 20],
      [200, 5],
      [100, 0],
    ];
    const ws: Worker[] = [];
    for (const [mib, adj] of spec) ws.push(await budgetWorker(workers, g, adj, mib));
    const cs = await ranked(ws.map((w) => w.pid));
    t.equal(cs.length, spec.length);
    const totalPages = Math.floor((meminfo('MemTotal') + meminfo('SwapTotal')) / PAGE);
    const scores = new Map(cs.map((c) => [c.pid, oomScore(c.pid)]));
    for (const c of cs) {
      t.equal(c.memory.source, 'status', `${c.pid}: memory read from status`);
      t.equal(c.badness, c.size + c.oomScoreAdj * Math.floor(totalPages / 1000) * PAGE, `${c.pid}: oom_badness`);
      // proc_oom_score(): (1000 + points * 1000 / totalpages) * 2 / 3, in C's integer division.
      const predicted =
        c.oomScoreAdj === -1000
          ? 0
          : Math.trunc(((1000 + Math.trunc(((c.badness / PAGE) * 1000) / totalPages)) * 2) / 3);
      t.ok(
        Math.abs(predicted - scores.get(c.pid)!) <= 1,
        `${c.pid} (adj ${c.oomScoreAdj}, ${(c.size / MiB).toFixed(0)} MiB): oom_score ${scores.get(c.pid)}, ours ${predicted}`,
      );
    }
    let pairs = 0;
    for (let i = 0; i < cs.length; i++)
      for (let j = i + 1; j < cs.length; j++) {
        const [a, b] = [scores.get(cs[i].pid)!, scores.get(cs[j].pid)!];
        if (a === b) continue;
        pairs++;
        t.ok(a > b, `${cs[i].pid} (oom_score ${a}) before ${cs[j].pid} (oom_score ${b})`);
      }
    t.ok(pairs >= 10, `${pairs} pairs with different oom_scores compared`);
    t.same(
      order(cs),
      [2, 0, 3, 1, 4].map((i) => ws[i].pid),
      'as oom_score orders them',
    );
    t.ok(cs.every((c) => !c.protected));
  });

  t.test('memory-cgroup budget: the adj weighs against the limit, and the big one ranks first', async (t) => {
    // 1.2 GiB limit: one adj point is floor(314572 pages / 1000) = 314 pages, so adj 300 adds 94200 pages (368 MiB):
    // a 25 MiB worker at 300 weighs ~393 MiB, less than the 900 MiB process at 0. Against the whole system (24 GiB)
    // adj 300 adds ~7.4 GiB, and the ten workers come first (that is what oom_score, earlyoom and nohang say).
    const LIMIT = 1228 * MiB + 819 * 1024; // 1.2 GiB
    const g = makeV1MemoryGroup('rank-cg', LIMIT)!;
    const small: Worker[] = [];
    for (let i = 0; i < 10; i++) small.push(await budgetWorker(workers, g, 300, 25));
    const big = await budgetWorker(workers, g, 0, 900);
    const pids = [...small, big].map((w) => w.pid);
    const inCgroup = await ranked(pids, { memory: { cgroup: g } });
    t.equal(inCgroup[0].pid, big.pid, 'inside the budget: the 900 MiB process first');
    const perAdj = Math.floor(Math.floor(LIMIT / PAGE) / 1000) * PAGE;
    t.equal(perAdj, 314 * PAGE);
    for (const c of inCgroup) t.equal(c.badness, c.size + c.oomScoreAdj * perAdj);
    t.ok(inCgroup[0].badness > 2 * inCgroup[1].badness - 400 * MiB, 'by a wide margin');
    const system = await ranked(pids);
    t.same(new Set(order(system).slice(0, 10)), new Set(small.map((w) => w.pid)), 'whole system: the ten first');
    t.equal(system[10].pid, big.pid);
    t.ok(oomScore(small[0].pid) > oomScore(big.pid), 'as oom_score says');
  });

  t.test('prefer, avoid, protect, minVictim and rank', async (t) => {
    const g = makeV1MemoryGroup('rank-tiers', 512 * MiB)!;
    const g2 = makeV2Group('rank-tiers2');
    const w1 = await budgetWorker(workers, g, 0, 100);
    const w2 = await budgetWorker(workers, g, 0, 40);
    const w3 = await new Worker([join(g, 'cgroup.procs'), ...(g2 ? [join(g2, 'cgroup.procs')] : [])]).ready();
    workers.push(w3);
    writeFileSync(`/proc/${w3.pid}/oom_score_adj`, '500');
    await w3.ask('a 10', 'anon');
    const s1 = sleeper(1001);
    const s2 = sleeper(1002);
    others.push(s1, s2);
    const minAdj = setAdj(s2.pid!, -1000);
    const pids = [w1.pid, w2.pid, w3.pid, s1.pid!, s2.pid!];
    // Without adj -1000 the two sleepers tie (their sizes differ by a page now and then): their order between
    // themselves is not what is tested, so they are written in pid order wherever they stand.
    const order = (cs: Candidate[]): number[] => {
      const o = cs.map((c) => c.pid);
      if (minAdj) return o;
      const sl = [s1.pid!, s2.pid!].sort((a, b) => a - b);
      let k = 0;
      return o.map((p) => (sl.includes(p) ? sl[k++] : p));
    };
    const budget = { memory: { cgroup: g } };
    const base = await ranked(pids, budget);
    // w3: 10 MiB + 500 × 512 MiB / 1000 = 266 MiB before w1's 100 MiB
    // s1 and s2 are alike (a sleep each) but for their adj, when it could be set
    t.same(order(base).slice(0, 3), [w3.pid, w1.pid, w2.pid], 'by badness');
    if (!minAdj)
      t.skip('oom_score_adj -1000 needs CAP_SYS_RESOURCE, absent here: its protection is not tried', () => {});
    else {
      t.same(order(base).slice(3), [s1.pid, s2.pid], 'adj -1000 last');
      t.same(
        base.map((c) => [c.tier, c.protected]),
        [...Array(4).fill(['normal', false]), ['normal', true]],
        'adj -1000 is protected: the kernel never kills it',
      );
    }
    const sleeps = order(base).slice(3);
    t.same(
      order(await ranked(pids, { ...budget, minVictim: 30 * MiB })),
      [w1.pid, w2.pid, w3.pid, ...sleeps],
      'minVictim 30 MiB: the 10 MiB worker goes after every larger one',
    );
    t.same(
      order(await ranked(pids, { ...budget, minVictim: '6%' })),
      [w1.pid, w2.pid, w3.pid, ...sleeps],
      "minVictim '6%' of 512 MiB",
    );
    const pref = await ranked(pids, { ...budget, prefer: 'sleep' });
    t.same(order(pref), [...sleeps, w3.pid, w1.pid, w2.pid], "prefer 'sleep' (comm): the sleepers first");
    t.same(
      pref.slice(0, 2).map((c) => [c.tier, c.protected]),
      [
        ['prefer', false],
        ['prefer', false],
      ],
      'in prefer: not protected, whatever its adj',
    );
    t.same(
      order(await ranked(pids, { ...budget, prefer: /1001/ })),
      [s1.pid, w3.pid, w1.pid, w2.pid, s2.pid],
      'prefer /1001/ matches the command line only',
    );
    t.same(
      order(await ranked(pids, { ...budget, avoid: (c) => c.memory.rss > 80 * MiB })),
      [w3.pid, w2.pid, ...sleeps, w1.pid],
      'avoid (predicate): the 100 MiB worker last',
    );
    t.same(
      order(await ranked(pids, { ...budget, avoid: [w3.pid], prefer: [w2.pid] })),
      [w2.pid, w1.pid, ...sleeps, w3.pid],
      'prefer and avoid by pid',
    );
    if (g2 === undefined) t.skip('no cgroup v2 hierarchy: a RegExp on the cgroup path is not tried', () => {});
    else {
      const name = g2.slice(g2.lastIndexOf('/') + 1);
      t.same(
        order(await ranked(pids, { ...budget, avoid: new RegExp(`/${name}$`, 'g') })),
        [w1.pid, w2.pid, ...sleeps, w3.pid],
        'avoid by a RegExp on the cgroup path (a /g RegExp answers the same every time)',
      );
    }
    const prot = await ranked(pids, { ...budget, protect: ['mem-worker', s1.pid!] });
    t.same(
      prot.map((c) => c.protected),
      prot.map((c) => c.pid !== s2.pid || minAdj),
      "protect 'mem-worker' and a pid",
    );
    t.ok(
      prot.some((c) => !c.protected),
      'the other sleeper is not protected',
    );
    t.same(
      order(await ranked(pids, { ...budget, prefer: 'sleep', rank: (a, b) => a.pid - b.pid })),
      [...[s1.pid!, s2.pid!].sort((a, b) => a - b), ...[w1.pid, w2.pid, w3.pid].sort((a, b) => a - b)],
      'a custom rank replaces the badness order within the tiers',
    );
  });

  t.test('what the kill mode takes along counts for the candidate', async (t) => {
    const g = makeV1MemoryGroup('rank-along', 512 * MiB)!;
    const procs = join(g, 'cgroup.procs');
    // A detached shell (its own process group) whose grandchild holds 150 MiB, its leader thread exited.
    const inner = '"$1" 150 "$2" & wait';
    const outer = track(
      spawn('sh', ['-c', 'sh -c "$1" inner "$2" "$3" & wait', 'outer', inner, fixture('leader-exit'), procs], {
        detached: true,
        stdio: ['ignore', 'pipe', 'inherit'],
      }),
    );
    others.push(outer);
    await new Lines(outer.stdout!).waitFor((l) => l.startsWith('ready'), 'ready from the grandchild');
    const m = await budgetWorker(workers, g, 0, 60);
    const pids = [outer.pid!, m.pid];
    const byPid = (cs: Candidate[], pid: number): Candidate => cs.find((c) => c.pid === pid)!;

    const proc = await ranked(pids);
    t.equal(proc[0].pid, m.pid, "killMode 'process': the 60 MiB worker first");
    t.equal(byPid(proc, outer.pid!).alongside, 0);
    for (const mode of ['tree', 'group'] as const) {
      const cs = await ranked(pids, { killMode: mode });
      const o = byPid(cs, outer.pid!);
      t.ok(o.alongside >= 150 * MiB, `${mode}: ${(o.alongside / MiB).toFixed(1)} MiB taken along by the shell`);
      t.equal(o.size, o.memory.rss + o.memory.swap + o.pageTables + o.alongside);
      if (mode === 'tree') t.equal(cs[0].pid, outer.pid, "killMode 'tree': the shell whose grandchild holds it first");
      else {
        // The worker shares this test's process group with the other workers (the test itself is never counted).
        const mine = byPid(cs, m.pid).alongside;
        t.ok(mine >= 100 * MiB, `group: the worker's group (this file's workers) holds ${(mine / MiB).toFixed(1)} MiB`);
      }
    }
    t.equal(byPid(await ranked(pids, { killMode: 'tree' }), m.pid).alongside, 0, 'a worker without children');

    const g2 = makeV2Group('rank-along2');
    if (g2 === undefined) {
      t.skip('no cgroup v2 hierarchy: cgroup mode not tried', () => {});
      return;
    }
    const s = sleeper();
    others.push(s);
    writeFileSync(join(g2, 'cgroup.procs'), String(s.pid));
    const m2 = await new Worker([procs, join(g2, 'cgroup.procs')]).ready();
    workers.push(m2);
    await m2.ask('a 40', 'anon');
    const cs = await ranked([s.pid!, m.pid], { killMode: 'cgroup' });
    t.ok(
      byPid(cs, s.pid!).alongside >= 40 * MiB,
      `cgroup: the sleeper's group holds ${(byPid(cs, s.pid!).alongside / MiB).toFixed(1)} MiB besides it`,
    );
    t.equal(cs[0].pid, m.pid, 'the 60 MiB worker still first');
  });

  t.test('a hog whose leader thread has exited is seen, ranked by its memory and killed', async (t) => {
    const LIMIT = 512 * MiB;
    const g = makeV1MemoryGroup('rank-leader', LIMIT)!;
    const procs = join(g, 'cgroup.procs');
    const a = await budgetWorker(workers, g, 0, 40);
    const b = await budgetWorker(workers, g, 0, 40);
    const hog = await leaderExited(320, [procs]);
    others.push(hog.proc);
    const lmk = new LowMemoryKiller({ candidates: { cgroup: g }, memory: { cgroup: g }, minAvailable: 128 * MiB });
    t.teardown(() => lmk.stop());
    const log = recordEvents(lmk);
    const cs = await lmk.candidates();
    t.same(new Set(order(cs)), new Set([a.pid, b.pid, hog.pid]), 'all three are candidates');
    t.equal(cs[0].pid, hog.pid, 'the hog first');
    t.ok(cs[0].memory.rss >= 320 * MiB, `ranked by its real memory: ${(cs[0].memory.rss / MiB).toFixed(1)} MiB`);
    t.ok(lmk.headroom().available < 128 * MiB, 'below the threshold');
    const end = exited(hog.proc);
    await lmk.check();
    const kills = log.filter((x) => x.type === 'kill').map((x) => x.e as KillEvent);
    t.equal(kills.length, 1, 'one kill');
    t.equal(kills[0]?.pid, hog.pid, 'the hog');
    t.ok(kills[0]?.bytesFreed >= 250 * MiB, `${(kills[0]?.bytesFreed / MiB).toFixed(0)} MiB came back`);
    t.same(await end, [null, 'SIGKILL']);
    t.ok(alive(a.proc) && alive(b.proc), 'no bystander died');
    t.same(
      log.filter((x) => x.type === 'error'),
      [],
    );
  });

  const need = 8 * 2 ** 30;
  const avail = meminfo('MemAvailable');
  t.test(
    'a 6 GiB memory-cgroup budget: ten 100 MiB workers at adj 300, a hog growing to 4.5 GiB at 0: one kill, the hog',
    { skip: avail < need ? `needs ${need / 2 ** 30} GiB available, ${(avail / 2 ** 30).toFixed(1)} GiB here` : false },
    async (t) => {
      const LIMIT = 6 * 2 ** 30;
      const g = makeV1MemoryGroup('rank-6g', LIMIT)!;
      const small: Worker[] = [];
      for (let i = 0; i < 10; i++) small.push(await budgetWorker(workers, g, 300, 100));
      const hog = await budgetWorker(workers, g, 0, 0);
      const lmk = new LowMemoryKiller({ candidates: { cgroup: g }, memory: { cgroup: g }, minAvailable: '10%' });
      t.teardown(() => lmk.stop());
      const log = recordEvents(lmk);
      const killed = new Promise<KillEvent>((resolve) => lmk.on('kill', resolve));
      lmk.start();
      const end = exited(hog.proc);
      hog.proc.stdin!.write('a 4608\n'); // the threshold (614 MiB left) is crossed before it is done
      const k = await Promise.race([
        killed,
        new Promise<undefined>((r) => setTimeout(() => r(undefined), 60_000).unref()),
      ]);
      t.equal(k?.pid, hog.pid, 'the hog died');
      t.comment(
        `kill: ${k?.reason}; ${((k?.rss ?? 0) / MiB).toFixed(0)} MiB RSS, back in ${k?.memoryMs.toFixed(0)} ms`,
      );
      t.same(await end, [null, 'SIGKILL']);
      await lmk.stop();
      t.equal(log.filter((x) => x.type === 'kill').length, 1, 'one kill');
      t.ok(
        small.every((w) => alive(w.proc)),
        'the ten workers live',
      );
      const oomKills = Number(/^oom_kill (\d+)$/m.exec(readFileSync(join(g, 'memory.oom_control'), 'latin1'))?.[1]);
      t.equal(oomKills, 0, 'the kernel OOM killer never fired in the group');
    },
  );
}
