// terminate(): signal, wait, escalate, release. Real processes; every outcome is what the kernel reports.
import { ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { Readable } from 'node:stream';
import t from 'tap';
import { PidFd } from '../../lib/pidfd';
import { terminate } from '../../lib/terminate';
import { ended, Lines } from '../helpers/lines';
import { exited, fixture, procState, track } from '../helpers/procs';

const SIGUSR1 = 10;

/** A `tree-fixture victim <how>` child, once it has set up its signal handling. */
async function victim(how: 'ignore' | 'handler' | 'default'): Promise<{ child: ChildProcess; pid: number }> {
  const child = track(spawn(fixture('tree-fixture'), ['victim', how], { stdio: ['ignore', 'pipe', 'inherit'] }));
  const out = new Lines(child.stdout as Readable);
  const ready = await out.waitFor((l) => l.startsWith('ready '), 'ready');
  return { child, pid: Number(ready.split(' ')[1]) };
}

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

// Our own child's status is read with waitid(WNOWAIT), or, when Node's SIGCHLD handling reaped it first in the same
// loop turn, from PIDFD_INFO_EXIT: the same status either way.
const OWN_CHILD = /^(waitid|pidfd-info)$/;
t.test('a process that exits on SIGTERM: no escalation', async (t) => {
  const { child, pid } = await victim('default');
  const r = await terminate(pid, { timeout: 10_000 });
  t.equal(r.pid, pid);
  t.equal(r.escalated, false);
  t.equal(r.released, false);
  t.same(r.signals, ['SIGTERM']);
  t.match(r.exit, { pid, code: null, signal: 'SIGTERM', source: OWN_CHILD }, 'our child: status read with WNOWAIT');
  t.same(await exited(child), [null, 'SIGTERM'], 'child_process saw the same');
});

t.test('a process that ignores SIGTERM: escalated to SIGKILL after the grace period, memory released', async (t) => {
  const { child, pid } = await victim('ignore');
  const r = await terminate(pid, { timeout: 200 });
  t.equal(r.escalated, true);
  t.same(r.signals, ['SIGTERM', 'SIGKILL']);
  t.match(r.exit, { pid, code: null, signal: 'SIGKILL', source: OWN_CHILD });
  t.type(r.released, 'boolean', 'release() was tried (false only if the victim freed its memory first)');
  t.ok(r.elapsedMs >= 200, 'the grace period was waited out before escalating');
  t.same(await exited(child), [null, 'SIGKILL']);
});

t.test('killSignal: false rejects with ETIMEDOUT and leaves the process running', async (t) => {
  const { child, pid } = await victim('ignore');
  const p = PidFd.fromChild(child);
  await t.rejects(terminate(p, { timeout: 100, killSignal: false }), { code: 'ETIMEDOUT', pid, signals: ['SIGTERM'] });
  t.equal(p.exited, false, 'still running');
  t.ok(['S', 'R'].includes(procState(pid) as string));
  t.equal(p.closed, false, 'a PidFd passed in stays open');
  const r = await terminate(p, { signal: 'SIGKILL', timeout: 5000 });
  t.same(r.signals, ['SIGKILL']);
  t.equal(r.exit.signal, 'SIGKILL');
  p.close();
});

t.test('a process that is already gone resolves, whatever the target type', async (t) => {
  const { child, pid } = await victim('default');
  const p = PidFd.fromChild(child);
  child.kill('SIGKILL');
  await exited(child); // Node reaped it: the pid is free

  const byPidFd = await terminate(p);
  t.same(byPidFd.signals, [], 'nothing sent');
  t.equal(byPidFd.escalated, false);
  t.same(
    byPidFd.exit,
    { pid, code: null, signal: 'SIGKILL', source: 'pidfd-info' },
    'the kernel still knows how it ended',
  );

  const byChild = await terminate(child);
  t.same(byChild.signals, []);
  t.same(byChild.exit, { pid, code: null, signal: 'SIGKILL', source: 'waitid' }, 'from Node, which reaped it');

  // By pid: nothing has the pid now (or, if something does, it is a stranger and would be signalled: so only
  // check this while the pid is free).
  if (!existsSync(`/proc/${pid}`)) {
    const byPid = await terminate(pid);
    t.same(byPid.signals, []);
    t.same(
      byPid.exit,
      { pid, code: null, signal: null, source: 'none' },
      'no process, so nothing is known: never guessed',
    );
  }
  p.close();
});

t.test('ChildProcess input: child_process still emits exit', async (t) => {
  const { child, pid } = await victim('handler');
  const gotExit = exited(child);
  const r = await terminate(child);
  t.match(r.exit, { pid, code: 7, signal: null, source: OWN_CHILD }, 'its SIGTERM handler exited 7');
  t.same(await gotExit, [7, null], "and Node's 'exit' event fired with the same status");
});

t.test('a stopped process is continued so it can act on SIGTERM', async (t) => {
  const { child, pid } = await victim('handler');
  child.kill('SIGSTOP');
  for (let i = 0; i < 4000 && procState(pid) !== 'T'; i++) sleepSync(5);
  t.equal(procState(pid), 'T', 'stopped');
  const r = await terminate(child, { timeout: 10_000 });
  t.same(r.signals, ['SIGTERM', 'SIGCONT']);
  t.equal(r.escalated, false);
  t.match(r.exit, { pid, code: 7, signal: null, source: OWN_CHILD }, 'its handler ran: it was continued');
});

t.test('abortSignal: rejects with its reason, and nothing more is sent', async (t) => {
  const { child, pid } = await victim('ignore');
  const ac = new AbortController();
  const pending = terminate(child, { timeout: 10_000, abortSignal: ac.signal });
  setTimeout(() => ac.abort(new Error('shutdown cancelled')), 50);
  await t.rejects(pending, { message: 'shutdown cancelled' });
  t.ok(['S', 'R'].includes(procState(pid) as string), 'still running (it ignores SIGTERM, and no SIGKILL came)');
  child.kill('SIGKILL');
  await exited(child);
  await t.rejects(terminate(pid, { abortSignal: AbortSignal.abort() }), { code: 'ABORT_ERR' });
});

t.test(
  'killTimeout: a process that cannot die (frozen by the cgroup v1 freezer, state D) rejects with ETIMEDOUT',
  async (t) => {
    const root = '/sys/fs/cgroup/freezer';
    if (!existsSync(`${root}/cgroup.procs`)) {
      t.skip('no cgroup v1 freezer here: it is the one way to make a process survive SIGKILL on demand', () => {});
      return;
    }
    const dir = `${root}/pidfd-test-${process.pid}`;
    mkdirSync(dir);
    const { child, pid } = await victim('ignore');
    t.teardown(() => {
      try {
        writeFileSync(`${dir}/freezer.state`, 'THAWED');
      } catch {
        /* gone */
      }
      child.kill('SIGKILL');
    });
    writeFileSync(`${dir}/cgroup.procs`, String(pid));
    writeFileSync(`${dir}/freezer.state`, 'FROZEN');
    for (let i = 0; i < 4000 && readFileSync(`${dir}/freezer.state`, 'utf8').trim() !== 'FROZEN'; i++) sleepSync(5);
    const p = PidFd.fromChild(child);
    const err = await terminate(p, { timeout: 100, killTimeout: 300 }).then(
      () => undefined,
      (e: unknown) => e,
    );
    t.match(err, { code: 'ETIMEDOUT', pid, signals: ['SIGTERM', 'SIGKILL'], state: 'D' });
    t.match((err as Error).message, /has not exited 300 ms after SIGKILL \(it is in uninterruptible sleep, state D/);
    t.equal(p.exited, false, 'really still there');
    writeFileSync(`${dir}/freezer.state`, 'THAWED');
    t.match(
      await p.waitExit({ timeout: 10_000 }),
      { pid, code: null, signal: 'SIGKILL', source: OWN_CHILD },
      'thawed, it dies of the SIGKILL already pending',
    );
    await exited(child);
    p.close();
    rmdirSync(dir);
  },
);

t.test('bad input is a TypeError/RangeError with a code, as a rejection', async (t) => {
  await t.rejects(terminate('12' as never), { code: 'ERR_INVALID_ARG_TYPE', name: 'TypeError' });
  await t.rejects(terminate(0), { code: 'ERR_OUT_OF_RANGE' });
  await t.rejects(terminate(1, { signal: 'SIGNOPE' as never }), { code: 'ERR_UNKNOWN_SIGNAL' });
  await t.rejects(terminate(1, { timeout: -1 }), { code: 'ERR_OUT_OF_RANGE' });
  await t.rejects(terminate(1, { killSignal: true as never }), { code: 'ERR_INVALID_ARG_TYPE' });
  await t.rejects(terminate(1, { release: 1 as never }), { code: 'ERR_INVALID_ARG_TYPE' });
  await t.rejects(terminate(1, { abortSignal: {} as never }), { code: 'ERR_INVALID_ARG_TYPE' });
  await t.rejects(terminate(1, null as never), { code: 'ERR_INVALID_ARG_TYPE' });
  const closed = PidFd.open(process.pid);
  closed.close();
  await t.rejects(terminate(closed), { code: 'ERR_PIDFD_CLOSED' });
});

t.test(
  'exits exactly as the grace period ends, its pid recycled by a stranger at once: no signal reaches the stranger',
  async (t) => {
    // The victim (a grandchild that ignores SIGTERM) is made to exit, is reaped by its parent, and a stranger is
    // started under its pid with clone3(set_tid), all while this event loop is blocked past the grace period. When
    // the loop runs again, the grace timer (timers run before I/O in libuv's loop) and the exit notification are
    // due together: terminate must find the exit through its pidfd and send nothing, although the pid is taken.
    const recorderBin = fixture('kill-recorder');
    const spawner = fixture('reuse-spawn');
    const GRACE = 150;
    for (let attempt = 0; attempt < 20; attempt++) {
      const parent = track(spawn(fixture('tree-fixture'), ['reaped-victim'], { stdio: ['pipe', 'pipe', 'inherit'] }));
      const out = new Lines(parent.stdout as Readable);
      const pid = Number((await out.waitFor((l) => l.startsWith('child '), 'child')).split(' ')[1]);
      const p = PidFd.open(pid);
      const t0 = Date.now();
      const pending = terminate(p, { timeout: GRACE });
      // terminate sent SIGTERM synchronously (ignored); now block the loop.
      parent.stdin!.write('0\n'); // a pipe write from Node goes out synchronously when the pipe has room
      let freed = false;
      for (let i = 0; i < 2000 && !freed; i++) {
        freed = !existsSync(`/proc/${pid}`);
        if (!freed) sleepSync(1);
      }
      t.ok(freed, 'the victim exited and was reaped by its parent while our loop was blocked');
      const launcher = track(
        spawn(spawner, [String(pid), recorderBin, '0', '0'], { stdio: ['pipe', 'pipe', 'inherit'] }),
      );
      let stranger = false;
      for (let i = 0; i < 2000 && !stranger; i++) {
        try {
          stranger = readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'kill-recorder';
        } catch {
          /* not yet */
        }
        if (!stranger) sleepSync(1);
      }
      while (Date.now() - t0 < GRACE + 50) sleepSync(5); // past the grace period, still blocked
      const lines = new Lines(launcher.stdout as Readable);
      if (!stranger) {
        // clone3 got EEXIST (someone else took the pid first): clean up and try again with a new victim.
        await pending;
        launcher.kill('SIGKILL');
        parent.kill('SIGKILL');
        p.close();
        continue;
      }
      const r = await pending;
      t.equal(r.escalated, false, 'no kill signal was sent: the pidfd said the process had exited');
      t.same(r.signals, ['SIGTERM'], 'only the SIGTERM sent while the victim was alive');
      t.same(
        r.exit,
        { pid, code: 0, signal: null, source: 'pidfd-info' },
        'its real status, from the kernel, after its parent reaped it',
      );
      t.ok(r.elapsedMs >= GRACE, 'the grace period had run out when terminate looked');
      await lines.waitFor((l) => l.startsWith('ready '), 'the stranger ready');
      // Control: a signal by pid reaches the stranger, so the recorder would have shown anything terminate sent.
      process.kill(pid, 'SIGUSR1');
      await lines.waitFor((l) => l.startsWith(`sig=${SIGUSR1} `), 'the control SIGUSR1');
      launcher.stdin!.end();
      t.same(await ended(launcher), [0, null], 'the stranger exited by itself');
      t.same(
        lines.all.filter((l) => l.startsWith('sig=')).map((l) => Number(/^sig=(\d+)/.exec(l)![1])),
        [SIGUSR1],
        'the stranger received only the control signal',
      );
      parent.kill('SIGKILL');
      await ended(parent);
      p.close();
      return;
    }
    t.fail('could not get the pid reused in 20 attempts');
  },
);
