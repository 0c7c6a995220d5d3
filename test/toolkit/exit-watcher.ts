// ExitWatcher: thousands of exits, each once, and its contract (ownership, delete, close, the iterator, errors).
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { Readable } from 'node:stream';
import t from 'tap';
import { ExitInfo } from '../../lib/exit';
import { ExitWatcher } from '../../lib/exit-watcher';
import { PidFd } from '../../lib/pidfd';
import { pendingWatches } from '../../lib/watcher';
import { ensureDist } from '../helpers/dist';
import { ended, Lines } from '../helpers/lines';
import { exited, fixture, sleeper, track } from '../helpers/procs';

const N = 5000;

function threads(): number {
  return Number(/^Threads:\s+(\d+)/m.exec(readFileSync('/proc/self/status', 'utf8'))![1]);
}
function timers(): number {
  return process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
}

t.test(`${N} processes added, killed in random order, each exit emitted exactly once with the right pid`, async (t) => {
  // The processes are children of a C parent that reaps them at once: for us they are any processes (pidfd_open
  // by pid), and their exit status comes from the kernel (PIDFD_INFO_EXIT) once that parent has reaped them.
  const forker = track(spawn(fixture('scale-forker'), [String(N)], { stdio: ['ignore', 'pipe', 'inherit'] }));
  const out = new Lines(forker.stdout as Readable);
  await out.waitFor((l) => l === 'ready', 'ready', 120_000);
  const pids = out.all.filter((l) => /^\d+$/.test(l)).map(Number);
  t.equal(pids.length, N);

  const threadsBefore = threads();
  const timersBefore = timers();
  const watchesBefore = pendingWatches();
  const w = new ExitWatcher();
  const handles = pids.map((pid) => w.add(pid));
  t.equal(w.size, N);
  t.equal(threads(), threadsBefore, `adding ${N} started no thread`);
  t.equal(timers(), timersBefore, 'and no timer');
  t.equal(pendingWatches() - watchesBefore, N, 'one registration each on the one native watcher');

  const seen = new Map<number, number>();
  const bad: string[] = [];
  w.on('exit', (info: ExitInfo, p: PidFd) => {
    seen.set(info.pid, (seen.get(info.pid) ?? 0) + 1);
    if (p.pid !== info.pid) bad.push(`pidfd ${p.pid} reported as ${info.pid}`);
    if (!p.closed) bad.push(`${info.pid}: a pidfd the watcher opened was not closed after its exit`);
    if (info.signal !== 'SIGKILL' && info.source !== 'none') bad.push(`${info.pid}: ${JSON.stringify(info)}`);
  });
  const iterated: number[] = [];
  const iterating = (async () => {
    for await (const info of w) {
      iterated.push(info.pid);
      if (iterated.length === N) break;
    }
  })();

  const order = [...handles];
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  let killed = 0;
  for (const p of order) if (p.kill('SIGKILL')) killed++;
  t.equal(killed, N, 'every one was alive and signalled through its pidfd');

  await iterating;
  await new Promise((r) => setTimeout(r, 300)); // room for any duplicate to show up
  t.equal(seen.size, N, 'an exit for every pid');
  t.same(
    [...seen.values()].filter((c) => c !== 1),
    [],
    'each exactly once',
  );
  t.same(
    pids.filter((pid) => !seen.has(pid)),
    [],
    'none missing',
  );
  t.same(bad, []);
  t.equal(iterated.length, N, 'the async iterator saw every exit too');
  t.same(new Set(iterated), new Set(pids));
  t.equal(w.size, 0, 'an exited process leaves the watcher');
  t.equal(pendingWatches(), watchesBefore, 'nothing left registered');
  w.close();
  t.same(await ended(forker), [0, null], 'the parent reaped all of them');
});

t.test("PidFds passed in stay the caller's; pids are opened and closed by the watcher", async (t) => {
  const a = sleeper();
  const b = sleeper();
  const w = new ExitWatcher();
  const pa = PidFd.fromChild(a);
  t.equal(w.add(pa), pa);
  t.equal(w.add(pa), pa, 'adding it again does nothing');
  const pb = w.add(b.pid as number);
  t.equal(w.size, 2);
  t.ok(w.has(pa) && w.has(b.pid as number) && w.has(pb));
  const exits: ExitInfo[] = [];
  w.on('exit', (info: ExitInfo) => exits.push(info));
  a.kill('SIGTERM');
  b.kill('SIGKILL');
  await Promise.all([exited(a), exited(b)]);
  while (exits.length < 2) await new Promise((r) => setTimeout(r, 5));
  t.same(
    exits.map((e) => [e.pid, e.signal]).sort(),
    [
      [a.pid, 'SIGTERM'],
      [b.pid, 'SIGKILL'],
    ].sort(),
  );
  t.equal(pa.closed, false, "the caller's PidFd is still open");
  t.equal(pb.closed, true, 'the one it opened is closed');
  pa.close();
  w.close();
});

t.test('delete stops watching; an exited process is reported at once; close ends iterators', async (t) => {
  const w = new ExitWatcher();
  const a = sleeper();
  const pa = w.add(a.pid as number);
  t.equal(w.delete(a.pid as number), true);
  t.equal(w.delete(a.pid as number), false);
  t.equal(pa.closed, true, 'an owned PidFd is closed on delete');
  let events = 0;
  w.on('exit', () => events++);
  a.kill('SIGKILL');
  await exited(a);

  const b = sleeper();
  const pb = PidFd.fromChild(b);
  b.kill('SIGKILL');
  await exited(b);
  const got = new Promise<ExitInfo>((resolve) => w.once('exit', resolve));
  w.add(pb);
  t.same(await got, { pid: b.pid, code: null, signal: 'SIGKILL', source: 'pidfd-info' }, 'already exited: reported');
  t.equal(events, 1, 'nothing for the deleted one');

  const it = w[Symbol.asyncIterator]();
  const next = it.next();
  w.close();
  t.same(await next, { value: undefined, done: true }, 'close ends a pending iteration');
  t.throws(() => w.add(process.pid), { code: 'ERR_PIDFD_CLOSED' });
  pb.close();
});

t.test('breaking out of for await ends that loop only: the watcher keeps watching', async (t) => {
  // The rule of Node's events.on(): leaving the loop removes that loop's listener; it does not close the emitter.
  const w = new ExitWatcher();
  const [a, b, c] = [sleeper(), sleeper(), sleeper()];
  const pa = w.add(a.pid as number);
  const pb = w.add(b.pid as number);
  const pc = PidFd.fromChild(c);
  w.add(pc);
  const it = w[Symbol.asyncIterator]();
  a.kill('SIGKILL');
  let first: ExitInfo | undefined;
  for await (const info of it) {
    first = info;
    break;
  }
  t.equal(first?.pid, a.pid, 'the loop saw the first exit');
  t.equal(pa.closed, true, 'the PidFd it opened for that process is closed');
  t.equal(w.closed, false, 'breaking out did not close the watcher');
  t.ok(w.has(pb) && w.has(pc) && w.size === 2, 'the other processes are still watched');
  t.equal(pb.closed, false, 'and the PidFds it opened for them are still open');
  const again = w[Symbol.asyncIterator]();
  const gotB = new Promise<ExitInfo>((resolve) => w.once('exit', resolve));
  b.kill('SIGKILL');
  t.equal((await gotB).pid, b.pid, "a later exit is still emitted as 'exit'");
  t.same(await it.next(), { value: undefined, done: true }, 'the loop that was left buffered nothing more');
  t.equal((await again.next()).value?.pid, b.pid, 'a loop started after the break gets the later exit');
  w.close();
  t.same(await again.next(), { value: undefined, done: true }, 'close ends the other loops');
  t.equal(pc.closed, false, "the caller's PidFd stays open after close");
  pc.close();
  c.kill('SIGKILL');
  await exited(c);
});

t.test("a PidFd closed by its owner while watched: 'error'", async (t) => {
  const w = new ExitWatcher();
  const a = sleeper();
  const p = w.add(PidFd.fromChild(a));
  const err = new Promise((resolve) => w.once('error', (e, q) => resolve([e, q])));
  p.close();
  const [e, q] = (await err) as [NodeJS.ErrnoException, PidFd];
  t.equal(e.code, 'ERR_PIDFD_CLOSED');
  t.equal(q, p);
  t.equal(w.size, 0);
  a.kill('SIGKILL');
  w.close();
});

t.test('ref: false does not keep the event loop alive', async (t) => {
  const stale = ensureDist();
  if (stale) throw new Error(stale);
  const script = `
    const { ExitWatcher } = require(${JSON.stringify(require.resolve('../../dist/index.js'))});
    const w = new ExitWatcher({ ref: false });
    w.add(process.ppid);
    setTimeout(() => console.log('loop alive'), 50).unref();
  `;
  const child = spawn(process.execPath, ['-e', script], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, NODE_OPTIONS: '' },
  });
  const out = new Lines(child.stdout);
  t.same(await ended(child), [0, null], 'exited on its own while watching its (live) parent');
  t.same(
    out.all.filter((l) => l !== ''),
    [],
  );
});

t.test('bad input', async (t) => {
  const w = new ExitWatcher();
  t.throws(() => w.add('1' as never), { code: 'ERR_INVALID_ARG_TYPE' });
  t.throws(() => w.add(0), { code: 'ERR_OUT_OF_RANGE' });
  t.throws(() => new ExitWatcher({ ref: 1 as never }), { code: 'ERR_INVALID_ARG_TYPE' });
  const closed = PidFd.open(process.pid);
  closed.close();
  t.throws(() => w.add(closed), { code: 'ERR_PIDFD_CLOSED' });
  w.close();
});
