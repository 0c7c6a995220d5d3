// The killer with its defaults against a hog allocating as fast as it can inside a 2 GiB memory-cgroup budget
// (a 10 % margin: ~200 MiB, under 0.2 s at this machine's allocation rate): `pidfd lmk --cgroup DIR` must kill
// the hog before the kernel's OOM killer fires, every time, and never the bystander beside it. The cgroup's own
// oom_kill counter is the kernel's word on whether it had to act.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startCli } from '../helpers/cli';
import { ended } from '../helpers/lines';
import { until } from '../helpers/procs';
import { makeV1MemoryGroup, memoryV1Root, removeAllGroups, Worker } from '../helpers/mem-helpers';

const MiB = 2 ** 20;
const BUDGET = 2048 * MiB;
const TRIALS = 20;
const workers: Worker[] = [];
t.teardown(async () => {
  for (const w of workers) await w.kill();
  await removeAllGroups();
});

const oomKills = (g: string): number =>
  Number(/^oom_kill (\d+)$/m.exec(readFileSync(join(g, 'memory.oom_control'), 'latin1'))?.[1] ?? NaN);

t.test(
  `defaults: ${TRIALS} of ${TRIALS} fast hogs killed before the kernel OOM killer, no bystander harmed`,
  { skip: !memoryV1Root() && 'no cgroup v1 memory controller: the budget cannot be made' },
  async (t) => {
    const g = makeV1MemoryGroup('lmk-fast-hog', BUDGET)!;
    const procs = join(g, 'cgroup.procs');
    const bystander = await new Worker([procs]).ready();
    workers.push(bystander);
    await bystander.ask('a 16', 'anon');
    const run = startCli('lmk', '--cgroup', g, '--json');
    t.teardown(() => void run.child.kill('SIGTERM'));
    await run.out.waitFor((l) => l.includes('"event":"start"'), 'the killer watching');
    const events = (name: string): any[] =>
      run.out.all
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l))
        .filter((e) => e.event === name);
    const kills = (): any[] => events('kill');
    for (let i = 0; i < TRIALS; i++) {
      const oomBefore = oomKills(g);
      const from = run.out.all.length;
      const hog = await new Worker([procs]).ready();
      workers.push(hog);
      hog.proc.stdin!.write('a 4096\n'); // twice the budget, as fast as the machine maps and touches pages
      const [, signal] = await ended(hog.proc);
      // The kill event follows the death (it reports the memory regained): give it a moment, not forever.
      await until(() => kills().some((e) => e.pid === hog.pid), `trial ${i + 1}: a kill event`, 5000).catch(() => {});
      const k = kills().find((e) => e.pid === hog.pid);
      const ok = [
        t.equal(oomKills(g) - oomBefore, 0, `trial ${i + 1}: the kernel's OOM killer did not act`),
        t.equal(signal, 'SIGKILL', `trial ${i + 1}: the hog died of SIGKILL`),
        t.ok(k, `trial ${i + 1}: killed by the killer (${k ? `${(k.pss / MiB).toFixed(0)} MiB` : 'no kill event'})`),
      ];
      if (ok.includes(false))
        t.comment(
          `the killer (exit ${run.child.exitCode}/${run.child.signalCode}) said: ${run.out.all.slice(from).join('\n')}`,
        );
      // Wait for the episode to end before the next hog, as a real workload would restart after a kill.
      await until(() => events('recovered').length > i, `recovery after trial ${i + 1}`);
    }
    t.equal(bystander.proc.exitCode, null, 'the bystander lives');
    t.equal(bystander.proc.signalCode, null);
    t.equal(kills().length, TRIALS, 'one kill per hog, none other');
  },
);
