// Pressure Stall Information: readPressure parses the files; watchPressure in trigger mode
// (on /proc/pressure/cpu and on a cgroup v2 cpu.pressure file of our own) reports real CPU contention, reports
// nothing for a quiet group (after the arming noise, which is checked against the stall totals and dropped); a
// trigger the kernel refuses runs in poll mode and says why; close() stops every event.
//
// Contention: psi-spin processes pinned to one CPU queue up behind each other, so "some" task in their group is
// always waiting for that CPU (close to 100% "some" CPU pressure for the group). The quiet group holds one sleeping
// process and nothing else, so whatever else runs on this machine cannot make it stall.
import t, { Test } from 'tap';
import { ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PressureEvent, PressureWatcher, readPressure, watchPressure } from '../../lib/index';
import { sleeper } from '../helpers/procs';
import {
  cgroup2Root,
  makeV2Group,
  memoryV1Root,
  removeAllGroups,
  sleep,
  spinners,
  stopAll,
} from '../helpers/mem-helpers';

const THRESHOLD = 100; // ms of stall
const WINDOW = 2000; // ms: the smallest window an unprivileged trigger may use
/** Long enough for two windows and the 2 s tick on which unprivileged triggers are evaluated, with margin. */
const QUIET_MS = 2 * WINDOW + 3000;
/** Contention must produce an event within this (it normally takes one or two 2 s ticks). */
const EVENT_GUARD_MS = 20_000;

const procs: ChildProcess[] = [];
t.teardown(async () => {
  await stopAll(procs);
  await removeAllGroups();
});
const v2 = cgroup2Root();

function collect(w: PressureWatcher): PressureEvent[] {
  const events: PressureEvent[] = [];
  w.on('pressure', (e) => events.push(e));
  return events;
}

function nextEvent(w: PressureWatcher, guardMs = EVENT_GUARD_MS): Promise<PressureEvent> {
  return new Promise((resolve, reject) => {
    const guard = setTimeout(
      () => reject(new Error(`no pressure event within ${guardMs} ms (${w.mode}, ignored ${w.ignored})`)),
      guardMs,
    );
    w.once('pressure', (e) => {
      clearTimeout(guard);
      resolve(e);
    });
  });
}

function checkEvent(t: Test, e: PressureEvent, mode: 'trigger' | 'poll'): void {
  t.equal(e.mode, mode);
  t.equal(e.resource, 'cpu');
  t.equal(e.kind, 'some');
  t.ok(e.stall >= THRESHOLD, `the totals show ${e.stall.toFixed(0)} ms of stall over ${e.span.toFixed(0)} ms`);
  t.ok(e.total > 0);
}

t.test('readPressure parses the system files and a cgroup v2 group', async (t) => {
  // The totals only grow, so the parsed one must lie between two raw reads taken around it. (A fresh machine may have
  // no memory or io stall at all since boot: a total of 0 is a fact, not a parse error.)
  const rawTotal = (r: string, kind: string): number => {
    const m = new RegExp(`^${kind} avg10=[0-9.]+ avg60=[0-9.]+ avg300=[0-9.]+ total=([0-9]+)$`, 'm').exec(
      readFileSync(`/proc/pressure/${r}`, 'latin1'),
    );
    return m ? Number(m[1]) : NaN;
  };
  for (const r of ['cpu', 'memory', 'io'] as const) {
    const before = rawTotal(r, 'some');
    const p = readPressure(r);
    const after = rawTotal(r, 'some');
    for (const line of [p.some, p.full]) {
      if (!line) continue;
      for (const k of ['avg10', 'avg60', 'avg300', 'total'] as const)
        t.ok(Number.isFinite(line[k]) && line[k] >= 0, `${r} ${k}`);
    }
    t.ok(
      before <= p.some.total && p.some.total <= after,
      `${r}: some total ${before} <= ${p.some.total} <= ${after} µs (the file's own figure)`,
    );
    t.equal(
      p.full !== undefined,
      !Number.isNaN(rawTotal(r, 'full')),
      `${r}: a full line exactly when the file has one`,
    );
  }
  if (!v2) return t.skip('no cgroup v2 mounted', () => {});
  const g = makeV2Group('read')!;
  const p = readPressure('memory', { cgroup: g });
  t.same(p.some, { avg10: 0, avg60: 0, avg300: 0, total: 0 }, 'a fresh group has no stall');
  t.throws(() => readPressure('disk' as never), { code: 'ERR_INVALID_ARG_VALUE' });
  t.throws(() => readPressure('cpu', { cgroup: 1 as never }), { code: 'ERR_INVALID_ARG_TYPE' });
  const v1 = memoryV1Root();
  if (v1)
    t.throws(
      () => readPressure('memory', { cgroup: v1 }),
      { code: 'ENOENT' },
      'a cgroup v1 directory has no pressure files',
    );
});

t.test(
  'trigger mode on a cgroup v2 cpu.pressure: quiet means no event, contention means events, close means none',
  { skip: !v2 && 'no cgroup v2 mounted' },
  async (t) => {
    const g = makeV2Group('trig')!;
    const idle = sleeper();
    procs.push(idle);
    writeFileSync(join(g, 'cgroup.procs'), String(idle.pid));
    const w = watchPressure({ resource: 'cpu', threshold: THRESHOLD, window: WINDOW, cgroup: g });
    t.teardown(() => w.close());
    t.equal(w.mode, 'trigger', 'the kernel accepted the trigger');
    t.equal(w.fallbackReason, undefined);
    t.equal(w.path, join(g, 'cpu.pressure'));
    const events = collect(w);
    await sleep(QUIET_MS);
    t.same(
      events,
      [],
      `a quiet group: no event in ${QUIET_MS} ms (kernel events dropped as arming noise: ${w.ignored})`,
    );

    procs.push(...(await spinners(3, 0, g)));
    const e = await nextEvent(w);
    checkEvent(t, e, 'trigger');
    const n = events.length;
    t.ok(n >= 1);

    // Async iteration sees the next one
    const it = w[Symbol.asyncIterator]();
    const second = await Promise.race([it.next(), sleep(EVENT_GUARD_MS).then(() => undefined)]);
    t.ok(second && !second.done, 'the iterator yields events too');

    const closed = new Promise((r) => w.once('close', r));
    w.close();
    await closed;
    t.equal(w.closed, true);
    const count = events.length;
    t.same(await it.next(), { value: undefined, done: true }, 'the iterator ends at close');
    await sleep(WINDOW + 2500); // the contention goes on: a live trigger would fire again
    t.equal(events.length, count, 'no event after close');
    await stopAll(procs.splice(0));
  },
);

t.test('trigger mode on /proc/pressure/cpu: real contention produces events', async (t) => {
  const w = watchPressure({ resource: 'cpu', threshold: THRESHOLD, window: WINDOW });
  t.teardown(() => w.close());
  t.equal(w.mode, 'trigger');
  t.equal(w.path, '/proc/pressure/cpu');
  const spin = await spinners(3, 0);
  procs.push(...spin);
  checkEvent(t, await nextEvent(w), 'trigger');
  w.close();
  await stopAll(procs.splice(0));
});

t.test('a refused trigger: poll mode, and it says why', { skip: !v2 && 'no cgroup v2 mounted' }, async (t) => {
  // A 1 s window is refused without CAP_SYS_RESOURCE (EINVAL): unprivileged windows are 2, 4, 6, 8 or 10 s.
  const g = makeV2Group('poll')!;
  t.throws(() => watchPressure({ resource: 'cpu', threshold: THRESHOLD, window: 1000, cgroup: g, mode: 'trigger' }), {
    code: 'ERR_PIDFD_PSI_TRIGGER',
    message: /EINVAL.*2, 4, 6, 8 or 10 s/,
  });
  const w = watchPressure({ resource: 'cpu', threshold: THRESHOLD, window: 1000, cgroup: g, interval: 100 });
  t.teardown(() => w.close());
  t.equal(w.mode, 'poll');
  t.match(w.fallbackReason, /EINVAL/);
  t.equal(w.interval, 100);
  const events = collect(w);
  await sleep(2500);
  t.same(events, [], 'quiet: no event');
  procs.push(...(await spinners(3, 0, g)));
  checkEvent(t, await nextEvent(w), 'poll');
  const first = events[0];
  await sleep(1500);
  for (let i = 1; i < events.length; i++) {
    t.ok(events[i].time - events[i - 1].time >= 1000 - 50, 'at most one event per window');
  }
  t.ok(first);
  w.close();
  const count = events.length;
  await sleep(1500);
  t.equal(events.length, count, 'no event after close');
  await stopAll(procs.splice(0));
  // mode: 'poll' on request, with a reason saying so
  const forced = watchPressure({ resource: 'cpu', threshold: THRESHOLD, window: WINDOW, cgroup: g, mode: 'poll' });
  t.equal(forced.mode, 'poll');
  t.match(forced.fallbackReason, /asked/);
  forced.close();
});

t.test('breaking out of for await ends that loop only: the watcher stays open and keeps reporting', async (t) => {
  // The rule of Node's events.on(): leaving the loop removes that loop's listener; it does not close the emitter.
  const w = watchPressure({ resource: 'cpu', threshold: THRESHOLD, window: 1000, interval: 50, mode: 'poll' });
  t.teardown(() => w.close());
  procs.push(...(await spinners(3, 0)));
  const it = w[Symbol.asyncIterator]();
  const guard = setTimeout(() => w.close(), EVENT_GUARD_MS); // ends the loop below if no event ever comes
  let first: PressureEvent | undefined;
  for await (const e of { [Symbol.asyncIterator]: () => it }) {
    first = e;
    break;
  }
  clearTimeout(guard);
  t.ok(first, 'the loop saw an event');
  t.equal(w.closed, false, 'breaking out did not close the watcher');
  const again = w[Symbol.asyncIterator]();
  const later = await nextEvent(w);
  checkEvent(t, later, 'poll');
  t.same(await it.next(), { value: undefined, done: true }, 'the loop that was left buffered nothing more');
  const next = await Promise.race([again.next(), sleep(EVENT_GUARD_MS).then(() => undefined)]);
  t.same(next, { value: later, done: false }, 'a loop started after the break gets the same events');
  w.close();
  t.same(await again.next(), { value: undefined, done: true }, 'close ends the other loops');
  await stopAll(procs.splice(0));
});

t.test('abort signal, unref and bad options', async (t) => {
  const ac = new AbortController();
  const w = watchPressure({ resource: 'memory', threshold: 150, window: 2000, signal: ac.signal, ref: false });
  t.equal(w.closed, false);
  ac.abort();
  t.equal(w.closed, true, 'aborting closes it');
  const bad: [object, string][] = [
    [{ resource: 'cpu', threshold: 100, window: 100 }, 'ERR_OUT_OF_RANGE'],
    [{ resource: 'cpu', threshold: 100, window: 20_000 }, 'ERR_OUT_OF_RANGE'],
    [{ resource: 'cpu', threshold: 3000, window: 2000 }, 'ERR_OUT_OF_RANGE'],
    [{ resource: 'cpu', threshold: '100', window: 2000 }, 'ERR_INVALID_ARG_TYPE'],
    [{ resource: 'gpu', threshold: 100, window: 2000 }, 'ERR_INVALID_ARG_VALUE'],
    [{ resource: 'cpu', kind: 'most', threshold: 100, window: 2000 }, 'ERR_INVALID_ARG_VALUE'],
    [{ resource: 'cpu', threshold: 100, window: 2000, mode: 'fast' }, 'ERR_INVALID_ARG_VALUE'],
    [{ resource: 'cpu', threshold: 100, window: 2000, interval: 5 }, 'ERR_OUT_OF_RANGE'],
  ];
  for (const [o, code] of bad) t.throws(() => watchPressure(o as never), { code }, JSON.stringify(o));
  t.throws(() => watchPressure(undefined as never), { code: 'ERR_INVALID_ARG_TYPE' });
  t.throws(() => watchPressure({ resource: 'cpu', threshold: 100, window: 2000, cgroup: '/nonexistent' }), {
    code: 'ENOENT',
  });
  t.ok(existsSync('/proc/pressure/cpu'));
});
