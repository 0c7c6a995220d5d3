// A process whose thread-group leader has exited while another thread runs is alive: pidfd.memory(), pidfd.maps()
// and readProcess() read it through that live thread and show the memory it holds; once the whole process has
// exited (its last thread returned, or SIGKILL), memory() and maps() throw ESRCH.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { PidFd, readProcess } from '../../lib/index';
import { leaderExited } from '../helpers/leader-exit';
import { ended } from '../helpers/lines';

const MiB = 2 ** 20;
const HELD = 128;
const PF_EXITING = 0x4;

const statFields = (pid: number): string[] => {
  const s = readFileSync(`/proc/${pid}/stat`, 'latin1');
  return s.slice(s.lastIndexOf(')') + 2).split(' ');
};

t.test('memory() and maps() of a live process whose leader has exited', async (t) => {
  const hog = await leaderExited(HELD);
  const p = PidFd.fromChild(hog.proc);
  t.teardown(() => {
    hog.proc.kill('SIGKILL');
    p.close();
  });
  // The shape that hides it: the leader is a zombie with PF_EXITING, its own status has no VmRSS.
  const f = statFields(hog.pid);
  t.equal(f[0], 'Z', 'the leader shows as a zombie');
  t.ok((Number(f[6]) & PF_EXITING) !== 0, 'the leader has PF_EXITING');
  t.notMatch(readFileSync(`/proc/${hog.pid}/status`, 'latin1'), /^VmRSS:/m, "the leader's status has no VmRSS");
  t.equal(p.exited, false, 'the pidfd says alive');

  const m = p.memory();
  t.equal(m.source, 'smaps_rollup');
  t.ok(m.rss >= HELD * MiB, `rss ${(m.rss / MiB).toFixed(1)} MiB >= ${HELD} MiB`);
  t.ok(m.anon >= HELD * MiB, `anon ${(m.anon / MiB).toFixed(1)} MiB`);
  t.ok(m.pss >= HELD * MiB, `pss ${(m.pss / MiB).toFixed(1)} MiB`);
  const maps = p.maps();
  t.ok(
    maps.some((x) => x.kind === 'anon' && x.end - x.start >= BigInt(HELD * MiB)),
    `maps() lists the ${HELD} MiB mapping among ${maps.length}`,
  );
  t.ok(
    maps.some((x) => x.path.endsWith('/leader-exit')),
    'and the executable',
  );
  const v = readProcess(p);
  t.ok((v?.status?.get('VmRSS') ?? 0) >= HELD * MiB, "readProcess(): a live thread's status, with the memory");
  t.equal(v?.stat?.state, 'Z', "and the leader's own stat");
});

t.test('ESRCH once the last thread has exited, or after SIGKILL', async (t) => {
  for (const how of ['last thread returns', 'SIGKILL'] as const) {
    const hog = await leaderExited(16);
    const p = PidFd.fromChild(hog.proc);
    t.ok(p.memory().rss >= 16 * MiB, `${how}: readable while alive`);
    const end = ended(hog.proc);
    if (how === 'SIGKILL') hog.proc.kill('SIGKILL');
    else hog.proc.stdin!.write('exit\n');
    t.same(await end, how === 'SIGKILL' ? [null, 'SIGKILL'] : [0, null], `${how}: the process ended`);
    await p.waitExit({ timeout: 10_000 });
    t.throws(() => p.memory(), { code: 'ESRCH', syscall: 'read' }, `${how}: memory() throws ESRCH`);
    t.throws(() => p.maps(), { code: 'ESRCH', syscall: 'read' }, `${how}: maps() throws ESRCH`);
    p.close();
  }
});
