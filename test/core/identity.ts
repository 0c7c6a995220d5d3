// pidfd.id, pidfd.identity(), PidFd.adopt(): a process named across restarts of its manager, never a stranger.
import { ChildProcess, spawn } from 'node:child_process';
import { existsSync, fstatSync, readFileSync, statfsSync } from 'node:fs';
import { Readable } from 'node:stream';
import t, { type Test } from 'tap';
import { forceIdSource, idSource, PIDFS_MAGIC } from '../../lib/identity';
import { PidFd } from '../../lib/pidfd';
import { statUnchecked as readStat } from '../../lib/procfs';
import { ended, Lines } from '../helpers/lines';
import { exited, fixture, sleeper, track } from '../helpers/procs';

const BOOT = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
const pidfs = (() => {
  const p = PidFd.open(process.pid);
  try {
    return statfsSync(`/proc/self/fd/${p.fd}`).type === PIDFS_MAGIC;
  } finally {
    p.close();
  }
})();

/** Kills `victim`, lets Node reap it, and starts a kill-recorder under its pid (clone3 set_tid). Retries with new
 *  victims when someone else takes the pid first. Returns the dead process's PidFd and the stranger's launcher. */
async function recycled(
  t: Test,
  before?: (p: PidFd) => void,
  ageMs = 0,
): Promise<{ stale: PidFd; pid: number; launcher: ChildProcess }> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const victim = sleeper();
    const p = PidFd.fromChild(victim);
    before?.(p);
    if (ageMs > 0) await new Promise((r) => setTimeout(r, ageMs));
    victim.kill('SIGKILL');
    await exited(victim);
    const launcher = track(
      spawn(fixture('reuse-spawn'), [String(victim.pid), fixture('kill-recorder'), '0', '0'], {
        stdio: ['pipe', 'pipe', 'inherit'],
      }),
    );
    const lines = new Lines(launcher.stdout as Readable);
    const first = await lines.waitFor((x) => x.startsWith('spawned ') || x.startsWith('error '), 'spawned');
    if (!first.startsWith('spawned ')) {
      p.close();
      await ended(launcher);
      continue;
    }
    await lines.waitFor((x) => x.startsWith('ready '), 'ready');
    t.teardown(() => {
      launcher.stdin?.end();
    });
    return { stale: p, pid: victim.pid as number, launcher };
  }
  throw new Error('could not get a pid reused in 20 attempts');
}

t.test('the id: the pidfs inode, detected by the filesystem magic of the pidfd', async (t) => {
  const a = PidFd.open(process.pid);
  const b = PidFd.open(process.pid);
  const child = sleeper();
  const c = PidFd.fromChild(child);
  if (pidfs) {
    t.equal(idSource(a.fd), 'ino');
    t.equal(a.id, fstatSync(a.fd, { bigint: true }).ino, 'the inode number of the pidfd');
  } else {
    t.equal(idSource(a.fd), 'start');
    t.equal(a.id, readStat(process.pid)!.startTime);
  }
  t.equal(typeof a.id, 'bigint');
  t.equal(a.id, b.id, 'two pidfds for one process: one id');
  t.not(a.id, c.id, 'another process: another id');
  const cid = c.id;
  child.kill('SIGKILL');
  await exited(child);
  t.equal(c.id, cid, 'cached: unchanged after exit');
  c.close();
  t.equal(c.id, cid, 'and readable after close once read');
  const aid = a.id;
  a.close();
  t.equal(a.id, aid, 'cached ids stay readable after close');
  const d = PidFd.open(process.pid);
  d.close();
  t.throws(() => d.id, { code: 'ERR_PIDFD_CLOSED' }, 'never read before close: ERR_PIDFD_CLOSED');
  b.close();
});

t.test('identity() names boot, id and pid', async (t) => {
  const p = PidFd.open(process.pid);
  const s = p.identity();
  t.equal(s, `pidfd1:${BOOT}:${pidfs ? 'ino' : 'start'}:${p.id}:${process.pid}`);
  p.close();
});

t.test('adopt: an identity from a live process re-opens that process', async (t) => {
  const child = sleeper();
  const p = PidFd.fromChild(child);
  const identity = p.identity();
  const q = PidFd.adopt(identity);
  t.equal(q.pid, child.pid);
  t.equal(q.id, p.id, 'the same process');
  t.equal(q.identity(), identity);
  t.equal(q.kill('SIGKILL'), true, 'and it works as a handle');
  t.same(await exited(child), [null, 'SIGKILL']);
  t.same(await q.waitExit(), { pid: child.pid, code: null, signal: 'SIGKILL', source: pidfs ? 'pidfd-info' : 'none' });
  p.close();
  q.close();
});

t.test(
  'adopt: after the process died and its pid was reused, ERR_PIDFD_STALE; the stranger is untouched',
  async (t) => {
    let identity = '';
    const { stale, pid, launcher } = await recycled(t, (p) => (identity = p.identity()));
    t.equal(existsSync(`/proc/${pid}`), true, 'a stranger has the pid');
    t.throws(() => PidFd.adopt(identity), {
      code: 'ERR_PIDFD_STALE',
      pid,
      identity,
      message: new RegExp(`pid ${pid} now belongs to a different process`),
    });
    t.throws(
      () => PidFd.adopt(`${identity}\n`),
      { code: 'ERR_PIDFD_STALE' },
      'a trailing newline (from a pid file) is fine',
    );
    launcher.stdin!.end();
    t.same(await ended(launcher), [0, null], 'the stranger ran on, unsignalled, and exited by itself');
    stale.close();
  },
);

t.test('adopt: no process with that pid any more: ESRCH', async (t) => {
  const child = sleeper();
  const p = PidFd.fromChild(child);
  const identity = p.identity();
  child.kill('SIGKILL');
  await exited(child);
  p.close();
  if (existsSync(`/proc/${child.pid}`)) {
    t.skip('the pid was taken by another process meanwhile', () => {});
    return;
  }
  t.throws(() => PidFd.adopt(identity), { code: 'ESRCH', syscall: 'pidfd_open' });
});

t.test('adopt: an identity from another boot is stale without looking at the pid', async (t) => {
  const p = PidFd.open(process.pid);
  const other = p.identity().replace(BOOT, '00000000-0000-4000-8000-000000000000');
  t.throws(() => PidFd.adopt(other), { code: 'ERR_PIDFD_STALE', message: /rebooted/ });
  p.close();
});

t.test('adopt: bad input', async (t) => {
  t.throws(() => PidFd.adopt(12 as never), { code: 'ERR_INVALID_ARG_TYPE', name: 'TypeError' });
  for (const bad of [
    '',
    'pidfd1:x:ino:1:1',
    `pidfd1:${BOOT}:inode:1:1`,
    `pidfd1:${BOOT}:ino:1:0`,
    `pidfd1:${BOOT}:ino:1:99999999`,
    `${process.pid}`,
  ]) {
    t.throws(() => PidFd.adopt(bad), { code: 'ERR_INVALID_ARG_VALUE' }, JSON.stringify(bad));
  }
});

t.test('the start-time fallback (older kernels), forced here', async (t) => {
  forceIdSource('start');
  t.teardown(() => forceIdSource(undefined));
  const child = sleeper();
  const p = PidFd.fromChild(child);
  t.equal(p.id, readStat(child.pid as number)!.startTime, 'the start time from /proc/<pid>/stat');
  const identity = p.identity();
  t.match(identity, new RegExp(`^pidfd1:${BOOT}:start:\\d+:${child.pid}$`));
  const q = PidFd.adopt(identity);
  t.equal(q.id, p.id);
  q.close();
  // After exit the start time can no longer be read safely (the pid may be someone else's): ESRCH.
  const r = PidFd.fromChild(child);
  child.kill('SIGKILL');
  await exited(child);
  t.throws(() => r.id, { code: 'ESRCH' });
  r.close();
  p.close();
  if (pidfs) {
    // An inode identity cannot be checked without pidfs.
    forceIdSource(undefined);
    const s = PidFd.open(process.pid);
    const ino = s.identity();
    s.close();
    forceIdSource('start');
    t.throws(() => PidFd.adopt(ino), { code: 'ERR_PIDFD_STALE', message: /pidfs/ });
  }
});

t.test('the start-time fallback also refuses a recycled pid', async (t) => {
  forceIdSource('start');
  t.teardown(() => forceIdSource(undefined));
  let identity = '';
  // Start times count clock ticks (10 ms at USER_HZ 100): a stranger started within the same tick on the same pid
  // would look the same, the documented limit of this fallback. Let the victim age past a few ticks first.
  const { stale, launcher } = await recycled(t, (p) => (identity = p.identity()), 50);
  t.throws(() => PidFd.adopt(identity), { code: 'ERR_PIDFD_STALE' });
  launcher.stdin!.end();
  t.same(await ended(launcher), [0, null]);
  stale.close();
});
