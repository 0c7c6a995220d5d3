// What a kill takes (killMode) and how (graceful): each mode kills exactly its set, on real processes. A tree
// whose grandchild holds the memory dies whole with `tree` (and `process` leaves the descendants running); a
// group kill takes the victim's process group and nothing in another group; a cgroup kill empties the victim's
// cgroup (by cgroup.kill on v2, one by one on v1 or when this process is inside) and leaves everything outside
// alive. A graceful kill escalates at its timeout, not at all when the victim exits on the signal, and at once
// when memory falls below the critical level.
//
// Budget: a cgroup v1 memory group of the test's own (512 MiB); the killer is always under pressure there
// (minAvailable = the limit), so each check() kills once. cgroup v2 groups (no memory controller here, but
// cgroup.kill) hold the processes of the cgroup-mode tests. Every process started here lives in one of these
// groups, whose removal at the end kills whatever is left.
import t from 'tap';
import { ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { KillEvent, LowMemoryKiller, LowMemoryKillerOptions, PidFd } from '../../lib/index';
import { oomGroupOf } from '../../lib/lmk/kill';
import { Lines } from '../helpers/lines';
import {
  cgroup2Root,
  makeV1MemoryGroup,
  makeV2Group,
  memoryV1Root,
  procsOf,
  recordEvents,
  removeAllGroups,
  stopAll,
  Worker,
} from '../helpers/mem-helpers';
import { exited, fixture, sleeper, track } from '../helpers/procs';

const MiB = 2 ** 20;
const LIMIT = 512 * MiB;

const procs: ChildProcess[] = [];
const workers: Worker[] = [];
const handles: PidFd[] = [];
t.teardown(async () => {
  for (const w of workers) await w.kill();
  await stopAll(procs);
  await removeAllGroups();
  for (const p of handles) p.close();
});

interface Member {
  pid: number;
  ppid: number;
  pgid: number;
  role: string;
  p: PidFd;
}

/** Starts an lmk-family (see the fixture) in the cgroups given; resolves with its three members, each opened. */
async function family(kind: 'tree' | 'group', mib: number, cgroupProcs: string[]): Promise<Member[]> {
  const c = track(
    spawn(fixture('lmk-family'), [kind, String(mib), ...cgroupProcs], { stdio: ['ignore', 'pipe', 'inherit'] }),
  );
  procs.push(c);
  const lines = new Lines(c.stdout as Readable);
  await lines.waitFor(() => lines.all.filter((l) => l.startsWith('member ')).length === 3, 'three members');
  return lines.all
    .filter((l) => l.startsWith('member '))
    .map((l) => {
      const [, pid, ppid, pgid, role] = l.split(' ');
      const p = PidFd.open(Number(pid));
      handles.push(p);
      return { pid: Number(pid), ppid: Number(ppid), pgid: Number(pgid), role, p };
    });
}

const role = (ms: Member[], r: string): Member => ms.find((m) => m.role === r)!;

/** A killer that is always under pressure in budget `g` and kills `victim` (the only candidate). */
async function killOnce(
  g: string,
  victim: number,
  options: Partial<LowMemoryKillerOptions>,
): Promise<{ kill: KillEvent | undefined; log: { type: string; e: any }[] }> {
  const lmk = new LowMemoryKiller({
    candidates: () => [victim],
    memory: { cgroup: g },
    minAvailable: LIMIT,
    reclaim: false,
    memoryTimeout: 200,
    ...options,
  });
  const log = recordEvents(lmk);
  await lmk.check();
  await lmk.stop();
  const kills = log.filter((x) => x.type === 'kill').map((x) => x.e as KillEvent);
  return { kill: kills[0], log };
}

const sortNum = (a: number[]): number[] => [...a].sort((x, y) => x - y);
const alive = (p: PidFd): boolean => !p.exited;

if (!memoryV1Root()) {
  t.skip('no cgroup v1 memory controller: these tests need a memory group of their own', () => {});
} else {
  t.test('tree: the grandchild that holds the memory dies with the tree; process mode leaves it running', async (t) => {
    const g = makeV1MemoryGroup('km-tree', LIMIT)!;
    const bystander = sleeper();
    procs.push(bystander);
    const ms = await family('tree', 64, [join(g, 'cgroup.procs')]);
    const root = role(ms, 'root');
    const { kill, log } = await killOnce(g, root.pid, { killMode: 'tree' });
    t.ok(kill, `a kill: ${JSON.stringify(log.map((x) => [x.type, x.e.pid ?? x.e.message]))}`);
    t.equal(kill!.killMode, 'tree');
    t.same(sortNum(kill!.killed.map((k) => k.pid)), sortNum(ms.map((m) => m.pid)), 'root, child and grandchild');
    t.equal(kill!.killed[0].pid, root.pid, 'the victim first');
    for (const m of ms) {
      await m.p.waitExit({ timeout: 5000 });
      t.equal(alive(m.p), false, `the ${m.role} is dead`);
    }
    const gk = kill!.killed.find((k) => k.pid === role(ms, 'grandchild').pid)!;
    t.ok(gk.rss >= 60 * MiB, `the grandchild held ${(gk.rss / MiB).toFixed(0)} MiB`);
    t.ok(kill!.held >= 60 * MiB, `held ${(kill!.held / MiB).toFixed(0)} MiB`);
    t.ok(kill!.bytesFreed >= 0.8 * 64 * MiB, `regained ${(kill!.bytesFreed / MiB).toFixed(0)} MiB`);
    t.equal(typeof gk.released, 'boolean', `release() for the grandchild: ${gk.released}`);
    t.equal(bystander.exitCode, null, 'a process outside the tree lives');
    t.equal(bystander.signalCode, null);

    // The same family killed in process mode: the memory stays, held by the grandchild.
    const ms2 = await family('tree', 16, [join(g, 'cgroup.procs')]);
    const r2 = await killOnce(g, role(ms2, 'root').pid, {});
    t.equal(r2.kill?.killMode, 'process');
    t.same(
      r2.kill?.killed.map((k) => k.pid),
      [role(ms2, 'root').pid],
      'process mode: the root alone',
    );
    await role(ms2, 'root').p.waitExit({ timeout: 5000 });
    t.ok(alive(role(ms2, 'child').p) && alive(role(ms2, 'grandchild').p), 'its child and grandchild run on');
  });

  t.test("group: the victim's process group dies; a process in another group (even in its tree) lives", async (t) => {
    const g = makeV1MemoryGroup('km-group', LIMIT)!;
    const bystander = sleeper(); // in the test's own group
    procs.push(bystander);
    const ms = await family('group', 48, [join(g, 'cgroup.procs')]);
    const root = role(ms, 'root');
    const child = role(ms, 'child');
    const grandchild = role(ms, 'grandchild');
    t.equal(child.pgid, root.pid, "the child is in the root's group");
    t.equal(grandchild.pgid, grandchild.pid, 'the grandchild leads a group of its own');
    t.not(root.pid, process.pid);
    const { kill } = await killOnce(g, child.pid, { killMode: 'group' });
    t.equal(kill?.killMode, 'group');
    t.same(
      kill?.killed.map((k) => k.pid),
      [child.pid, root.pid],
      'the victim (the child), then the rest of its group (the root)',
    );
    await root.p.waitExit({ timeout: 5000 });
    await child.p.waitExit({ timeout: 5000 });
    t.ok(!alive(root.p) && !alive(child.p), 'both are dead');
    t.ok(alive(grandchild.p), 'the grandchild, in another group, lives');
    t.equal(bystander.exitCode, null, "a process in this test's group lives");
    t.ok(kill!.held >= 48 * MiB, `held ${(kill!.held / MiB).toFixed(0)} MiB`);
  });

  t.test(
    "cgroup (v2, cgroup.kill): the victim's cgroup is emptied, processes outside it live",
    { skip: !cgroup2Root() && 'no cgroup v2' },
    async (t) => {
      const g = makeV1MemoryGroup('km-cg', LIMIT)!;
      const inside = makeV2Group('km-cg-in')!;
      const sibling = makeV2Group('km-cg-sib')!;
      const w = async (v2?: string, mib = 0): Promise<Worker> => {
        const x = await new Worker([join(g, 'cgroup.procs'), ...(v2 ? [join(v2, 'cgroup.procs')] : [])]).ready();
        workers.push(x);
        if (mib > 0) await x.ask(`a ${mib}`, 'anon');
        return x;
      };
      const victim = await w(inside); // holds nothing itself
      const holder = await w(inside, 64);
      const outside = await w(undefined, 8); // in the v1 budget only
      const neighbour = await w(sibling, 8);
      t.same(sortNum(procsOf(inside)), sortNum([victim.pid, holder.pid]));
      const vExit = exited(victim.proc);
      const hExit = exited(holder.proc);
      const { kill } = await killOnce(g, victim.pid, { killMode: 'cgroup' });
      t.equal(kill?.killMode, 'cgroup');
      t.equal(kill?.cgroup, inside, 'the cgroup its /proc/<pid>/cgroup names');
      t.equal(kill?.cgroupKill, true, 'by cgroup.kill');
      t.same(sortNum(kill!.killed.map((k) => k.pid)), sortNum([victim.pid, holder.pid]));
      t.same(await vExit, [null, 'SIGKILL']);
      t.same(await hExit, [null, 'SIGKILL']);
      t.same(procsOf(inside), [], 'the cgroup is empty');
      t.ok(kill!.bytesFreed >= 0.8 * 64 * MiB, `regained ${(kill!.bytesFreed / MiB).toFixed(0)} MiB`);
      t.equal(outside.proc.exitCode, null, 'a process outside any test cgroup lives');
      t.equal(neighbour.proc.exitCode, null, 'a process in a sibling cgroup lives');
      t.equal(outside.proc.signalCode, null);
      t.equal(neighbour.proc.signalCode, null);
    },
  );

  t.test(
    'cgroup (v2) holding this process: the cgroup is not killed, the victim alone is, this process lives',
    { skip: !cgroup2Root() && 'no cgroup v2' },
    async (t) => {
      const g = makeV1MemoryGroup('km-self', LIMIT)!;
      const shared = makeV2Group('km-self')!;
      const root = cgroup2Root()!;
      const mine = readOwnV2();
      const x = await new Worker([join(g, 'cgroup.procs'), join(shared, 'cgroup.procs')]).ready();
      workers.push(x);
      const xExit = exited(x.proc);
      writeFileSync(join(shared, 'cgroup.procs'), String(process.pid));
      let kill: KillEvent | undefined;
      try {
        ({ kill } = await killOnce(g, x.pid, { killMode: 'cgroup' }));
      } finally {
        writeFileSync(join(root, mine, 'cgroup.procs'), String(process.pid));
      }
      t.equal(kill?.killMode, 'process', 'a cgroup holding the killer holds its siblings too: not killed');
      t.match(kill?.modeReason, /holds the killer or an ancestor/);
      t.equal(kill?.cgroupKill, false, 'no cgroup.kill');
      t.same(
        kill?.killed.map((k) => k.pid),
        [x.pid],
        'the victim alone',
      );
      t.same(await xExit, [null, 'SIGKILL']);
      t.pass('this process lives');
    },
  );

  t.test("cgroup (v1): the victim's memory cgroup, member by member; other groups live", async (t) => {
    const g = makeV1MemoryGroup('km-v1', LIMIT)!;
    const other = makeV1MemoryGroup('km-v1-other', LIMIT)!;
    const mk = async (dir: string, mib: number): Promise<Worker> => {
      const x = await new Worker([join(dir, 'cgroup.procs')]).ready();
      workers.push(x);
      if (mib > 0) await x.ask(`a ${mib}`, 'anon');
      return x;
    };
    const victim = await mk(g, 0);
    const holder = await mk(g, 32);
    const outside = await mk(other, 8);
    t.equal(readOwnV2(), '/', 'the workers have no cgroup v2 group of their own (the v1 memory group is used)');
    const { kill } = await killOnce(g, victim.pid, { killMode: 'cgroup' });
    t.equal(kill?.cgroup, g);
    t.equal(kill?.cgroupKill, false, 'cgroup v1 has no cgroup.kill');
    t.same(sortNum(kill!.killed.map((k) => k.pid)), sortNum([victim.pid, holder.pid]));
    t.same(await exited(holder.proc), [null, 'SIGKILL']);
    t.equal(outside.proc.exitCode, null, 'the worker in another memory group lives');
  });

  t.test('graceful: SIGKILL at the timeout for a process that ignores SIGTERM', async (t) => {
    const g = makeV1MemoryGroup('km-grace-t', LIMIT)!;
    const x = await new Worker([join(g, 'cgroup.procs')]).ready();
    workers.push(x);
    await x.ask('h 15', 'handling 15');
    const { kill } = await killOnce(g, x.pid, { graceful: { timeout: 300 } });
    t.match(await x.next('caught'), /^caught 15$/, 'it got SIGTERM (and carried on)');
    t.equal(kill?.escalated, 'timeout');
    t.ok(kill!.escalatedMs! >= 300, `SIGKILL ${kill!.escalatedMs!.toFixed(0)} ms after SIGTERM`);
    t.same(await exited(x.proc), [null, 'SIGKILL']);
    t.equal(kill!.killed[0].pid, x.pid);
  });

  t.test('graceful: no SIGKILL for a process that exits on SIGTERM', async (t) => {
    const g = makeV1MemoryGroup('km-grace-e', LIMIT)!;
    const x = await new Worker([join(g, 'cgroup.procs')]).ready();
    workers.push(x);
    await x.ask('a 16', 'anon');
    const { kill } = await killOnce(g, x.pid, { graceful: { timeout: 10_000 } });
    t.equal(kill?.escalated, false);
    t.equal(kill?.escalatedMs, undefined);
    t.same(await exited(x.proc), [null, 'SIGTERM'], 'it died of SIGTERM');
    t.comment(`death ${kill!.deathMs.toFixed(1)} ms after SIGTERM`);
  });

  t.test('graceful tree: every member gets SIGTERM, and exits on it: no SIGKILL', async (t) => {
    const g = makeV1MemoryGroup('km-grace-tree', LIMIT)!;
    const ms = await family('tree', 16, [join(g, 'cgroup.procs')]);
    const { kill } = await killOnce(g, role(ms, 'root').pid, { killMode: 'tree', graceful: { timeout: 10_000 } });
    t.equal(kill?.killMode, 'tree');
    t.same(sortNum(kill!.killed.map((k) => k.pid)), sortNum(ms.map((m) => m.pid)));
    t.equal(kill?.escalated, false, 'all three exited on SIGTERM');
    for (const m of ms) {
      await m.p.waitExit({ timeout: 5000 });
      t.equal(alive(m.p), false, `the ${m.role} is dead`);
    }
  });

  t.test('graceful: SIGKILL at once when available memory falls below the critical level', async (t) => {
    const g = makeV1MemoryGroup('km-grace-c', LIMIT)!;
    const x = await new Worker([join(g, 'cgroup.procs')]).ready();
    workers.push(x);
    await x.ask('a 100', 'anon');
    await x.ask('h 15', 'handling 15');
    const other = await new Worker([join(g, 'cgroup.procs')]).ready();
    workers.push(other);
    const lmk = new LowMemoryKiller({
      candidates: () => [x.pid],
      memory: { cgroup: g },
      minAvailable: LIMIT,
      reclaim: false,
      memoryTimeout: 200,
      graceful: { timeout: 20_000, critical: 64 * MiB },
    });
    const log = recordEvents(lmk);
    t.ok(lmk.headroom().available > 256 * MiB, 'well above the critical level at first');
    const done = lmk.check();
    t.match(await x.next('caught'), /^caught 15$/, 'SIGTERM first');
    await other.ask('a 380', 'anon'); // now below 64 MiB of headroom
    await done;
    await lmk.stop();
    const kill = log.find((e) => e.type === 'kill')?.e as KillEvent;
    t.equal(kill?.escalated, 'critical');
    t.ok(kill.escalatedMs! < 20_000, `SIGKILL ${kill.escalatedMs!.toFixed(0)} ms after SIGTERM, not at the timeout`);
    t.same(await exited(x.proc), [null, 'SIGKILL']);
    t.equal(other.proc.exitCode, null, 'the other worker lives');
  });
}

t.test('memory.oom.group: the highest group with it set, up to the budget (fixture directories)', async (t) => {
  const top = mkdtempSync(join(tmpdir(), 'pidfd-oomgroup-'));
  t.teardown(() => rmSync(top, { recursive: true, force: true }));
  const c = join(top, 'a', 'b', 'c');
  mkdirSync(c, { recursive: true });
  writeFileSync(join(top, 'a', 'memory.oom.group'), '1\n');
  writeFileSync(join(top, 'a', 'b', 'memory.oom.group'), '0\n');
  writeFileSync(join(c, 'memory.oom.group'), '1\n');
  t.same(oomGroupOf(c, '/a/b/c', undefined), { dir: join(top, 'a'), path: '/a' }, 'the highest one');
  t.same(oomGroupOf(c, '/a/b/c', join(top, 'a', 'b')), { dir: c, path: '/a/b/c' }, 'not above the budget');
  writeFileSync(join(top, 'a', 'memory.oom.group'), '0\n');
  writeFileSync(join(c, 'memory.oom.group'), '0\n');
  t.equal(oomGroupOf(c, '/a/b/c', undefined), undefined, 'none set');
});

function readOwnV2(): string {
  return (
    readFileSync('/proc/self/cgroup', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('0::'))
      ?.slice(3) ?? '/'
  );
}
