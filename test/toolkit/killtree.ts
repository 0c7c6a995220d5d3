// killTree(): every process of a tree dead, nothing outside it signalled. Every tree runs under a subreaper
// harness (test/fixtures/tree-fixture.c) that sits outside the tree: orphans that escaped would be re-parented to
// it (and counted), and it records every signal it receives (killTree must send it none). Every process the tree
// ever started prints a "born" line with its start time, so the test can check each one is dead afterwards, whoever
// holds its pid now.
import { ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { Readable } from 'node:stream';
import t, { type Test } from 'tap';
import { PidFd } from '../../lib/pidfd';
import { statUnchecked as readStat } from '../../lib/procfs';
import { forceProcScan, killTree, KillTreeResult } from '../../lib/tree';
import { ensureDist } from '../helpers/dist';
import { ended, Lines } from '../helpers/lines';
import { fixture, track } from '../helpers/procs';

interface Born {
  pid: number;
  ppid: number;
  level: number;
  start: bigint;
}

class Harness {
  readonly out: Lines;
  constructor(
    readonly child: ChildProcess,
    readonly pid: number,
    readonly rootPid: number,
  ) {
    this.out = new Lines(child.stdout as Readable);
  }

  static async start(keepRoot: boolean, depth: number, fanout: number, flags: string): Promise<Harness> {
    const child = track(
      spawn(fixture('tree-fixture'), ['harness', keepRoot ? '1' : '0', String(depth), String(fanout), flags], {
        stdio: ['pipe', 'pipe', 'inherit'],
      }),
    );
    const h = new Harness(child, 0, 0);
    const first = await h.out.waitFor((l) => l.startsWith('harness '), 'harness');
    const pid = Number(first.split(' ')[1]);
    const root = await h.out.waitFor((l) => l.startsWith('born ') && l.split(' ')[3] === '0', 'the root born');
    Object.assign(h, { pid, rootPid: Number(root.split(' ')[1]) });
    return h;
  }

  born(): Born[] {
    return this.out.all
      .filter((l) => l.startsWith('born '))
      .map((l) => {
        const [, pid, ppid, level, start] = l.split(' ');
        return { pid: Number(pid), ppid: Number(ppid), level: Number(level), start: BigInt(start) };
      });
  }

  async waitBorn(count: number, maxLevel = 98): Promise<void> {
    await this.out.waitFor(() => this.born().filter((b) => b.level <= maxLevel).length >= count, `${count} born`);
  }

  /** The harness's live children: processes that escaped the tree and were re-parented to it. */
  async escaped(): Promise<number[]> {
    const n = this.out.all.length;
    this.child.stdin!.write('count\n');
    const line = await this.out.waitFor(
      (l) => l.startsWith('children ') && this.out.all.indexOf(l, n) >= n,
      'children',
    );
    return line.split(' ').slice(2).map(Number);
  }

  signals(): string[] {
    return this.out.all.filter((l) => l.startsWith('harness-sig '));
  }

  async end(): Promise<void> {
    this.child.stdin!.end();
    await ended(this.child);
  }
}

/** Whether the process that printed `b` is gone: no process has its pid, or one with another start time (a
 *  stranger that got the pid since), or it is a zombie. */
function dead(b: Born): boolean {
  const st = readStat(b.pid);
  return st === undefined || st.startTime !== b.start || st.state === 'Z';
}

async function checkAllDead(t: Test, h: Harness, r: KillTreeResult, what: string): Promise<void> {
  const escaped = await h.escaped(); // also makes sure every "born" line written before is in
  t.same(escaped, [], `${what}: no process escaped to the subreaper`);
  const born = h.born();
  const alive = born.filter((b) => !dead(b));
  t.same(alive, [], `${what}: all ${born.length} processes the tree started are dead`);
  const got = new Set(r.processes.map((m) => m.pid));
  const missed = born.filter((b) => !got.has(b.pid));
  t.same(missed, [], `${what}: every one of them is in the result`);
  t.same(h.signals(), [], `${what}: the harness (the root's parent, outside the tree) received no signal`);
}

/** Whether a member died of `sig` as far as the kernel can tell: its status comes from PIDFD_INFO_EXIT once its
 *  parent (the harness) reaps it, and is unknown (source 'none', never guessed) if that took longer than the reap
 *  grace, which happens on a heavily loaded machine. checkAllDead checks the deaths themselves. */
function diedOf(exit: { signal: string | null; source: string }, sig: string): boolean {
  return exit.signal === sig || (exit.source === 'none' && exit.signal === null);
}

t.test('a tree three levels deep whose members fork in a loop while the kill runs', async (t) => {
  const h = await Harness.start(false, 3, 2, 'loop');
  t.teardown(() => h.child.kill('SIGKILL'));
  await h.waitBorn(15 + 20); // 1 + 2 + 4 + 8 members, and some loop children already
  const r = await killTree(h.rootPid, { timeout: 5000 });
  t.equal(r.root, h.rootPid);
  t.equal(r.processes[0].pid, h.rootPid, 'root first');
  t.equal(r.escalated, false, 'everyone honoured SIGTERM');
  t.ok(r.processes.length >= 35, `${r.processes.length} processes`);
  // Members that printed "born" never exit by themselves: each must get SIGTERM. The short-lived loop children
  // (no "born") may have been stopped while already inside _exit (the stop is accepted, then has no effect): such
  // one is gone before the signal phase, which rightly sends nothing to a dead process.
  const longLived = new Set(h.born().map((b) => b.pid));
  for (const m of r.processes) {
    t.equal(m.signals[0], 'SIGSTOP', `${m.pid} was stopped first`);
    if (longLived.has(m.pid)) t.ok(m.signals.includes('SIGTERM'), `${m.pid} got SIGTERM`);
    else
      t.ok(
        m.signals.includes('SIGTERM') || m.exit.signal === null,
        `${m.pid} (short-lived) got SIGTERM or had exited by itself: ${JSON.stringify(m.exit)}`,
      );
  }
  const levels = new Set(
    h
      .born()
      .filter((b) => r.processes.some((m) => m.pid === b.pid))
      .map((b) => b.level),
  );
  t.ok(
    [0, 1, 2, 3, 4].every((l) => levels.has(l)),
    'members of every level (loop leaves at 4)',
  );
  await checkAllDead(t, h, r, 'looping tree');
  await h.end();
});

t.test(
  'without /proc children files (older or stripped kernels): the same tree, walked by scanning /proc',
  async (t) => {
    forceProcScan(true);
    t.teardown(() => forceProcScan(undefined));
    const h = await Harness.start(false, 3, 2, 'loop');
    t.teardown(() => h.child.kill('SIGKILL'));
    await h.waitBorn(15 + 20);
    const r = await killTree(h.rootPid, { timeout: 5000 });
    t.ok(r.processes.length >= 35, `${r.processes.length} processes`);
    await checkAllDead(t, h, r, 'scanned tree');
    await h.end();
  },
);

t.test('a member that ignores SIGTERM is escalated; the others are not', async (t) => {
  const h = await Harness.start(false, 2, 2, 'ignore-one');
  t.teardown(() => h.child.kill('SIGKILL'));
  await h.waitBorn(7);
  const born = h.born();
  const r = await killTree(h.rootPid, { timeout: 300 });
  t.equal(r.escalated, true);
  const escalated = r.processes.filter((m) => m.escalated);
  t.equal(escalated.length, 1, 'exactly one member needed SIGKILL');
  const m = escalated[0];
  t.ok(diedOf(m.exit, 'SIGKILL'), `died of SIGKILL: ${JSON.stringify(m.exit)}`);
  t.match(
    born.find((b) => b.pid === m.pid),
    { level: 1, ppid: h.rootPid },
    'the level-1 member that ignores SIGTERM',
  );
  t.same(m.signals.slice(0, 3), ['SIGSTOP', 'SIGTERM', 'SIGCONT']);
  t.ok(m.signals.includes('SIGKILL'));
  for (const o of r.processes.filter((x) => !x.escalated)) t.ok(diedOf(o.exit, 'SIGTERM'), `${o.pid} died of SIGTERM`);
  await checkAllDead(t, h, r, 'stubborn member');
  await h.end();
});

t.test('a signal handler that forks after the continue: the new child does not escape', async (t) => {
  const h = await Harness.start(false, 2, 2, 'fork-on-term');
  t.teardown(() => h.child.kill('SIGKILL'));
  await h.waitBorn(7);
  const r = await killTree(h.rootPid, { timeout: 1000 });
  const late = h.born().filter((b) => b.level === 99);
  t.equal(late.length, 7, 'each of the 7 members forked a SIGTERM-ignoring child from its handler');
  for (const b of late) {
    const m = r.processes.find((x) => x.pid === b.pid);
    t.ok(m, `${b.pid} (forked by ${b.ppid} after SIGTERM) was found by the walk`);
    t.equal(m?.escalated, true, 'and, ignoring SIGTERM, was SIGKILLed');
    t.equal(m?.parent, b.ppid, 'under its real parent');
  }
  await checkAllDead(t, h, r, 'forking handlers');
  await h.end();
});

t.test('a root that dies during the kill: its re-parented children are still held, and killed', async (t) => {
  // Every member's handler forks and exits 100 ms later, the root included, so the root is gone long before its
  // SIGTERM-ignoring children are escalated; they are re-parented to the harness by then.
  const h = await Harness.start(false, 1, 3, 'fork-on-term');
  t.teardown(() => h.child.kill('SIGKILL'));
  await h.waitBorn(4);
  const r = await killTree(h.rootPid, { timeout: 600 });
  const root = r.processes[0];
  t.ok(
    root.exit.code === 0 || root.exit.source === 'none',
    `the root exited 0 by itself: ${JSON.stringify(root.exit)}`,
  );
  t.notOk(root.signals.includes('SIGKILL'));
  t.equal(root.escalated, false);
  t.ok(r.processes.filter((m) => m.escalated).length >= 4, 'its children (re-parented) were escalated anyway');
  await checkAllDead(t, h, r, 'dying root');
  await h.end();
});

t.test('a root that already exited (a zombie) leaving orphans re-parented to a subreaper', async (t) => {
  const h = await Harness.start(true, 2, 2, 'root-exits,group');
  t.teardown(() => h.child.kill('SIGKILL'));
  await h.out.waitFor((l) => l.startsWith('root-exiting '), 'root exits');
  await h.waitBorn(7);
  const root = PidFd.open(h.rootPid);
  // Bounded generously (20 s) and left as soon as it holds: exiting takes far longer on a loaded machine.
  for (let i = 0; i < 4000 && readStat(h.rootPid)?.state !== 'Z'; i++) await new Promise((r) => setTimeout(r, 5));
  t.equal(readStat(h.rootPid)?.state, 'Z', 'the root is a zombie its parent has not reaped');
  const orphans = h.born().filter((b) => b.level === 1);
  for (const b of orphans) t.equal(readStat(b.pid)?.ppid, h.pid, `${b.pid} was re-parented to the subreaper`);
  const r = await killTree(root, { timeout: 2000 });
  t.equal(r.processes[0].pid, h.rootPid);
  t.same(r.processes[0].signals, [], 'nothing was sent to the dead root');
  t.equal(r.processes.length, 7, 'the root and its 6 descendants, found through the process group the root led');
  await checkAllDead(t, h, r, 'orphans of a dead root');
  root.close();
  await h.end();
});

t.test('includeRoot: false kills the descendants and leaves the root alone', async (t) => {
  const h = await Harness.start(false, 2, 2, '-');
  t.teardown(() => h.child.kill('SIGKILL'));
  await h.waitBorn(7);
  const root = PidFd.open(h.rootPid);
  const r = await killTree(root, { includeRoot: false, timeout: 2000 });
  t.equal(r.processes.length, 6);
  t.notOk(r.processes.some((m) => m.pid === h.rootPid));
  t.equal(root.exited, false, 'the root runs on');
  t.equal(readStat(h.rootPid)?.state === 'T', false, 'and was never stopped');
  root.close();
  await h.end();
});

t.test('signal SIGKILL: no grace, memory released, everything dead', async (t) => {
  const h = await Harness.start(false, 2, 3, 'loop');
  t.teardown(() => h.child.kill('SIGKILL'));
  await h.waitBorn(13);
  const r = await killTree(h.rootPid, { signal: 'SIGKILL' });
  t.ok(r.processes.every((m) => diedOf(m.exit, 'SIGKILL')));
  t.ok(
    r.processes.every((m) => m.signals.join() === 'SIGSTOP,SIGKILL'),
    'stopped, then killed; no continue needed',
  );
  await checkAllDead(t, h, r, 'SIGKILL');
  await h.end();
});

t.test('cgroup: a child re-parented before any walk could see it is still found and killed', async (t) => {
  const base = '/sys/fs/cgroup/unified';
  if (!existsSync(`${base}/cgroup.procs`)) {
    t.skip('no cgroup v2 hierarchy mounted at /sys/fs/cgroup/unified', () => {});
    return;
  }
  const dir = `${base}/pidfd-test-${process.pid}`;
  mkdirSync(dir);
  if (!existsSync(`${dir}/cgroup.kill`)) {
    rmdirSync(dir);
    t.skip('this kernel has no cgroup.kill (Linux 5.14)', () => {});
    return;
  }
  // Each member's SIGTERM handler forks a SIGTERM-ignoring child and exits at once: the child is re-parented
  // (to the harness) within microseconds, so no walk from the tree can find it. It is in the members' cgroup.
  const h = await Harness.start(false, 1, 2, 'fork-on-term-exit');
  t.teardown(() => {
    h.child.kill('SIGKILL');
    try {
      rmdirSync(dir);
    } catch {
      /* not empty yet, or gone */
    }
  });
  await h.waitBorn(3);
  for (const b of h.born()) writeFileSync(`${dir}/cgroup.procs`, String(b.pid));
  const r = await killTree(h.rootPid, { timeout: 300, cgroup: dir });
  t.equal(r.cgroupKilled, true, 'escalation wrote cgroup.kill');
  const late = h.born().filter((b) => b.level === 99);
  t.equal(late.length, 3, 'three children forked by handlers that exited at once');
  for (const b of late) {
    const m = r.processes.find((x) => x.pid === b.pid);
    t.ok(m, `${b.pid} is in the result`);
    t.equal(m?.parent, null, 'found through the cgroup, not under a parent');
    t.equal(m?.escalated, true);
    t.ok(m && diedOf(m.exit, 'SIGKILL'), 'died of SIGKILL');
  }
  t.match(readFileSync(`${dir}/cgroup.events`, 'utf8'), /populated 0/, 'the cgroup is empty');
  await checkAllDead(t, h, r, 'cgroup');
  await h.end();
  rmdirSync(dir);
});

t.test('cgroup: a directory that is not a cgroup v2 one is refused before anything is signalled', async (t) => {
  await t.rejects(killTree(process.pid, { cgroup: '/tmp' }), { code: 'ERR_INVALID_ARG_VALUE' });
});

t.test('abortSignal: rejects with its reason and leaves no member stopped', async (t) => {
  const h = await Harness.start(false, 2, 2, 'ignore-one');
  t.teardown(() => h.child.kill('SIGKILL'));
  await h.waitBorn(7);
  const ac = new AbortController();
  const pending = killTree(h.rootPid, { timeout: 10_000, abortSignal: ac.signal });
  setTimeout(() => ac.abort(new Error('changed my mind')), 200);
  await t.rejects(pending, { message: 'changed my mind' });
  const stubborn = h.born().filter((b) => !dead(b));
  t.equal(stubborn.length, 1, 'only the member that ignores SIGTERM is left');
  const state = readStat(stubborn[0].pid)?.state;
  t.ok(state === 'S' || state === 'R' || state === 'D', `running, not stopped (state ${state})`);
  t.same(h.signals(), []);
  await h.end();
});

t.test('a tree rooted at an ancestor of the caller: killed around it, the caller never stopped', async (t) => {
  const stale = ensureDist();
  if (stale) throw new Error(stale);
  // sh (the root) -> node (the caller, running killTree on its parent) and sh -> sleep (a sibling, a member).
  const script =
    `
    const { killTree } = require(${JSON.stringify(require.resolve('../../dist/index.js'))});
    killTree(process.ppid, { timeout: 3000 }).then((r) => {
      console.log(JSON.stringify({ me: process.pid, pids: r.processes.map((m) => m.pid), ` +
    `exits: r.processes.map((m) => m.exit.signal) }));
    }, (e) => console.log('error ' + e.message));
  `;
  const sh = track(
    spawn('sh', ['-c', 'sleep 1000 & "$0" -e "$1"; echo "sh survived"', process.execPath, script], {
      stdio: ['ignore', 'pipe', 'inherit'],
      env: { ...process.env, NODE_OPTIONS: '' },
    }),
  );
  const out = new Lines(sh.stdout as Readable);
  const line = await out.waitFor((l) => l.startsWith('{') || l.startsWith('error'), 'the result', 60_000);
  const r = JSON.parse(line) as { me: number; pids: number[]; exits: string[] };
  t.equal(r.pids[0], sh.pid, 'the root is the shell');
  t.notOk(r.pids.includes(r.me), 'the caller is not a member');
  t.equal(r.pids.length, 2, 'the shell and its sleep');
  t.equal(r.exits[0], 'SIGTERM');
  // The sleep is re-parented when the shell dies; its status is known once its new parent (init) reaps it.
  t.ok(r.exits[1] === 'SIGTERM' || r.exits[1] === null);
  t.same(await ended(sh), [null, 'SIGTERM']);
  t.notOk(out.all.includes('sh survived'));
});

t.test('bad input', async (t) => {
  await t.rejects(killTree('1' as never), { code: 'ERR_INVALID_ARG_TYPE' });
  await t.rejects(killTree(1, { includeRoot: 'no' as never }), { code: 'ERR_INVALID_ARG_TYPE' });
  await t.rejects(killTree(1, { cgroup: 5 as never }), { code: 'ERR_INVALID_ARG_TYPE' });
  await t.rejects(killTree(1, { timeout: NaN }), { code: 'ERR_OUT_OF_RANGE' });
  await t.rejects(killTree(process.pid), { code: 'ERR_INVALID_ARG_VALUE' }, 'never itself');
});
