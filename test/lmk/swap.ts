// The killer on real swap: a zram swap device set up by this file (512 MiB, mkswap, swapon) and torn down again
// whatever happens, under workers in a cgroup v1 memory group of their own (192 MiB hard limit, swappiness 100):
// one bystander and one hog that grows 32 MiB at a time. Shown here: minAvailable alone kills at the group's limit
// although swap has room; with `when: 'all'` and minSwapFree the same workload runs on into swap and is killed
// once free swap falls below the threshold; the swap rule alone decides on its own (through the CLI); `when:
// 'any'` acts on the first rule to cross; ranking counts swapped-out memory; the reclaim step pages anonymous
// memory out to swap; the start() loop under `when: 'all'` samples with timers, not the native sampler, while only
// the memory rule is low.
//
// Swap is machine-wide: while it is on, every memory cgroup at its limit swaps instead of meeting the kernel's OOM
// killer, which changes what any test running beside this one measures. So it runs only when asked
// (PIDFD_TEST_SWAP=1, `npm run test:swap`, on its own), and then a setup that cannot be made is a failure.
//
// Evaluations are driven with check() after each step of the hog has finished (as test/lmk/killer.ts does), so a
// decision is about the measurement after a known amount of memory, not about how fast the hog allocates; the
// CLI and the start() loop decide on their own.
import t, { type Test } from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { KillEvent, LowMemoryKiller, LowMemoryKillerOptions, PidFd, readHeadroom, readOomKills } from '../../lib/index';
import { startCli } from '../helpers/cli';
import { exited } from '../helpers/procs';
import {
  budgetWorker,
  makeV1MemoryGroup,
  memoryV1Root,
  recordEvents,
  removeAllGroups,
  sleep,
  Worker,
} from '../helpers/mem-helpers';

const MiB = 2 ** 20;
const ZRAM = 'zram0';
const DEVICE = `/dev/${ZRAM}`;
const SYSFS = `/sys/block/${ZRAM}`;
const ZRAM_SIZE = 512 * MiB; // the device; the swap on it is a page smaller (mkswap's header)
const LIMIT = 192 * MiB;
const STEP = 32; // MiB per step of the hog
// The kernel OOM-kills in the group only once memory and swap are both full (192 + 512 MiB): no workload here
// goes that far.
const MAX_HOG = 544;
const MIN_AVAILABLE = '10%'; // of the 192 MiB limit: 19.2 MiB
const MIN_SWAP_FREE = '50%'; // of the 512 MiB swap: 256 MiB
let SWAP_SIZE = 0; // SwapTotal once on
let SWAP_THRESHOLD = 0;

const fmt = (b: number): string => `${(b / MiB).toFixed(1)} MiB`;

function tool(name: string): string | undefined {
  return ['/usr/sbin', '/sbin', '/usr/bin', '/bin'].map((d) => join(d, name)).find((p) => existsSync(p));
}

function run(cmd: string, args: string[]): string | undefined {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.status === 0) return undefined;
  return `${cmd} ${args.join(' ')} failed (${r.error?.message ?? `exit ${r.status}`}): ${r.stderr.trim()}`;
}

function activeSwaps(): string[] {
  const lines = readFileSync('/proc/swaps', 'utf8').trim().split('\n').slice(1);
  return lines.filter(Boolean).map((l) => l.split(/\s+/)[0]);
}

function meminfo(key: string): number {
  const m = new RegExp(`^${key}:\\s+(\\d+) kB$`, 'm').exec(readFileSync('/proc/meminfo', 'utf8'));
  return m === null ? 0 : Number(m[1]) * 1024;
}

// What this file turned on, so that teardown undoes exactly that.
const made = { sized: false, on: false };

/** Turns zram swap on; undefined, or what was missing. */
function setUpSwap(): string | undefined {
  if (process.getuid?.() !== 0) return 'root is needed to turn swap on (swapon)';
  const on = activeSwaps();
  if (on.length > 0) return `swap is already on (${on.join(', ')} in /proc/swaps): this test needs the only swap`;
  if (memoryV1Root() === undefined) return 'no cgroup v1 memory controller: the workloads need a memory group';
  if (!existsSync(SYSFS)) return `no ${DEVICE} (load the zram module: modprobe zram)`;
  const size = Number(readFileSync(join(SYSFS, 'disksize'), 'utf8'));
  if (size !== 0) return `${DEVICE} is in use (disksize ${size})`;
  const [mkswap, swapon, swapoff] = [tool('mkswap'), tool('swapon'), tool('swapoff')];
  if (!mkswap || !swapon || !swapoff) return 'mkswap, swapon and swapoff are needed (util-linux)';
  writeFileSync(join(SYSFS, 'disksize'), String(ZRAM_SIZE));
  made.sized = true;
  const failed = run(mkswap, [DEVICE]) ?? run(swapon, ['--priority', '100', DEVICE]);
  if (failed !== undefined) return failed;
  made.on = true;
  SWAP_SIZE = meminfo('SwapTotal');
  SWAP_THRESHOLD = SWAP_SIZE / 2;
  if (SWAP_SIZE === 0) return `swapon ${DEVICE} succeeded but /proc/meminfo shows no SwapTotal`;
  return undefined;
}

/** Undoes setUpSwap; what could not be undone. */
function tearDownSwap(): string[] {
  const left: string[] = [];
  if (made.on) {
    const failed = run(tool('swapoff') ?? 'swapoff', [DEVICE]);
    if (failed !== undefined) left.push(failed);
    else made.on = false;
  }
  if (made.sized && !made.on) {
    try {
      writeFileSync(join(SYSFS, 'reset'), '1');
      made.sized = false;
    } catch (err) {
      left.push(`${SYSFS}/reset: ${(err as Error).message}`);
    }
  }
  return left;
}

const workers: Worker[] = [];

if (process.env.PIDFD_TEST_SWAP !== '1') {
  t.skip(
    'swap is machine-wide (memory cgroups at their limit would swap instead of meeting the OOM killer in every test ' +
      'beside this one): run it alone with `npm run test:swap` (root and zram needed)',
    () => {},
  );
} else {
  t.teardown(async () => {
    for (const w of workers) await w.kill();
    await removeAllGroups();
    const left = tearDownSwap();
    // The machine is left as it was found, or the run says loudly what is left.
    if (left.length > 0) console.error(`test/lmk/swap.ts could not undo its swap: ${left.join('; ')}`);
  });
  const problem = setUpSwap();
  if (problem !== undefined) t.fail(`swap setup: ${problem}`);
  else main();
}

/** A 192 MiB group that swaps as readily as it reclaims page cache. Its workers die and it goes at the end of `tt`:
 *  swap is shared, so what one test left in it would count against the next. */
function group(tt: Test, tag: string): string {
  tt.teardown(async () => {
    for (const w of workers.splice(0)) await w.kill();
    await removeAllGroups();
  });
  const g = makeV1MemoryGroup(`swap-${tag}`, LIMIT)!;
  writeFileSync(join(g, 'memory.swappiness'), '100');
  return g;
}

/** The group's own swap (memory.stat `swap`), in bytes. */
function groupSwap(g: string): number {
  const m = /^swap (\d+)$/m.exec(readFileSync(join(g, 'memory.stat'), 'utf8'));
  return m === null ? 0 : Number(m[1]);
}

const alive = (w: Worker): boolean => w.proc.exitCode === null && w.proc.signalCode === null;

interface Step {
  hog: number; // MiB the hog holds
  available: number;
  swapFree: number;
  groupSwap: number;
  kill: KillEvent | undefined;
}

/** Grows the hog STEP MiB at a time, with one check() after each step, until a kill or MAX_HOG MiB. */
async function grow(lmk: LowMemoryKiller, log: { type: string; e: any }[], hog: Worker, g: string): Promise<Step[]> {
  const steps: Step[] = [];
  for (let mib = STEP; mib <= MAX_HOG; mib += STEP) {
    await hog.ask(`a ${STEP}`, 'anon');
    const h = lmk.headroom();
    const swapped = groupSwap(g);
    const seen = log.length;
    await lmk.check();
    const kill = log.slice(seen).find((x) => x.type === 'kill')?.e as KillEvent | undefined;
    steps.push({ hog: mib, available: h.available, swapFree: h.swapFree, groupSwap: swapped, kill });
    if (kill !== undefined) break;
  }
  return steps;
}

const describe = (s: Step): string =>
  `hog ${s.hog} MiB: available ${fmt(s.available)}, swap free ${fmt(s.swapFree)}, the group's swap ${fmt(s.groupSwap)}`;

/** The free swap a rule reason states, in bytes. */
function reasonSwapFree(reason: string): number {
  const m = /swap free ([\d.]+) MiB/.exec(reason);
  return m === null ? NaN : Number(m[1]) * MiB;
}

/** The next `kill` event; rejects after a guard, so a kill that never comes fails instead of hanging. */
function untilEvent(lmk: LowMemoryKiller, type: 'kill'): Promise<KillEvent> {
  return new Promise((resolve, reject) => {
    const guard = setTimeout(() => reject(new Error(`no ${type} event within 30 s`)), 30_000);
    lmk.once(type, (e) => {
      clearTimeout(guard);
      resolve(e);
    });
  });
}

function killer(g: string, extra: Partial<LowMemoryKillerOptions>): LowMemoryKiller {
  return new LowMemoryKiller({ candidates: { cgroup: g }, memory: { cgroup: g }, reclaim: false, ...extra });
}

function main(): void {
  t.test('minAvailable alone kills at the limit although swap has room', async (t) => {
    const g = group(t, 'mem');
    const bystander = await budgetWorker(workers, g, 0, STEP);
    const hog = await budgetWorker(workers, g, 0, 0);
    const lmk = killer(g, { minAvailable: MIN_AVAILABLE });
    t.teardown(() => lmk.stop());
    const log = recordEvents(lmk);
    t.equal(lmk.headroom().swapTotal, SWAP_SIZE, 'the budget sees the zram swap');
    const steps = await grow(lmk, log, hog, g);
    const last = steps[steps.length - 1];
    t.ok(last.kill, `a kill: ${describe(last)}`);
    if (!last.kill) return;
    t.equal(last.kill.pid, hog.pid, 'the hog');
    t.match(last.kill.reason, /^available [\d.]+ MiB < 19\.2 MiB$/);
    t.ok(last.available < LIMIT / 10, 'at the limit');
    t.ok(last.swapFree > SWAP_THRESHOLD, `with ${fmt(SWAP_SIZE - last.swapFree)} of swap used: more than half free`);
    t.comment(`swap used at the kill: ${fmt(SWAP_SIZE - last.swapFree)} (the group's ${fmt(last.groupSwap)})`);
    t.equal(readOomKills(g), 0, "the kernel's OOM killer did not act");
    t.ok(alive(bystander), 'the bystander lives');
  });

  t.test("when 'all' with minSwapFree: past the limit into swap, killed once free swap is short", async (t) => {
    const g = group(t, 'all');
    const bystander = await budgetWorker(workers, g, 0, STEP);
    const hog = await budgetWorker(workers, g, 0, 0);
    const lmk = killer(g, { minAvailable: MIN_AVAILABLE, minSwapFree: MIN_SWAP_FREE, when: 'all' });
    t.teardown(() => lmk.stop());
    const log = recordEvents(lmk);
    const steps = await grow(lmk, log, hog, g);
    const last = steps[steps.length - 1];
    const before = steps.slice(0, -1);
    t.ok(last.kill, `a kill: ${describe(last)}`);
    if (!last.kill) return;
    const atLimit = before.filter((s) => s.available < LIMIT / 10);
    t.ok(atLimit.length >= 2, `not killed at the limit: ${atLimit.map(describe).join('; ')}`);
    t.ok(
      before.every((s) => s.swapFree >= SWAP_THRESHOLD),
      'no kill while free swap was above the threshold',
    );
    t.same(log.filter((x) => x.type === 'pressure').length, 1, 'one episode: the first time both rules said low');
    t.equal(last.kill.pid, hog.pid, 'the hog');
    t.match(last.kill.reason, /^available [\d.]+ MiB < 19\.2 MiB, swap free [\d.]+ MiB < 256\.0 MiB$/);
    const used = SWAP_SIZE - reasonSwapFree(last.kill.reason);
    t.ok(
      used > SWAP_THRESHOLD,
      `swap used at the kill ${fmt(used)}: past the threshold (the group's ${fmt(last.groupSwap)})`,
    );
    t.equal(readOomKills(g), 0, "the kernel's OOM killer did not act");
    t.same(await exited(hog.proc), [null, 'SIGKILL']);
    t.ok(alive(bystander), 'the bystander lives');
    t.comment(
      `kill: ${fmt(last.kill.bytesFreed)} of memory back (PSS ${fmt(last.kill.pss)}), regained ${last.kill.regained}`,
    );
  });

  t.test("when 'any' with both rules: the memory rule crosses first and decides", async (t) => {
    const g = group(t, 'any');
    const bystander = await budgetWorker(workers, g, 0, STEP);
    const hog = await budgetWorker(workers, g, 0, 0);
    const lmk = killer(g, { minAvailable: MIN_AVAILABLE, minSwapFree: MIN_SWAP_FREE, when: 'any' });
    t.teardown(() => lmk.stop());
    const log = recordEvents(lmk);
    const steps = await grow(lmk, log, hog, g);
    const last = steps[steps.length - 1];
    t.ok(last.kill, `a kill: ${describe(last)}`);
    if (!last.kill) return;
    t.equal(last.kill.pid, hog.pid);
    t.match(last.kill.reason, /^available [\d.]+ MiB < 19\.2 MiB, swap free [\d.]+ MiB >= 256\.0 MiB$/);
    t.ok(last.swapFree >= SWAP_THRESHOLD, `killed with swap free ${fmt(last.swapFree)}`);
    t.comment(`swap used at the kill: ${fmt(SWAP_SIZE - last.swapFree)}`);
    t.equal(readOomKills(g), 0);
    t.ok(alive(bystander));
  });

  t.test('the swap rule alone decides on its own: pidfd lmk --min-swap-free 50%', async (t) => {
    const g = group(t, 'cli');
    const bystander = await budgetWorker(workers, g, 0, STEP);
    const hog = await budgetWorker(workers, g, 0, 0);
    const cli = startCli('lmk', '--cgroup', g, '--min-swap-free', MIN_SWAP_FREE, '--no-reclaim', '--json');
    t.teardown(() => {
      cli.child.kill('SIGKILL');
    });
    const start = JSON.parse(await cli.out.waitFor((l) => l.includes('"event":"start"'), 'the start record'));
    t.equal(start.threshold, null, 'no minAvailable rule');
    t.equal(start.headroom.swapTotal, SWAP_SIZE);
    // The CLI decides on its own timer: the hog is simply grown until it is killed (an allocation may be cut short).
    const atLimit: string[] = [];
    for (let mib = STEP; mib <= MAX_HOG && alive(hog); mib += STEP) {
      try {
        await hog.ask(`a ${STEP}`, 'anon');
      } catch {
        break; // killed in the middle of the step
      }
      const h = readHeadroom(g);
      if (h.available < LIMIT / 10 && h.swapFree >= SWAP_THRESHOLD * 1.1)
        atLimit.push(`hog ${mib} MiB: ${fmt(h.available)} available, ${fmt(h.swapFree)} swap free`);
      await sleep(100); // a step at a time, as a growing service would
    }
    const kill = JSON.parse(await cli.out.waitFor((l) => l.includes('"event":"kill"'), 'the kill record'));
    t.same(await exited(hog.proc), [null, 'SIGKILL'], 'the hog was killed');
    t.ok(
      atLimit.length >= 2,
      `the group sat at its limit with swap free, and nothing was killed: ${atLimit.join('; ')}`,
    );
    t.equal(kill.pid, hog.pid);
    t.match(kill.reason, /^swap free [\d.]+ MiB < 256\.0 MiB$/, 'the swap rule alone');
    const records = cli.out.all.filter((l) => l.startsWith('{')).map((l) => JSON.parse(l));
    const pressure = records.filter((r) => r.event === 'pressure');
    t.equal(pressure.length, 1, 'one episode');
    t.match(pressure[0].reason, /^swap free [\d.]+ MiB < 256\.0 MiB$/);
    t.comment(`swap used at the kill: ${fmt(SWAP_SIZE - reasonSwapFree(kill.reason))}`);
    t.same(
      records.filter((r) => r.event === 'kernel-oom'),
      [],
      "the kernel's OOM killer did not act",
    );
    t.equal(readOomKills(g), 0);
    t.ok(alive(bystander), 'the bystander lives');
    cli.child.kill('SIGINT');
    t.equal((await cli.done).status, 0);
  });

  t.test('ranking counts swap: a mostly swapped-out process ranks above a larger RSS', async (t) => {
    const g = group(t, 'rank');
    const swapped = await budgetWorker(workers, g, 0, 128);
    const p = PidFd.open(swapped.pid);
    t.teardown(() => p.close());
    const r = p.reclaim({ kinds: ['anon'] }); // to zram
    const resident = await budgetWorker(workers, g, 0, 96);
    const lmk = killer(g, { minAvailable: '100%' });
    t.teardown(() => lmk.stop());
    const ranked = await lmk.candidates();
    const [a, b] = [ranked.find((c) => c.pid === swapped.pid)!, ranked.find((c) => c.pid === resident.pid)!];
    t.comment(
      `paged out ${fmt(r.rssBefore - r.rssAfter)}; swapped: RSS ${fmt(a.memory.rss)} + swap ${fmt(a.memory.swap)}, ` +
        `resident: RSS ${fmt(b.memory.rss)} + swap ${fmt(b.memory.swap)}`,
    );
    t.ok(a.memory.swap >= 100 * MiB && a.memory.rss < b.memory.rss, 'mostly in swap, a smaller RSS');
    t.ok(a.size > b.size, 'but the larger RSS + swap');
    t.same(
      ranked.map((c) => c.pid),
      [swapped.pid, resident.pid],
      'ranked first',
    );
    const score = (pid: number): number => Number(readFileSync(`/proc/${pid}/oom_score`, 'utf8'));
    t.ok(score(swapped.pid) > score(resident.pid), "the kernel's oom_score agrees");
    const log = recordEvents(lmk);
    await lmk.check();
    const kill = log.find((x) => x.type === 'kill')?.e as KillEvent | undefined;
    t.equal(kill?.pid, swapped.pid, 'and killed first');
    t.ok(alive(resident), 'the larger RSS lives');
  });

  t.test('the reclaim step pages anonymous memory out to swap, and nobody dies', async (t) => {
    const g = group(t, 'reclaim');
    const bystander = await budgetWorker(workers, g, 0, STEP);
    const hog = await budgetWorker(workers, g, 0, 128);
    const swapBefore = groupSwap(g);
    const lmk = killer(g, { minAvailable: 48 * MiB, reclaim: {} });
    t.teardown(() => lmk.stop());
    const log = recordEvents(lmk);
    const h = lmk.headroom();
    t.ok(h.available < 48 * MiB, `${fmt(h.available)} available: below the bound`);
    await lmk.check();
    const reclaims = log.filter((x) => x.type === 'reclaim').map((x) => x.e);
    const forHog = reclaims.find((e) => e.pid === hog.pid);
    t.ok(forHog, 'the hog was advised');
    t.ok(
      reclaims.every((e) => e.anon === true),
      'anonymous memory advised (anon: auto, with swap)',
    );
    if (forHog) {
      t.ok(
        forHog.rssAfter < forHog.rssBefore / 4,
        `the hog's RSS ${fmt(forHog.rssBefore)} -> ${fmt(forHog.rssAfter)} (advised ${fmt(forHog.advised)})`,
      );
    }
    t.ok(groupSwap(g) - swapBefore >= 100 * MiB, `${fmt(groupSwap(g) - swapBefore)} went to swap`);
    t.same(
      log.filter((x) => x.type === 'kill'),
      [],
      'no kill: reclaim ended the episode',
    );
    t.ok(
      log.some((x) => x.type === 'recovered'),
      'recovered',
    );
    t.ok(alive(hog) && alive(bystander));
  });

  t.test(
    "the start() loop with 'all': while memory is short and swap is not, timers sample, then it kills",
    async (t) => {
      const g = group(t, 'loop');
      const bystander = await budgetWorker(workers, g, 0, STEP);
      const hog = await budgetWorker(workers, g, 0, 0);
      const lmk = killer(g, { minAvailable: MIN_AVAILABLE, minSwapFree: MIN_SWAP_FREE });
      let samples = 0;
      const headroom = lmk.headroom.bind(lmk);
      lmk.headroom = () => {
        samples++;
        return headroom();
      };
      const log = recordEvents(lmk);
      lmk.start();
      t.teardown(() => lmk.stop());
      await lmk.check();
      t.equal(lmk.sampling, 'native', 'far from the threshold: the native sampler watches');
      for (let mib = STEP; mib <= 192; mib += STEP) await hog.ask(`a ${STEP}`, 'anon');
      await lmk.check();
      t.ok(lmk.headroom().available < LIMIT / 10, 'at the limit');
      t.equal(log.filter((x) => x.type === 'kill').length, 0, 'swap has room: no kill');
      // The memory rule is low already: a sampler armed on it would fire at once, every time it was re-armed.
      t.equal(lmk.sampling, 'timers', 'the sampler is not armed on a bound that already holds');
      t.match(lmk.samplingReason, /memory rule/);
      const n0 = samples;
      const cpu0 = process.cpuUsage();
      await sleep(1000);
      const cpu = process.cpuUsage(cpu0);
      t.comment(
        `${samples - n0} measurements and ${((cpu.user + cpu.system) / 1000).toFixed(0)} ms of CPU in 1 s ` +
          'while waiting on the swap rule',
      );
      const killed = untilEvent(lmk, 'kill');
      for (let mib = 224; mib <= MAX_HOG && alive(hog); mib += STEP) {
        try {
          await hog.ask(`a ${STEP}`, 'anon');
        } catch {
          break;
        }
      }
      const kill = await killed;
      t.equal(kill.pid, hog.pid);
      t.same(await exited(hog.proc), [null, 'SIGKILL'], 'the loop killed the hog');
      await new Promise((r) => (lmk.pressured ? lmk.once('recovered', r) : r(undefined)));
      t.match(kill.reason, /swap free [\d.]+ MiB < 256\.0 MiB$/);
      await lmk.check();
      t.equal(lmk.sampling, 'native', 'recovered: the sampler watches again');
      t.ok(alive(bystander));
      t.equal(readOomKills(g), 0);
    },
  );
}
