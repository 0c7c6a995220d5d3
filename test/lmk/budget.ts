// The killer's budget and the kernel's view of it.
//
// cgroup v2 arithmetic runs on fixture trees built here (this machine's memory controller is on cgroup v1): plain
// directories with memory.max / memory.high / memory.current / memory.stat files at several levels, walked up the
// same way as a mounted hierarchy (while the parent has memory.max). cgroup v1 runs on real groups of our own with
// real workers (test/fixtures/mem-worker.c), and so do the kernel's OOM kills: a worker allocating past its
// group's cap is killed by the kernel, and the killer reports it.
import t, { type Test } from 'tap';
import {
  closeSync,
  fsyncSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmdirSync,
  rmSync,
  statfsSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KernelOomEvent, LowMemoryKiller, readHeadroom, readOomKills } from '../../lib/index';
import { readMemoryLimits } from '../../lib/cgroup';
import { KeptFiles, ReadFile, readFresh } from '../../lib/kept-files';
import { Budget, headroomOf } from '../../lib/lmk/budget';
import { readMeminfo } from '../../lib/procfs';
import { makeV1MemoryGroup, memoryV1Root, removeAllGroups, sleep, Worker } from '../helpers/mem-helpers';
import { exited, until } from '../helpers/procs';

const MiB = 2 ** 20;
const GiB = 2 ** 30;
const work = mkdtempSync(join(tmpdir(), 'pidfd-budget-'));
const workers: Worker[] = [];
t.teardown(async () => {
  for (const w of workers) await w.kill();
  await removeAllGroups();
  rmSync(work, { recursive: true, force: true });
});

/** A fake cgroup v2 tree under a fresh directory: `{ 'a/b': { 'memory.max': '...' } }`; returns its root. */
function tree(spec: Record<string, Record<string, string>>): string {
  const root = mkdtempSync(join(work, 'v2-'));
  for (const [dir, files] of Object.entries(spec)) {
    mkdirSync(join(root, dir), { recursive: true });
    for (const [f, text] of Object.entries(files)) writeFileSync(join(root, dir, f), `${text}\n`);
  }
  return root;
}

/** A level of a fake v2 tree: its limits, usage and memory.stat's file lines. */
function level(max: number | 'max', high: number | 'max', current: number, inactive = 0, active = 0) {
  return {
    'memory.max': String(max),
    'memory.high': String(high),
    'memory.current': String(current),
    'memory.stat': `anon ${current - inactive - active}\nfile ${inactive + active}\nactive_anon 0\ninactive_file ${inactive}\nactive_file ${active}`,
    'memory.events': 'low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0',
  };
}

function meminfo(fields: Record<string, number>): Map<string, number> {
  return new Map(Object.entries(fields));
}

/** A reader that records the files it was asked for. */
function recording(): { read: ReadFile; files: string[] } {
  const files: string[] = [];
  return { files, read: (p) => (files.push(p), readFresh(p)) };
}

const BIG = meminfo({ MemTotal: 64 * GiB, MemAvailable: 60 * GiB, SwapTotal: 0, SwapFree: 0 });

t.test('v2: the smallest headroom among the group and its ancestors, memory.high included', async (t) => {
  const root = tree({
    a: level(GiB, 'max', 600 * MiB, 100 * MiB),
    'a/b': level('max', 800 * MiB, 500 * MiB, 50 * MiB),
    'a/b/c': level('max', 'max', 100 * MiB, 10 * MiB),
  });
  const c = join(root, 'a/b/c');
  const lim = readMemoryLimits(c, 64 * GiB, 0)!;
  t.equal(lim.version, 2);
  const h = headroomOf(BIG, lim);
  // b's memory.high: 800 - 500 + 50 = 350 MiB; a's memory.max: 1024 - 600 + 100 = 524 MiB.
  t.equal(h.available, 350 * MiB, 'the parent memory.high leaves the least');
  t.equal(h.limitedBy, join(root, 'a/b/memory.high'), 'limitedBy names the file and its directory');
  t.equal(h.total, 800 * MiB, 'total: the smallest limit');
  t.equal(h.source, 'cgroup-v2');

  // The grandparent's limit binds once its usage (its other children's) leaves less.
  writeFileSync(join(root, 'a/memory.current'), String(1000 * MiB));
  const h2 = headroomOf(BIG, readMemoryLimits(c, 64 * GiB, 0));
  t.equal(h2.available, 124 * MiB, '1024 - 1000 + 100');
  t.equal(h2.limitedBy, join(root, 'a/memory.max'));
  t.equal(h2.total, 800 * MiB, 'total is still the smallest limit');

  // The group's own limit, when it is the tightest.
  writeFileSync(join(root, 'a/b/c/memory.max'), String(150 * MiB));
  const h3 = headroomOf(BIG, readMemoryLimits(c, 64 * GiB, 0));
  t.equal(h3.available, 60 * MiB, '150 - 100 + 10');
  t.equal(h3.limitedBy, join(root, 'a/b/c/memory.max'));
  t.equal(h3.total, 150 * MiB);
});

t.test('v2: bounded by MemAvailable, limits capped at MemTotal', async (t) => {
  const root = tree({ g: level(8 * GiB, 'max', GiB) });
  const g = join(root, 'g');
  const small = meminfo({ MemTotal: 4 * GiB, MemAvailable: 512 * MiB, SwapTotal: 0, SwapFree: 0 });
  const h = headroomOf(small, readMemoryLimits(g, 4 * GiB, 0));
  t.equal(h.available, 512 * MiB, 'the machine has less left than the group');
  t.equal(h.limitedBy, 'MemAvailable');
  t.equal(h.total, 4 * GiB, 'a limit above MemTotal is capped at MemTotal');

  const roomy = meminfo({ MemTotal: 16 * GiB, MemAvailable: 12 * GiB, SwapTotal: 0, SwapFree: 0 });
  const h2 = headroomOf(roomy, readMemoryLimits(g, 16 * GiB, 0));
  t.equal(h2.available, 7 * GiB);
  t.equal(h2.limitedBy, join(g, 'memory.max'));
  t.equal(h2.total, 8 * GiB);

  // The same through readHeadroom, on this machine's real /proc/meminfo.
  const real = readMeminfo();
  const r = readHeadroom(g);
  t.equal(r.source, 'cgroup-v2');
  t.ok(r.available <= real.get('MemAvailable')! + 64 * MiB, 'never more than the machine has available');
  t.ok(r.total <= real.get('MemTotal')!, 'total capped at MemTotal');
  t.equal(r.total, Math.min(8 * GiB, real.get('MemTotal')!));
});

t.test('v2: with every limit at max, the system budget; only the limit files are read', async (t) => {
  const root = tree({ a: level('max', 'max', 300 * MiB), 'a/b': level('max', 'max', 200 * MiB, 50 * MiB) });
  const rec = recording();
  const lim = readMemoryLimits(join(root, 'a/b'), 64 * GiB, 0, rec.read)!;
  t.same(lim.limits, []);
  const h = headroomOf(BIG, lim);
  t.equal(h.available, 60 * GiB);
  t.equal(h.total, 64 * GiB);
  t.equal(h.limitedBy, 'MemAvailable');
  t.notOk(
    rec.files.some((f) => /memory\.(current|stat|swap)/.test(f)),
    `no usage, stat or swap read where nothing is limited: ${rec.files.map((f) => f.slice(root.length)).join(' ')}`,
  );
  t.ok(rec.files.includes(join(root, 'memory.max')), 'the walk looked at the top directory and stopped there');
});

t.test('v2: inactive file pages count as available, active ones do not', async (t) => {
  const root = tree({
    inactive: level(GiB, 'max', 900 * MiB, 300 * MiB, 0),
    active: level(GiB, 'max', 900 * MiB, 0, 300 * MiB),
  });
  const hi = headroomOf(BIG, readMemoryLimits(join(root, 'inactive'), 64 * GiB, 0));
  const ha = headroomOf(BIG, readMemoryLimits(join(root, 'active'), 64 * GiB, 0));
  t.equal(hi.available, 424 * MiB, '1024 - 900 + 300 inactive');
  t.equal(ha.available, 124 * MiB, '1024 - 900: active file is the working set');
});

t.test('v2: usage above memory.high leaves no headroom (not a negative one)', async (t) => {
  const root = tree({ g: level(2 * GiB, GiB, 1200 * MiB, 50 * MiB) });
  const h = headroomOf(BIG, readMemoryLimits(join(root, 'g'), 64 * GiB, 0));
  t.equal(h.available, 0);
  t.equal(h.limitedBy, join(root, 'g/memory.high'));
  t.equal(h.total, GiB);
});

t.test('v2: the walk stops at the first parent without memory.max', async (t) => {
  const root = tree({
    outer: level(MiB, 'max', MiB), // above the gap: another hierarchy's business, never read
    'outer/gap': { 'cgroup.procs': '' },
    'outer/gap/g': level(GiB, 'max', 100 * MiB),
  });
  const h = headroomOf(BIG, readMemoryLimits(join(root, 'outer/gap/g'), 64 * GiB, 0));
  t.equal(h.available, 924 * MiB);
  t.equal(h.total, GiB);
});

t.test('v2: swap limits bound the swap, which the machine bounds in turn', async (t) => {
  const root = tree({
    a: { ...level('max', 'max', 0), 'memory.swap.max': String(2 * GiB), 'memory.swap.current': String(1536 * MiB) },
    'a/b': { ...level('max', 'max', 0), 'memory.swap.max': String(GiB), 'memory.swap.current': String(256 * MiB) },
  });
  const b = join(root, 'a/b');
  const withSwap = meminfo({ MemTotal: 64 * GiB, MemAvailable: 60 * GiB, SwapTotal: 8 * GiB, SwapFree: 6 * GiB });
  const h = headroomOf(withSwap, readMemoryLimits(b, 64 * GiB, 8 * GiB));
  t.equal(h.swapTotal, GiB, 'the smallest swap.max');
  t.equal(h.swapFree, 512 * MiB, "the parent's: 2048 - 1536");
  const tight = meminfo({ MemTotal: 64 * GiB, MemAvailable: 60 * GiB, SwapTotal: 8 * GiB, SwapFree: 100 * MiB });
  t.equal(headroomOf(tight, readMemoryLimits(b, 64 * GiB, 8 * GiB)).swapFree, 100 * MiB, 'SwapFree bounds it');
  const rec = recording();
  const none = headroomOf(BIG, readMemoryLimits(b, 64 * GiB, 0, rec.read));
  t.same([none.swapFree, none.swapTotal], [0, 0], 'without swap on the machine, none');
  t.notOk(
    rec.files.some((f) => f.includes('swap')),
    'and no swap file is read',
  );
});

t.test('not a memory cgroup: ERR_PIDFD_NO_MEMORY_CGROUP', async (t) => {
  const root = tree({ plain: { 'cgroup.procs': '' } });
  t.throws(() => readHeadroom(join(root, 'plain')), { code: 'ERR_PIDFD_NO_MEMORY_CGROUP' });
  t.throws(() => readHeadroom(join(root, 'missing')), { code: 'ERR_PIDFD_NO_MEMORY_CGROUP' });
  t.equal(readOomKills(join(root, 'plain')), undefined, 'no OOM counter there either');
});

t.test('OOM counters: memory.events, memory.oom_control, /proc/vmstat', async (t) => {
  const root = tree({
    v2: { ...level('max', 'max', 0), 'memory.events': 'low 0\nhigh 3\nmax 9\noom 2\noom_kill 2\noom_group_kill 0' },
    v1: { 'memory.oom_control': 'oom_kill_disable 0\nunder_oom 0\noom_kill 5' },
  });
  t.equal(readOomKills(join(root, 'v2')), 2);
  t.equal(readOomKills(join(root, 'v1')), 5);
  const vm = Number(/^oom_kill (\d+)$/m.exec(readFileSync('/proc/vmstat', 'latin1'))?.[1]);
  t.equal(readOomKills(), vm, "the system's: /proc/vmstat oom_kill");
});

t.test('kept descriptors read the current text of a file each time', async (t) => {
  const root = tree({ g: level(GiB, 'max', 100 * MiB) });
  const files = new KeptFiles();
  t.teardown(() => files.close());
  const f = join(root, 'g/memory.current');
  t.equal(files.read(f), `${100 * MiB}\n`);
  writeFileSync(f, `${200 * MiB}\n`);
  t.equal(files.read(f), `${200 * MiB}\n`, 'the new text, read again from offset 0');
  t.equal(files.read(join(root, 'g/nope')), undefined, 'an absent file');
  const big = join(root, 'big');
  writeFileSync(big, 'x'.repeat(20000));
  t.equal(files.read(big)?.length, 20000, 'a file larger than the first buffer, whole');
  const mi = files.read('/proc/meminfo')!;
  t.match(mi, /^MemTotal:/, '/proc/meminfo through a kept descriptor');
  t.equal(files.read('/proc/meminfo')!.split('\n').length, mi.split('\n').length, 'read again whole');
});

if (!memoryV1Root()) {
  t.skip(
    'no cgroup v1 memory controller: the v1 budget and kernel OOM tests need memory groups of their own',
    () => {},
  );
} else {
  v1();
}

async function worker(group: string): Promise<Worker> {
  const w = await new Worker([join(group, 'cgroup.procs')]).ready();
  workers.push(w);
  return w;
}

function near(t: Test, got: number, want: number, slack: number, what: string): void {
  t.ok(Math.abs(got - want) <= slack, `${what}: ${(got / MiB).toFixed(1)} MiB, expected ${(want / MiB).toFixed(1)}`);
}

function v1(): void {
  t.test('v1: a group with a limit; its workers use it up', async (t) => {
    const g = makeV1MemoryGroup('budget-a', 256 * MiB)!;
    const w = await worker(g);
    const h0 = readHeadroom(g);
    t.equal(h0.source, 'cgroup-v1');
    t.equal(h0.total, 256 * MiB);
    t.equal(h0.limitedBy, join(g, 'memory.limit_in_bytes'));
    const kept = new Budget(g);
    kept.open();
    t.teardown(() => kept.close());
    const k0 = kept.headroom();
    await w.ask('a 96', 'anon');
    const h1 = readHeadroom(g);
    near(t, h0.available - h1.available, 96 * MiB, 8 * MiB, 'headroom taken by 96 MiB of anonymous memory');
    const k1 = kept.headroom();
    near(t, k0.available - k1.available, 96 * MiB, 8 * MiB, 'the same through descriptors kept open');
    t.equal(k1.limitedBy, h1.limitedBy);
  });

  t.test('v1: a group removed under the kept descriptors is reported as no memory cgroup', async (t) => {
    const parent = makeV1MemoryGroup('budget-rm', 128 * MiB)!;
    const g = join(parent, 'gone');
    mkdirSync(g);
    const kept = new Budget(g);
    kept.open();
    t.teardown(() => kept.close());
    t.equal(kept.headroom().total, 128 * MiB);
    rmdirSync(g);
    t.throws(() => kept.headroom(), { code: 'ERR_PIDFD_NO_MEMORY_CGROUP' });
    t.equal(kept.kernelOom(readHeadroom(parent), 0, false), undefined, 'and no OOM-kill report from it');
  });

  t.test("v1: a child without a limit reports its parent's, which binds on the parent's usage", async (t) => {
    const parent = makeV1MemoryGroup('budget-p', 256 * MiB)!;
    const child = join(parent, 'child');
    const sibling = join(parent, 'sibling');
    mkdirSync(child);
    mkdirSync(sibling);
    const stat = readFileSync(join(child, 'memory.stat'), 'latin1');
    t.match(stat, new RegExp(`^hierarchical_memory_limit ${256 * MiB}$`, 'm'), "the kernel's view: the parent's");
    const h0 = readHeadroom(child);
    t.equal(h0.total, 256 * MiB, "the parent's limit");
    t.equal(h0.limitedBy, join(parent, 'memory.limit_in_bytes'), 'named with its directory');
    const s = await worker(sibling);
    await s.ask('a 96', 'anon');
    const h1 = readHeadroom(child);
    near(t, h0.available - h1.available, 96 * MiB, 8 * MiB, "a sibling's memory counts against the child");
    await s.kill();
    await until(() => readHeadroom(child).available > h1.available + 64 * MiB, 'the sibling memory uncharged');
  });

  t.test('v1: page cache read by a worker counts as available (inactive file)', async (t) => {
    // On a disk (page cache, not tmpfs's shmem) and clean (fsync'ed), so the worker's read brings the pages in anew.
    const TMPFS_MAGIC = 0x01021994;
    const base = [tmpdir(), join(__dirname, '..', '..', 'build')].find((d) => statfsSync(d).type !== TMPFS_MAGIC);
    if (base === undefined) return t.skip('no disk-backed directory for a page-cache file', () => {});
    const dir = mkdtempSync(join(base, 'pidfd-budget-cache-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const file = join(dir, 'cache-64m');
    const fd = openSync(file, 'w');
    for (let i = 0; i < 64; i++) writeSync(fd, Buffer.alloc(MiB, 1));
    fsyncSync(fd);
    closeSync(fd);
    const g = makeV1MemoryGroup('budget-c', 256 * MiB)!;
    const w = await worker(g);
    const usage = (): number => Number(readFileSync(join(g, 'memory.usage_in_bytes'), 'latin1'));
    const u0 = usage();
    const h0 = readHeadroom(g);
    await w.ask(`f ${file}`, 'file');
    const u1 = usage();
    const h1 = readHeadroom(g);
    near(t, u1 - u0, 64 * MiB, 8 * MiB, 'the group was charged the file pages');
    const inactive = Number(/^total_inactive_file (\d+)$/m.exec(readFileSync(join(g, 'memory.stat'), 'latin1'))![1]);
    t.ok(inactive >= 56 * MiB, `they are inactive file pages: ${(inactive / MiB).toFixed(1)} MiB`);
    t.ok(
      h0.available - h1.available < 8 * MiB,
      `the headroom barely moved: ${((h0.available - h1.available) / MiB).toFixed(1)} MiB`,
    );
  });

  t.test('v1: the kernel OOM-kills a worker past the cap: the killer emits kernel-oom, count 1', async (t) => {
    const g = makeV1MemoryGroup('budget-oom', 64 * MiB)!;
    const systemBefore = readOomKills()!;
    t.equal(readOomKills(g), 0, 'a new group: no OOM kill yet');
    // minAvailable 0 can never be crossed: the killer only watches, so the kernel is the one to act.
    const lmk = new LowMemoryKiller({
      candidates: { cgroup: g },
      memory: { cgroup: g },
      minAvailable: 0,
      interval: 20,
    });
    t.teardown(() => lmk.stop());
    const seen: KernelOomEvent[] = [];
    lmk.on('kernel-oom', (e) => seen.push(e));
    lmk.on('kill', () => t.fail('the killer itself killed'));
    lmk.start();
    const w = await worker(g);
    const died = exited(w.proc);
    w.proc.stdin!.write('a 128\n');
    t.same(await died, [null, 'SIGKILL'], 'the kernel killed the worker');
    await until(() => seen.length > 0, 'a kernel-oom event');
    await sleep(100); // a few more samples: the kill is reported once
    t.equal(seen.length, 1, 'one event');
    t.equal(seen[0].count, 1, 'count 1');
    t.equal(seen[0].kills, 1);
    t.equal(seen[0].total, 64 * MiB, "with the budget's size");
    t.equal(lmk.kernelOomKills, 1, 'kernelOomKills: 1');
    t.equal(readOomKills(g), 1, "the group's memory.oom_control says 1");
    t.ok(readOomKills()! >= systemBefore + 1, 'and /proc/vmstat counted it too');
  });

  t.test('v1: nothing killed, nothing emitted', async (t) => {
    const g = makeV1MemoryGroup('budget-nooom', 64 * MiB)!;
    const lmk = new LowMemoryKiller({
      candidates: { cgroup: g },
      memory: { cgroup: g },
      minAvailable: 0,
      interval: 20,
    });
    t.teardown(() => lmk.stop());
    const seen: KernelOomEvent[] = [];
    lmk.on('kernel-oom', (e) => seen.push(e));
    lmk.start();
    const w = await worker(g);
    await w.ask('a 32', 'anon');
    await sleep(200);
    await lmk.check();
    t.same(seen, [], 'no kernel-oom event');
    t.equal(lmk.kernelOomKills, 0);
    t.equal(readOomKills(g), 0);
    t.ok(w.proc.exitCode === null && w.proc.signalCode === null, 'the worker lives');
  });
}
