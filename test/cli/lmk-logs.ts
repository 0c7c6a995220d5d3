// What `pidfd lmk` writes: JSON lines (one object per event, the documented fields), human lines, the same with
// syslog priorities for journald (chosen by itself when systemd's JOURNAL_STREAM says stdout is the journal), and
// the periodic report. Against real workers in a memory cgroup of the test's own, in dry run.
import t from 'tap';
import { join } from 'node:path';
import { startCliEnv } from '../helpers/cli';
import { ended } from '../helpers/lines';
import { makeV1MemoryGroup, memoryV1Root, removeAllGroups, Worker } from '../helpers/mem-helpers';

const MiB = 2 ** 20;
const workers: Worker[] = [];
t.teardown(async () => {
  for (const w of workers) await w.kill();
  await removeAllGroups();
});

if (!memoryV1Root()) t.skip('no cgroup v1 memory controller: the budget cannot be made', () => {});
else main();

function main(): void {
  let g = '';
  t.before(async () => {
    g = makeV1MemoryGroup('lmk-logs', 512 * MiB)!;
    const w = await new Worker([join(g, 'cgroup.procs')]).ready();
    workers.push(w);
    await w.ask('a 32', 'anon');
  });
  // Always in pressure (100 %), deciding without acting, with a report every 300 ms.
  const start = (env: NodeJS.ProcessEnv, ...args: string[]) =>
    startCliEnv(
      env,
      'lmk',
      '--cgroup',
      g,
      '--min-available',
      '100%',
      '--dry-run',
      '--no-reclaim',
      '--report',
      '300ms',
      '--oom-score-adj',
      'keep',
      '--nice',
      'keep',
      ...args,
    );

  t.test('--log-format json: one object per line, the documented fields', async (t) => {
    const run = start({}, '--log-format', 'json');
    await run.out.waitFor((l) => l.includes('"event":"report"'), 'a report');
    run.child.kill('SIGTERM');
    t.same(await ended(run.child), [0, null]);
    const records = run.out.all.filter((l) => l !== '').map((l) => JSON.parse(l));
    t.ok(records.length >= 5, `${records.length} records`);
    t.ok(
      records.every((r) => typeof r.event === 'string' && Object.keys(r)[0] === 'event'),
      'each names its event first',
    );
    const by = (e: string): any => records.find((r) => r.event === e);
    t.match(by('start'), { headroom: { available: Number, total: 512 * MiB }, threshold: 512 * MiB, dryRun: true });
    t.match(by('pressure'), { episode: 1, reason: /available .* < 512\.0 MiB/ });
    t.match(by('kill'), { pid: workers[0].pid, comm: 'mem-worker', dryRun: true, pss: Number, killMode: 'process' });
    t.match(by('report'), {
      available: Number,
      total: 512 * MiB,
      swapFree: Number,
      swapTotal: Number,
      candidates: 1,
      episodes: 1,
      kills: 1,
      kernelOomKills: 0,
    });
    t.equal(records.at(-1).event, 'stop');
  });

  t.test('syslog priorities: a kill is <5> in dry run, pressure <5>, the rest <6>', async (t) => {
    const run = start({}, '--log-format', 'syslog');
    await run.out.waitFor((l) => l.includes('report:'), 'a report');
    run.child.kill('SIGTERM');
    await ended(run.child);
    const lines = run.out.all.filter((l) => l !== '');
    t.ok(
      lines.every((l) => /^<[0-7]>\S/.test(l)),
      'every line starts with a priority',
    );
    t.match(lines.find((l) => l.includes('would kill')) ?? '', /^<5>would kill \d+ \(mem-worker/);
    t.match(lines.find((l) => l.includes('pressure:')) ?? '', /^<5>episode 1: pressure:/);
    t.match(lines.find((l) => l.includes('watching')) ?? '', /^<6>watching memory cgroup /);
    t.match(lines.find((l) => l.includes('report:')) ?? '', /^<6>report: .* available, .*1 candidates, 1 episodes/);
  });

  t.test('auto: syslog priorities under journald (JOURNAL_STREAM), timestamps elsewhere', async (t) => {
    for (const [env, re] of [
      [{ JOURNAL_STREAM: '8:12345' }, /^<6>watching /],
      [{ JOURNAL_STREAM: '' }, /^\d\d:\d\d:\d\d\.\d{3} watching /],
    ] as const) {
      const run = start(env);
      const line = await run.out.waitFor((l) => l.includes('watching'), 'the start line');
      run.child.kill('SIGTERM');
      await ended(run.child);
      t.match(line, re, JSON.stringify(env));
    }
  });
}
