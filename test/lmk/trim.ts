// The trim signal reaches only processes that catch it (SigCgt in /proc/<pid>/status) or that trim.always names.
// SIGUSR1's default action is to terminate: a candidate without a handler that got it would die, so the three
// workers with the default action surviving the trim step is the proof (and the `always` test shows that one of
// them does die when it is sent the signal anyway).
//
// Budget: a cgroup v1 memory group of the test's own (512 MiB). The killer's threshold is set just above the
// headroom the workers leave, so that the trimming worker's 64 MiB end the episode without a kill.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { LowMemoryKiller, TrimEvent } from '../../lib/index';
import { catchesSignal, parseSignalMask } from '../../lib/procfs';
import {
  budgetWorker,
  makeV1MemoryGroup,
  memoryV1Root,
  recordEvents,
  removeAllGroups,
  Worker,
} from '../helpers/mem-helpers';
import { exited } from '../helpers/procs';

const MiB = 2 ** 20;
const LIMIT = 512 * MiB;
const SIGUSR1 = 10;

const workers: Worker[] = [];
t.teardown(async () => {
  for (const w of workers) await w.kill();
  await removeAllGroups();
});

const alive = (w: Worker): boolean => w.proc.exitCode === null && w.proc.signalCode === null;

t.test('SigCgt, SigIgn: read from a real process', async (t) => {
  const w = await new Worker().ready();
  workers.push(w);
  await w.ask('h 12', 'handling 12');
  const status = readFileSync(`/proc/${w.pid}/status`, 'latin1');
  t.equal(catchesSignal(status, 12), true, 'SIGUSR2: caught');
  t.equal(catchesSignal(status, SIGUSR1), false, 'SIGUSR1: ignored, not caught');
  t.equal(((parseSignalMask(status, 'SigIgn') ?? 0n) >> 9n) & 1n, 1n, 'SIGUSR1 is in SigIgn (bit 9)');
  t.equal(catchesSignal(status, 15), false, 'SIGTERM: default action');
  t.equal(catchesSignal('Name:\tx\n', 12), false, 'no SigCgt field: not caught');
  await w.kill();
});

if (!memoryV1Root()) {
  t.skip('no cgroup v1 memory controller: these tests need a memory group of their own', () => {});
} else {
  t.test('only the worker with a handler is sent the trim signal; the three without survive', async (t) => {
    const g = makeV1MemoryGroup('trim-catchers', LIMIT)!;
    const plain: Worker[] = [];
    for (let i = 0; i < 3; i++) {
      const w = await budgetWorker(workers, g, 0, 16);
      await w.ask(`d ${SIGUSR1}`, `default ${SIGUSR1}`); // SIGUSR1 would terminate it
      plain.push(w);
    }
    const trimmer = await budgetWorker(workers, g, 0, 64);
    await trimmer.ask('t', 'trim on');
    const probe = new LowMemoryKiller({ candidates: () => [], memory: { cgroup: g }, minAvailable: 0 });
    const available = probe.headroom().available;
    await probe.stop();
    const lmk = new LowMemoryKiller({
      candidates: { cgroup: g },
      memory: { cgroup: g },
      minAvailable: available + 32 * MiB, // under pressure now; back above it once the 64 MiB are freed
      reclaim: false,
      trim: { signal: 'SIGUSR1', deadline: 10_000 },
    });
    const log = recordEvents(lmk);
    await lmk.check();
    await lmk.stop();
    t.match(await trimmer.next('trimmed'), /^trimmed 67108864$/, 'the worker with a handler freed its 64 MiB');
    const trims = log.filter((x) => x.type === 'trim').map((x) => x.e as TrimEvent);
    t.same(
      trims.map((e) => [e.pid, e.signalled]),
      [[trimmer.pid, true]],
      'one trim event: the worker that catches SIGUSR1',
    );
    for (const w of plain) t.ok(alive(w), `worker ${w.pid} (default action) was not sent SIGUSR1 and lives`);
    t.same(
      log.filter((x) => x.type === 'kill'),
      [],
      'no kill: the trim ended the episode',
    );
  });

  t.test('trim.always: a listed candidate is sent the signal without a handler (and, here, dies of it)', async (t) => {
    const g = makeV1MemoryGroup('trim-always', LIMIT)!;
    const listed = await budgetWorker(workers, g, 0, 16);
    await listed.ask(`d ${SIGUSR1}`, `default ${SIGUSR1}`);
    const unlisted = await budgetWorker(workers, g, 0, 16);
    await unlisted.ask(`d ${SIGUSR1}`, `default ${SIGUSR1}`);
    const end = exited(listed.proc);
    const probe = new LowMemoryKiller({ candidates: () => [], memory: { cgroup: g }, minAvailable: 0 });
    const available = probe.headroom().available;
    await probe.stop();
    const lmk = new LowMemoryKiller({
      candidates: { cgroup: g },
      memory: { cgroup: g },
      minAvailable: available + 8 * MiB, // the listed worker's 16 MiB, back at its death, end the episode
      reclaim: false,
      trim: { signal: 'SIGUSR1', deadline: 5000, always: [listed.pid] },
    });
    const log = recordEvents(lmk);
    await lmk.check();
    await lmk.stop();
    t.same(await end, [null, 'SIGUSR1'], 'the listed worker got SIGUSR1 (its default action ended it)');
    const trims = log.filter((x) => x.type === 'trim').map((x) => x.e as TrimEvent);
    t.same(
      trims.map((e) => [e.pid, e.signalled]),
      [[listed.pid, true]],
    );
    t.ok(alive(unlisted), 'the unlisted one was not sent it, and lives');
    t.same(
      log.filter((x) => x.type === 'kill'),
      [],
      'no kill',
    );
  });
}
