// release() (process_mrelease) on real processes holding 1 GiB.
// release() after kill('SIGKILL') on a child that touched 1 GiB: its anonymous RSS, read from /proc,
// is near zero right after, before anyone reaps it; on a live, non-dying process release() throws EINVAL.
import t, { Test } from 'tap';
import { ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { PidFd } from '../../lib/index';
import { Lines, ended } from '../helpers/lines';
import { fixture, procState, sleeper, track, until } from '../helpers/procs';

const MIB = 1024 * 1024;
const HOG_MIB = 1024;
/** What "it touched 1 GiB" must show: nearly all of it resident (THP or not, it is all anonymous). */
const TOUCHED = 1000 * MIB;
/** What "near zero" means after release: the kernel's per-CPU RSS counters may lag by a few pages per CPU. */
const NEAR_ZERO = 16 * MIB;

/**
 * Anonymous RSS in bytes, from /proc/<pid>/status. The file must exist: every hog here stays unreaped (its parent
 * reaps only when told to), so the pid cannot have been recycled while we read. A task whose memory is gone (it
 * passed exit_mm: a zombie, or dying) has no Vm and Rss lines at all: that counts as 0.
 */
function rssAnon(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const m = /^RssAnon:\s+(\d+) kB$/m.exec(status);
  return m ? Number(m[1]) * 1024 : 0;
}

const mib = (bytes: number): string => `${(bytes / MIB).toFixed(1)} MiB`;

interface Hog {
  holder: ChildProcess;
  out: Lines;
  /** The hog's pid: a child of `holder`, which does not reap it until `reap()`. */
  pid: number;
  /** Makes the holder reap the hog (once it was killed); resolves with its "reaped" line. */
  reap(): Promise<string>;
}

/** test/fixtures/release-hog.c: a holder process and its child, the hog, with 1 GiB touched (charged to the
 *  memory cgroup whose cgroup.procs is given). */
async function hog(t: Test, cgroupProcs?: string): Promise<Hog> {
  const args = [String(HOG_MIB), ...(cgroupProcs ? [cgroupProcs] : [])];
  const holder = track(spawn(fixture('release-hog'), args, { stdio: ['ignore', 'pipe', 'inherit'] }));
  t.teardown(async () => {
    holder.kill('SIGTERM'); // it SIGKILLs and reaps the hog, then exits
    await ended(holder);
  });
  const out = new Lines(holder.stdout as Readable);
  const pid = Number((await out.waitFor((l) => l.startsWith('ready '), 'ready')).split(' ')[1]);
  return {
    holder,
    out,
    pid,
    reap: () => {
      holder.kill('SIGUSR2');
      return out.waitFor((l) => l.startsWith(`reaped pid=${pid} `), 'reaped');
    },
  };
}

/** Removes a cgroup directory once its last task is gone (that takes a moment after the reap). */
async function removeCgroup(dir: string): Promise<void> {
  for (let i = 0; ; i++) {
    try {
      rmdirSync(dir);
      return;
    } catch (err) {
      if (i >= 250) throw err;
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}

interface MemoryCgroup {
  procs: string;
  /** Anonymous memory charged to the cgroup (memory.stat "rss"): counted by page, whether or not its tasks still
   *  have an mm that /proc/<pid>/status could show. */
  anon(): number;
}

/** A cgroup v1 memory cgroup of our own, below ours; undefined where there is none we may create. */
function memoryCgroup(t: Test): MemoryCgroup | undefined {
  const line = readFileSync('/proc/self/cgroup', 'utf8')
    .split('\n')
    .find((l) => l.split(':')[1]?.split(',').includes('memory'));
  if (line === undefined) return undefined;
  const dir = join('/sys/fs/cgroup/memory', line.split(':').slice(2).join(':'), `pidfd-test-release-${process.pid}`);
  try {
    mkdirSync(dir);
  } catch {
    return undefined;
  }
  t.teardown(() => removeCgroup(dir)); // registered first, so it runs last: after every hog is reaped
  return {
    procs: join(dir, 'cgroup.procs'),
    anon: () => Number((/^rss (\d+)$/m.exec(readFileSync(join(dir, 'memory.stat'), 'utf8')) as RegExpExecArray)[1]),
  };
}

t.test('release() on a live process that is not dying throws EINVAL and frees nothing', async (t) => {
  const h = await hog(t);
  const p = PidFd.open(h.pid);
  const before = rssAnon(h.pid);
  t.ok(before >= TOUCHED, `the hog has touched its memory (${mib(before)})`);
  t.throws(() => p.release(), {
    code: 'EINVAL',
    errno: -22,
    syscall: 'process_mrelease',
    message: /^EINVAL: .*SIGKILL/,
  });
  const after = rssAnon(h.pid);
  t.ok(after >= TOUCHED, `its memory is still there (${mib(after)})`);
  t.ok(['S', 'R'].includes(procState(h.pid) as string), 'it is alive');
  t.equal(p.exited, false);
  p.close();
});

t.test('kill(SIGKILL) + release() gets 1 GiB back before anyone reaps the victim', async (t) => {
  const VICTIMS = 5;
  const cg = memoryCgroup(t);
  if (!cg) t.comment('no memory cgroup of our own here: checking /proc/<pid>/status only');
  let releasedCount = 0;
  for (let i = 0; i < VICTIMS; i++) {
    const h = await hog(t, cg?.procs);
    const p = PidFd.open(h.pid);
    const before = rssAnon(h.pid);
    t.ok(before >= TOUCHED, `victim ${i}: touched ${mib(before)}`);
    if (cg) t.ok(cg.anon() >= TOUCHED, `victim ${i}: its cgroup holds ${mib(cg.anon())} of anonymous memory`);

    t.equal(p.kill('SIGKILL'), true);
    const released = p.release();
    const after = rssAnon(h.pid);
    const cgAfter = cg?.anon();
    t.type(released, 'boolean');
    t.ok(existsSync(`/proc/${h.pid}`), "not reaped: the numbers read are the victim's own");
    t.ok(after < NEAR_ZERO, `victim ${i}: release() returned ${released}; anonymous RSS right after: ${mib(after)}`);
    if (released) {
      // We reaped its address space ourselves (the oom reaper's work, done in our context): the pages are free now.
      releasedCount++;
      if (cg)
        t.ok(
          (cgAfter as number) < NEAR_ZERO,
          `victim ${i}: its cgroup confirms: ${mib(cgAfter as number)} right after`,
        );
    } else {
      // ESRCH: the victim ran first and had already let go of its mm (exit_mm), so /proc shows no memory lines at
      // all ("missing" reads as 0 above); its own exit is freeing the pages, possibly still at this moment.
      t.notMatch(readFileSync(`/proc/${h.pid}/status`, 'utf8'), /^RssAnon:/m, 'ESRCH: the victim has no mm left');
      t.comment(`victim ${i}: release() found no mm (ESRCH); its cgroup held ${mib(cgAfter ?? 0)} right after`);
    }
    // Once it is a zombie (still unreaped), its exit has finished freeing everything.
    await until(() => p.exited, 'the victim to exit', 30_000);
    t.equal(procState(h.pid), 'Z');
    if (cg) t.ok(cg.anon() < NEAR_ZERO, `victim ${i}: the memory came back (${mib(cg.anon())} left in its cgroup)`);

    t.match(await h.reap(), `reaped pid=${h.pid} code=-1 signal=9`, 'it died of our SIGKILL');
    t.equal(p.release(), false, 'exited and reaped: false');
    t.same(await p.waitExit(), { pid: h.pid, code: null, signal: 'SIGKILL', source: 'pidfd-info' });
    p.close();
    t.throws(() => p.release(), { code: 'ERR_PIDFD_CLOSED' });
  }
  t.comment(
    `release() returned true for ${releasedCount} of ${VICTIMS} victims (false: the victim freed itself first)`,
  );
});

// The v1 freezer holds a SIGKILLed task where it is, so its memory stays mapped until someone else frees it: here
// the memory can only come back through release(). This proves the drop above is release()'s doing and not the
// victim's own exit winning the race.
const FREEZER = '/sys/fs/cgroup/freezer';
const freezerOk = existsSync(`${FREEZER}/cgroup.procs`) && process.getuid?.() === 0;

t.test(
  'release() alone frees the memory of a SIGKILLed victim that cannot run (cgroup v1 freezer)',
  { skip: freezerOk ? false : 'needs root and a cgroup v1 freezer' },
  async (t) => {
    const dir = `${FREEZER}/pidfd-test-release-${process.pid}`;
    mkdirSync(dir);
    t.teardown(() => removeCgroup(dir)); // teardowns run last-registered first: this one runs last
    const state = (): string => readFileSync(`${dir}/freezer.state`, 'utf8').trim();
    const h = await hog(t);
    // Runs before hog()'s own teardown: a frozen hog cannot die, so thaw it first or the holder waits forever.
    t.teardown(() => writeFileSync(`${dir}/freezer.state`, 'THAWED'));
    writeFileSync(`${dir}/cgroup.procs`, String(h.pid));
    writeFileSync(`${dir}/freezer.state`, 'FROZEN');
    for (let i = 0; state() !== 'FROZEN'; i++) {
      if (i > 1000) throw new Error(`the hog never froze: ${state()}`);
      await new Promise((r) => setTimeout(r, 10));
    }

    const p = PidFd.open(h.pid);
    t.ok(rssAnon(h.pid) >= TOUCHED, 'frozen hog holds 1 GiB');
    t.equal(p.kill('SIGKILL'), true);
    // Give the victim every chance to free its memory itself: it cannot, while frozen.
    await new Promise((r) => setTimeout(r, 200));
    const held = rssAnon(h.pid);
    t.ok(held >= TOUCHED, `SIGKILLed but frozen, it still holds ${mib(held)}`);
    t.equal(p.exited, false, 'and it has not exited');

    t.equal(p.release(), true, 'release() reaped it');
    const after = rssAnon(h.pid);
    t.ok(after < NEAR_ZERO, `its anonymous RSS right after release(): ${mib(after)}`);
    t.equal(p.exited, false, 'while it is still frozen, unable to exit');
    t.equal(p.release(), true, 'a second release() on the already-reaped victim: nothing left to do, still true');

    writeFileSync(`${dir}/freezer.state`, 'THAWED');
    t.match(await h.reap(), `reaped pid=${h.pid} code=-1 signal=9`, 'thawed, it finishes dying of SIGKILL');
    t.equal(p.release(), false, 'reaped: false');
    p.close();
  },
);

t.test('release() on a closed PidFd, and on a reaped child', async (t) => {
  const child = sleeper();
  t.teardown(() => {
    child.kill('SIGKILL');
  });
  const p = PidFd.fromChild(child);
  t.throws(() => p.release(), { code: 'EINVAL' }, 'a live sleeper is not dying');
  p.kill('SIGKILL');
  t.same(await ended(child), [null, 'SIGKILL']); // Node reaped it
  t.equal(p.release(), false, 'exited and reaped: false, not an error');
  p.close();
  t.throws(() => p.release(), { code: 'ERR_PIDFD_CLOSED' });
});
