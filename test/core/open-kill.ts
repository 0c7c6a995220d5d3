// PidFd.open / PidFd.fromChild / pid / fd / closed / exited / kill, on real processes.
// Pid reuse: a PidFd whose process was reaped and whose pid now belongs to a new process never signals it.
import t, { Test } from 'tap';
import { ChildProcess, spawn } from 'node:child_process';
import { readFileSync, readlinkSync } from 'node:fs';
import { Readable } from 'node:stream';
import { PidFd } from '../../lib/index';
import { Lines, ended } from '../helpers/lines';
import { fixture, pidExists, procState, sleeperFor, track, until, untilSync } from '../helpers/procs';

const SIGUSR1 = 10;
const SIGUSR2 = 12;
const SIGTERM = 15;
const SI_USER = 0;
const SI_QUEUE = -1;

interface Sig {
  sig: number;
  pid: number;
  tid: number;
  code: number;
  value: number;
}

/** The signals a kill-recorder reported. */
function signalsOf(lines: string[]): Sig[] {
  const out: Sig[] = [];
  for (const l of lines) {
    const m = /^sig=(-?\d+) pid=(\d+) tid=(\d+) code=(-?\d+) value=(-?\d+)$/.exec(l);
    if (m) out.push({ sig: +m[1], pid: +m[2], tid: +m[3], code: +m[4], value: +m[5] });
  }
  return out;
}

interface Recorder {
  child: ChildProcess;
  out: Lines;
  pid: number;
  tid: number;
  children: number[];
  /** Closes its stdin and resolves, once every process of it has exited, with everything it recorded. */
  finish(): Promise<{ lines: string[]; code: number | null; signal: NodeJS.Signals | null }>;
}

/** Starts test/fixtures/kill-recorder.c: records every signal it gets, until its stdin closes. */
async function recorder(t: Test, threads = 0, children = 0, detached = false): Promise<Recorder> {
  const child = track(
    spawn(fixture('kill-recorder'), [String(threads), String(children)], {
      stdio: ['pipe', 'pipe', 'inherit'],
      detached,
    }),
  );
  const out = new Lines(child.stdout as Readable);
  const ready = await out.waitFor((l) => l.startsWith('ready '), 'ready');
  const m = /^ready pid=(\d+) tid=(\d+) children=([\d,]*)$/.exec(ready) as RegExpExecArray;
  const rec: Recorder = {
    child,
    out,
    pid: +m[1],
    tid: +m[2],
    children: m[3] ? m[3].split(',').map(Number) : [],
    async finish() {
      child.stdin?.end();
      const [code, signal] = await ended(child);
      await new Promise<void>((resolve) =>
        child.stdout?.readableEnded ? resolve() : child.stdout?.once('end', resolve),
      );
      return { lines: out.all, code, signal };
    },
  };
  t.teardown(() => {
    child.stdin?.destroy();
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  return rec;
}

/** The process group id, from /proc/<pid>/stat. */
function pgidOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[2]);
}

t.test('PidFd.open names a live process', async (t) => {
  const child = sleeperFor(t);
  const pid = child.pid as number;
  const p = PidFd.open(pid);
  t.equal(p.pid, pid);
  t.type(p.fd, 'number');
  t.ok(p.fd >= 0);
  // The kernel confirms what the fd is: a pidfd for exactly this pid.
  t.equal(readlinkSync(`/proc/self/fd/${p.fd}`), 'anon_inode:[pidfd]');
  t.match(readFileSync(`/proc/self/fdinfo/${p.fd}`, 'utf8'), new RegExp(`^Pid:\\s+${pid}$`, 'm'));
  t.equal(p.closed, false);
  t.equal(p.exited, false);
  t.equal(p.kill(0), true, 'signal 0 only checks: the process is there');
  // Alive and neither stopped nor exiting (state D too: a sleeper just spawned on a loaded machine may still be
  // paging in its binary).
  const alive = () => /^[RSD]$/.test(procState(pid) ?? '');
  t.ok(alive(), `signal 0 did nothing to it (state ${procState(pid)})`);

  const fd = p.fd;
  p.close();
  t.equal(p.closed, true);
  t.equal(p.pid, pid, 'pid stays readable after close');
  t.throws(() => p.fd, { code: 'ERR_PIDFD_CLOSED' });
  t.throws(() => p.exited, { code: 'ERR_PIDFD_CLOSED' }, 'exited is unknown once closed');
  t.throws(() => p.kill(), { code: 'ERR_PIDFD_CLOSED' });
  t.doesNotThrow(() => p.close(), 'close is idempotent');
  t.doesNotThrow(() => p[Symbol.dispose](), 'and so is dispose');
  let link: string | undefined;
  try {
    link = readlinkSync(`/proc/self/fd/${fd}`);
  } catch {
    link = undefined;
  }
  if (link === 'anon_inode:[pidfd]') {
    // The number may have been reused by another pidfd since: then it must not be ours.
    t.notMatch(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'), new RegExp(`^Pid:\\s+${pid}$`, 'm'), 'fd closed');
  } else {
    t.pass('fd closed');
  }
  t.ok(alive(), `closing the PidFd leaves the process alone (state ${procState(pid)})`);

  const q = PidFd.open(pid);
  q[Symbol.dispose]();
  t.equal(q.closed, true, 'Symbol.dispose closes');
});

t.test('PidFd.open errors', async (t) => {
  // pid_max is at most 2^22 and never this high here (32768), so no process can have it.
  t.throws(() => PidFd.open(4_000_000), { code: 'ESRCH', errno: -3, syscall: 'pidfd_open', message: /^ESRCH: / });
  t.throws(() => PidFd.open(0), { code: 'ERR_OUT_OF_RANGE', name: 'RangeError' });
  t.throws(() => PidFd.open(-1), { code: 'ERR_OUT_OF_RANGE' });
  t.throws(() => PidFd.open(1.5), { code: 'ERR_OUT_OF_RANGE' });
  t.throws(() => PidFd.open('1' as unknown as number), { code: 'ERR_INVALID_ARG_TYPE', name: 'TypeError' });
  t.throws(() => new (PidFd as unknown as new () => PidFd)(), { code: 'ERR_ILLEGAL_CONSTRUCTOR' });

  // A process that exited and was reaped is gone from the pid table.
  const child = track(spawn('true'));
  const pid = child.pid as number;
  t.same(await ended(child), [0, null]);
  if (!pidExists(pid)) t.throws(() => PidFd.open(pid), { code: 'ESRCH' }, 'reaped pid: ESRCH');
});

t.test('PidFd.fromChild', async (t) => {
  const child = sleeperFor(t);
  const p = PidFd.fromChild(child);
  t.equal(p.pid, child.pid);
  t.match(readFileSync(`/proc/self/fdinfo/${p.fd}`, 'utf8'), new RegExp(`^Pid:\\s+${child.pid}$`, 'm'));
  t.equal(p.exited, false);
  t.equal(p.kill('SIGKILL'), true);
  t.same(await ended(child), [null, 'SIGKILL'], 'the signal reached the child');
  t.equal(p.exited, true);
  p.close();

  // Node has reaped it now: its pid may already be someone else's, so fromChild refuses.
  t.throws(() => PidFd.fromChild(child), { code: 'ERR_PIDFD_CHILD_EXITED' });
  const done = track(spawn('sh', ['-c', 'exit 4']));
  t.same(await ended(done), [4, null]);
  t.throws(() => PidFd.fromChild(done), { code: 'ERR_PIDFD_CHILD_EXITED', message: new RegExp(`${done.pid}`) });

  t.throws(() => PidFd.fromChild({ pid: process.pid } as unknown as ChildProcess), { code: 'ERR_INVALID_ARG_TYPE' });
  const failed = spawn('/nonexistent/program/for/pidfd/tests');
  const spawnError = new Promise((resolve) => failed.once('error', resolve));
  t.throws(() => PidFd.fromChild(failed), { code: 'ERR_INVALID_ARG_VALUE' }, 'a child that failed to spawn has no pid');
  t.match(await spawnError, { code: 'ENOENT' });
});

t.test('reaped: false while running and while an unreaped zombie, true once its parent reaps it', async (t) => {
  // sh starts a short sleep in the background and reaps it only at `wait`, after reading a line: until then the
  // sleep is a zombie of sh.
  const script = 'sleep 0.2 & echo $!; read x; wait; echo reaped; read y';
  const sh = track(spawn('sh', ['-c', script], { stdio: ['pipe', 'pipe', 'inherit'] }));
  t.teardown(() => sh.kill('SIGKILL'));
  const out = new Lines(sh.stdout as Readable);
  const pidLine = await out.waitFor((l) => /^\d+$/.test(l), 'the background pid');
  const p = PidFd.open(Number(pidLine));
  t.teardown(() => p.close());
  t.equal(p.reaped, false, 'running: not reaped');
  await p.waitExit();
  t.equal(p.exited, true);
  t.equal(procState(p.pid), 'Z', 'a zombie of sh');
  t.equal(p.reaped, false, 'an unreaped zombie is exited, not reaped');
  sh.stdin!.write('\n');
  await out.waitFor((l) => l === 'reaped', 'sh reaped it');
  t.equal(p.reaped, true, 'reaped by its parent');
  p.close();
  t.throws(() => p.reaped, { code: 'ERR_PIDFD_CLOSED' });
});

t.test('kill sends to the process: default SIGTERM, names and numbers', async (t) => {
  const a = sleeperFor(t);
  const pa = PidFd.fromChild(a);
  t.equal(pa.kill(), true);
  t.same(await ended(a), [null, 'SIGTERM'], 'default signal is SIGTERM');
  t.equal(pa.exited, true);
  t.equal(pa.kill(), false, 'already exited: false');
  t.equal(pa.kill('SIGKILL'), false);
  t.equal(pa.kill(0), false, 'signal 0 on an exited process: false');
  pa.close();

  const b = sleeperFor(t);
  const pb = PidFd.fromChild(b);
  t.equal(pb.kill(9), true, 'a signal number');
  t.same(await ended(b), [null, 'SIGKILL']);
  pb.close();

  const c = sleeperFor(t);
  const pc = PidFd.fromChild(c);
  t.throws(() => pc.kill('SIGNOPE' as NodeJS.Signals), { code: 'ERR_UNKNOWN_SIGNAL' });
  t.throws(() => pc.kill(65), { code: 'ERR_OUT_OF_RANGE' });
  t.throws(() => pc.kill('SIGTERM', { scope: 'pgrp' as 'process' }), { code: 'ERR_INVALID_ARG_VALUE' });
  t.throws(() => pc.kill('SIGTERM', { value: 2 ** 31 }), { code: 'ERR_OUT_OF_RANGE' });
  t.equal(pc.exited, false, 'invalid arguments sent nothing');
  t.match(procState(c.pid as number), /^[RSD]$/, 'still running: nothing was sent');
  pc.kill('SIGKILL');
  await ended(c);
  pc.close();
});

t.test('kill delivers siginfo: SI_USER, or SI_QUEUE with a value', async (t) => {
  const rec = await recorder(t);
  const p = PidFd.open(rec.pid);
  t.equal(p.kill('SIGUSR2'), true);
  t.equal(p.kill('SIGUSR1', { value: 42 }), true);
  await rec.out.waitFor((l) => l.startsWith(`sig=${SIGUSR1} `), 'SIGUSR1');
  await rec.out.waitFor((l) => l.startsWith(`sig=${SIGUSR2} `), 'SIGUSR2');
  const { lines, code } = await rec.finish();
  t.equal(code, 0, 'the recorder survived and exited by itself');
  const got = signalsOf(lines);
  t.has(
    got.find((s) => s.sig === SIGUSR2),
    { sig: SIGUSR2, pid: rec.pid, code: SI_USER },
    'plain signal: SI_USER',
  );
  t.has(
    got.find((s) => s.sig === SIGUSR1),
    { sig: SIGUSR1, pid: rec.pid, code: SI_QUEUE, value: 42 },
    'value: SI_QUEUE',
  );
  t.equal(got.length, 2, 'exactly the two signals sent');
  p.close();
});

t.test("kill with scope 'thread' reaches exactly one thread", async (t) => {
  const rec = await recorder(t, 1);
  t.ok(rec.tid > 0 && rec.tid !== rec.pid, 'the recorder has a second thread');
  const p = PidFd.open(rec.pid);
  // On a process pidfd, 'thread' means the thread-group leader: the main thread, whose tid is the pid.
  t.equal(p.kill('SIGUSR1', { scope: 'thread' }), true);
  const main = await rec.out.waitFor((l) => l.startsWith(`sig=${SIGUSR1} `), 'SIGUSR1');
  t.match(main, ` tid=${rec.pid} `, 'the main thread took it');

  // A thread pidfd (PIDFD_THREAD) names the second thread.
  const tp = PidFd.open(rec.tid, { thread: true });
  t.equal(tp.pid, rec.tid);
  t.equal(tp.exited, false);
  t.equal(tp.kill('SIGUSR2', { scope: 'thread' }), true);
  const second = await rec.out.waitFor((l) => l.startsWith(`sig=${SIGUSR2} `), 'SIGUSR2');
  t.match(second, ` tid=${rec.tid} `, 'the second thread took it');

  const { lines, code } = await rec.finish();
  t.equal(code, 0);
  t.equal(signalsOf(lines).length, 2, 'nothing else was delivered');
  t.equal(p.exited, true);
  t.equal(tp.exited, true);
  t.equal(p.kill('SIGUSR1', { scope: 'thread' }), false, 'exited: false');
  t.equal(tp.kill('SIGUSR1', { scope: 'thread' }), false);
  p.close();
  tp.close();
});

t.test("kill with scope 'process-group' reaches every member and nobody else", async (t) => {
  // Its own process group (detached: setsid), with two forked members.
  const group = await recorder(t, 0, 2, true);
  const outsider = await recorder(t, 0, 0, true);
  t.equal(group.children.length, 2);
  for (const pid of [group.pid, ...group.children]) t.equal(pgidOf(pid), group.pid, `${pid} is in the group`);
  t.not(pgidOf(outsider.pid), group.pid);

  const p = PidFd.open(group.pid);
  t.equal(p.kill('SIGUSR1', { scope: 'process-group' }), true);
  t.equal(p.kill('SIGUSR2'), true, "default scope 'process': the leader only");
  for (const pid of [group.pid, ...group.children]) {
    await group.out.waitFor((l) => l.startsWith(`sig=${SIGUSR1} pid=${pid} `), `SIGUSR1 at ${pid}`);
  }
  await group.out.waitFor((l) => l.startsWith(`sig=${SIGUSR2} `), 'SIGUSR2');

  const g = await group.finish();
  const o = await outsider.finish();
  t.equal(g.code, 0);
  t.equal(o.code, 0);
  const got = signalsOf(g.lines);
  t.same(
    got
      .filter((s) => s.sig === SIGUSR1)
      .map((s) => s.pid)
      .sort(),
    [group.pid, ...group.children].sort(),
    'every member got the group signal once',
  );
  t.same(
    got.filter((s) => s.sig === SIGUSR2).map((s) => s.pid),
    [group.pid],
    'only the leader got the process signal',
  );
  t.equal(got.length, 4);
  t.same(signalsOf(o.lines), [], 'the outsider got nothing');
  t.equal(p.kill('SIGUSR1', { scope: 'process-group' }), false, 'the whole group has exited: false');
  p.close();
});

t.test("kill with scope 'process-group' on a live process that leads no group", async (t) => {
  // The sleeper is in the test runner's process group, so no process has its pid as group id: the kernel answers
  // ESRCH. That says nothing about the process itself, which must still count as alive.
  const child = sleeperFor(t);
  const p = PidFd.fromChild(child);
  t.equal(p.kill('SIGUSR1', { scope: 'process-group' }), false, 'no such group: nothing was sent');
  t.equal(p.exited, false, 'the process is still alive and the PidFd says so');
  t.equal(p.kill('SIGTERM'), true, 'it can still be signalled');
  t.same(await ended(child), [null, 'SIGTERM']);
  p.close();
});

t.test('an own child that is a zombie: exited, kill returns false', async (t) => {
  const child = track(spawn('sh', ['-c', 'exit 6'], { stdio: 'ignore' }));
  const pid = child.pid as number;
  const p = PidFd.fromChild(child);
  // Node reaps only from the event loop, so while this thread is blocked the child stays a zombie.
  untilSync(() => p.exited, 'the child to exit');
  t.equal(procState(pid), 'Z', 'a zombie');
  t.equal(p.exited, true);
  t.equal(p.kill(), false);
  t.equal(p.kill('SIGKILL'), false);
  t.equal(p.kill(0), false);
  t.equal(p.kill('SIGUSR1', { scope: 'thread' }), false);
  t.same(await ended(child), [6, null], 'Node still reaps it and reports its own exit code');
  p.close();
});

t.test('a non-child zombie (its parent does not reap): exited, kill returns false', async (t) => {
  const tree = track(spawn(fixture('wait-tree'), ['noreap'], { stdio: ['pipe', 'pipe', 'inherit'] }));
  t.teardown(() => {
    tree.kill('SIGTERM');
  });
  const out = new Lines(tree.stdout as Readable);
  const pid = Number((await out.waitFor((l) => l.startsWith('child '), 'child')).split(' ')[1]);
  const p = PidFd.open(pid);
  t.equal(p.exited, false);
  tree.stdin?.write('7\n');
  await until(() => p.exited, 'the grandchild to exit');
  t.equal(procState(pid), 'Z', 'a zombie its parent leaves unreaped');
  t.equal(p.kill(), false);
  t.equal(p.kill('SIGKILL'), false);
  t.equal(p.kill(0), false);
  t.equal(procState(pid), 'Z');
  tree.kill('SIGUSR2'); // now the parent reaps it
  t.match(
    await out.waitFor((l) => l.startsWith('reaped '), 'reaped'),
    `reaped pid=${pid} code=7 signal=0`,
    'it ended by its own exit(7), nothing we sent',
  );
  t.equal(p.kill(), false, 'reaped: still false');
  p.close();
  tree.kill('SIGTERM');
  t.same(await ended(tree), [0, null]);
});

t.test('pid reuse — a stale PidFd never signals the process that inherited its pid', async (t) => {
  const recorderBin = fixture('kill-recorder');
  const spawner = fixture('reuse-spawn');
  let stale: PidFd | undefined;
  let pid = 0;
  let launcher: ChildProcess | undefined;
  let out: Lines | undefined;
  // The freed pid is normally still free a moment later (pids are handed out cyclically), but another process may
  // take it first: then clone3 says EEXIST and we try again with a new victim.
  for (let attempt = 0; attempt < 20 && launcher === undefined; attempt++) {
    const victim = sleeperFor(t);
    const p = PidFd.fromChild(victim);
    t.equal(p.kill('SIGKILL'), true);
    t.same(await ended(victim), [null, 'SIGKILL']); // Node has reaped it: the pid number is free
    const l = track(
      spawn(spawner, [String(victim.pid), recorderBin, '0', '0'], { stdio: ['pipe', 'pipe', 'inherit'] }),
    );
    const lines = new Lines(l.stdout as Readable);
    const first = await lines.waitFor((x) => x.startsWith('spawned ') || x.startsWith('error '), 'spawned');
    if (first.startsWith('error 17 ')) {
      p.close();
      await ended(l);
      continue;
    }
    t.equal(first, `spawned ${victim.pid}`, "clone3 set_tid gave the new process the dead one's pid");
    stale = p;
    pid = victim.pid as number;
    launcher = l;
    out = lines;
  }
  if (!stale || !launcher || !out) throw new Error('could not get the pid reused in 20 attempts');
  t.teardown(() => {
    launcher?.stdin?.destroy();
    launcher?.kill('SIGKILL');
  });
  const ready = await out.waitFor((l) => l.startsWith('ready '), 'ready');
  t.match(ready, `ready pid=${pid} `, 'the stranger runs under the recycled pid');
  t.equal(pgidOf(pid), pid, 'and leads a process group with that id');

  t.equal(stale.exited, true);
  t.equal(stale.kill('SIGTERM'), false, 'SIGTERM: false');
  t.equal(stale.kill('SIGUSR2', { value: 7 }), false, 'with a value: false');
  t.equal(stale.kill('SIGUSR2', { scope: 'thread' }), false, 'thread scope: false');
  t.equal(stale.kill('SIGUSR2', { scope: 'process-group' }), false, 'process-group scope (reaches the kernel): false');
  t.equal(stale.kill('SIGKILL'), false, 'SIGKILL: false');
  t.equal(stale.kill(0), false);
  t.same(stale.info().exit, { code: null, signal: 'SIGKILL' }, 'the stale PidFd still names the dead process');

  // The stranger is alive, and is the process a fresh pidfd now names.
  t.ok(['S', 'R'].includes(procState(pid) as string), 'the stranger is alive');
  const fresh = PidFd.open(pid);
  t.equal(fresh.exited, false);
  // Control: a plain pid-based kill does reach it (the race this library exists to avoid), which also proves the
  // recorder would have reported any signal the stale PidFd had sent.
  process.kill(pid, 'SIGUSR1');
  await out.waitFor((l) => l.startsWith(`sig=${SIGUSR1} `), 'the control SIGUSR1');

  launcher.stdin?.end(); // the stranger drains what is pending, says bye, exits 0; the launcher passes that on
  const [code, signal] = await ended(launcher);
  await out.waitFor((l) => l === `bye pid=${pid}`, 'bye');
  t.same([code, signal], [0, null], 'the stranger exited by itself, never killed');
  t.same(
    signalsOf(out.all).map((s) => s.sig),
    [SIGUSR1],
    'the stranger received only the control signal: nothing from the stale PidFd',
  );
  t.not(
    signalsOf(out.all).some((s) => s.sig === SIGTERM),
    true,
  );
  stale.close();
  fresh.close();
});

t.test("a thread pidfd: scope 'process' (the default) still signals the whole process", async (t) => {
  // Both threads block SIGUSR1/SIGUSR2, so the signals stay pending where the kernel queued them:
  // process-directed ones in ShdPnd of /proc/<pid>/status, thread-directed ones in SigPnd of the thread's status.
  const py = [
    'import signal, threading, time, sys',
    'signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1, signal.SIGUSR2})',
    'th = threading.Thread(target=lambda: time.sleep(1000), daemon=True); th.start()',
    'print(th.native_id, flush=True)',
    'sys.stdin.read()',
  ].join('\n');
  const child = track(spawn('python3', ['-c', py], { stdio: ['pipe', 'pipe', 'inherit'] }));
  t.teardown(() => {
    child.kill('SIGKILL');
  });
  const tid = Number(await new Promise<string>((resolve) => child.stdout!.once('data', (d) => resolve(String(d)))));
  const pending = (path: string, field: string): bigint =>
    BigInt(
      '0x' + (new RegExp(`^${field}:\\s+([0-9a-f]+)`, 'm').exec(readFileSync(path, 'utf8')) as RegExpExecArray)[1],
    );
  const bit = (sig: number): bigint => 1n << BigInt(sig - 1);
  const tp = PidFd.open(tid, { thread: true });
  t.equal(tp.kill('SIGUSR1'), true);
  t.equal(tp.kill('SIGUSR2', { scope: 'thread' }), true);
  const shared = pending(`/proc/${child.pid}/status`, 'ShdPnd');
  const thread = pending(`/proc/${child.pid}/task/${tid}/status`, 'SigPnd');
  t.equal(shared & bit(10), bit(10), 'SIGUSR1 (default scope) is pending for the process');
  t.equal(thread & bit(10), 0n, 'not for the thread alone');
  t.equal(thread & bit(12), bit(12), "SIGUSR2 (scope 'thread') is pending for that thread");
  t.equal(shared & bit(12), 0n, 'not for the process');
  tp.close();
});
