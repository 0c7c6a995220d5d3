// `pidfd lmk` run as an operator runs the service, against real hogs in a memory cgroup of the test's own: its
// /metrics scraped during a run with kills (accepted by promtool, its counters the kill events the test saw), the
// metrics file, `pidfd lmk status` over the status socket, and its own oom_score_adj and nice read back from /proc.
import t from 'tap';
import { missingTool } from '../helpers/prebuilds';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { get } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cli, startCli } from '../helpers/cli';
import { ended } from '../helpers/lines';
import { until } from '../helpers/procs';
import { readableCopy } from '../helpers/readable-copy';
import { makeV1MemoryGroup, memoryV1Root, removeAllGroups, Worker } from '../helpers/mem-helpers';

const MiB = 2 ** 20;
const KILLS = 3;
const dir = mkdtempSync(join(tmpdir(), 'pidfd-lmk-service-'));
const workers: Worker[] = [];
t.teardown(async () => {
  for (const w of workers) await w.kill();
  await removeAllGroups();
});
const promtool = spawnSync('promtool', ['--version']).error === undefined;

const scrape = (port: number): Promise<{ status: number; body: string }> =>
  new Promise((resolve, reject) => {
    get({ host: '127.0.0.1', port, path: '/metrics' }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    }).on('error', reject);
  });
const sample = (text: string, name: string, labels = ''): number => {
  const line = text.split('\n').find((l) => l.startsWith(`${name}${labels} `));
  return line === undefined ? NaN : Number(line.slice(line.lastIndexOf(' ') + 1));
};
/** The sum of a metric over its labels. */
const total = (text: string, name: string): number =>
  text
    .split('\n')
    .filter((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `))
    .reduce((s, l) => s + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);

t.test(
  'metrics, the metrics file and status during a run with real kills',
  { skip: !memoryV1Root() && 'no cgroup v1 memory controller: the budget cannot be made' },
  async (t) => {
    const g = makeV1MemoryGroup('lmk-service', 512 * MiB)!;
    const procs = join(g, 'cgroup.procs');
    const bystander = await new Worker([procs]).ready();
    workers.push(bystander);
    await bystander.ask('a 16', 'anon');
    const socket = join(dir, 'status.sock');
    const file = join(dir, 'pidfd-lmk.prom');
    const run = startCli(
      'lmk',
      '--cgroup',
      g,
      '--json',
      '--metrics',
      '127.0.0.1:0',
      '--metrics-file',
      file,
      '--metrics-interval',
      '100ms',
      '--status-socket',
      socket,
      '--oom-score-adj',
      '500',
      '--nice',
      '5',
    );
    t.teardown(() => void run.child.kill('SIGTERM'));
    const records = (): any[] => run.out.all.filter((l) => l.startsWith('{')).map((l) => JSON.parse(l));
    const listen = JSON.parse(await run.out.waitFor((l) => l.includes('"what":"status"'), 'the status socket'));
    t.equal(listen.address, socket);
    const port = Number(
      /:(\d+)$/.exec(records().find((r) => r.event === 'listen' && r.what === 'metrics').address)![1],
    );

    // Its own protection, as /proc says from outside: raised oom_score_adj (allowed to anyone) and nice 5.
    t.equal(readFileSync(`/proc/${run.child.pid}/oom_score_adj`, 'utf8').trim(), '500', 'oom_score_adj 500');
    t.equal(readFileSync(`/proc/${run.child.pid}/stat`, 'utf8').split(') ')[1].split(' ')[16], '5', 'nice 5');
    t.match(
      records().filter((r) => r.event === 'protect'),
      [
        { what: 'oom-score-adj', asked: 500, now: 500, done: true },
        { what: 'nice', asked: 5, now: 5, done: true },
        { what: 'lock', asked: true },
      ],
    );

    const hogs: number[] = [];
    for (let i = 0; i < KILLS; i++) {
      const hog = await new Worker([procs]).ready();
      workers.push(hog);
      hogs.push(hog.pid);
      hog.proc.stdin!.write('a 1024\n'); // twice the budget
      const [, signal] = await ended(hog.proc);
      t.equal(signal, 'SIGKILL', `hog ${i + 1} died of SIGKILL`);
      await until(() => records().filter((r) => r.event === 'recovered').length > i, `recovery ${i + 1}`);
    }
    const kills = records().filter((r) => r.event === 'kill');
    t.same(
      kills.map((k) => k.pid),
      hogs,
      'one kill per hog',
    );

    const { status, body } = await scrape(port);
    t.equal(status, 200);
    t.equal(sample(body, 'pidfd_lmk_kills_total', '{reason="memory",mode="process"}'), KILLS, 'kills by reason, mode');
    t.equal(sample(body, 'pidfd_lmk_kill_death_seconds_count'), KILLS, 'time to death, one per kill');
    const freed = kills.reduce((s, k) => s + Math.max(0, k.bytesFreed), 0);
    t.equal(sample(body, 'pidfd_lmk_freed_bytes_total'), freed, 'bytes freed, as the kill events say');
    t.equal(total(body, 'pidfd_lmk_episodes_total'), records().filter((r) => r.event === 'pressure').length);
    // A hog at full speed may meet the kernel's OOM killer in the same instant (fast-hog.ts is the test of speed):
    // the counter must say what the kernel says.
    const kernel = Number(/^oom_kill (\d+)$/m.exec(readFileSync(join(g, 'memory.oom_control'), 'latin1'))![1]);
    t.equal(
      sample(body, 'pidfd_lmk_kernel_oom_kills_total'),
      kernel,
      "the kernel's OOM kills, as the cgroup counts them",
    );
    t.equal(
      records()
        .filter((r) => r.event === 'kernel-oom')
        .reduce((n, r) => n + r.count, 0),
      kernel,
    );
    t.equal(sample(body, 'pidfd_lmk_total_bytes'), 512 * MiB, 'the budget');
    if (promtool) {
      const r = spawnSync('promtool', ['check', 'metrics'], { input: body, encoding: 'utf8' });
      t.equal(r.status, 0, `promtool check metrics: ${r.stdout}${r.stderr}`);
    } else {
      missingTool(t, 'promtool check metrics', 'apt-get install prometheus');
    }
    await until(() => {
      try {
        return sample(readFileSync(file, 'utf8'), 'pidfd_lmk_kill_death_seconds_count') === KILLS;
      } catch {
        return false;
      }
    }, 'the metrics file with every kill');

    const st = cli('lmk', 'status', '--status-socket', socket, '--json');
    t.equal(st.status, 0, st.stderr);
    const doc = JSON.parse(st.stdout);
    t.equal(doc.pid, run.child.pid);
    t.equal(doc.kills, KILLS);
    t.same(
      doc.lastKills.map((k: any) => k.pid),
      hogs,
      'the last kills',
    );
    t.same(
      doc.candidates.map((c: any) => c.pid),
      [bystander.pid],
      'the candidates as ranked now',
    );
    t.equal(doc.config.settings.cgroup, g);
    t.equal(doc.config.settings['oom-score-adj'], 500);
    const human = cli('lmk', 'status', '--status-socket', socket);
    t.equal(human.status, 0);
    t.match(human.stdout, new RegExp(`^pidfd lmk, pid ${run.child.pid}, running since `));
    t.match(human.stdout, new RegExp(`last kills \\(${KILLS}\\):\\n {2}\\s*${hogs[0]} mem-worker`));

    t.equal(bystander.proc.exitCode, null, 'the bystander lives');
    run.child.kill('SIGTERM');
    t.same(await ended(run.child), [0, null]);
    const gone = cli('lmk', 'status', '--status-socket', socket);
    t.equal(gone.status, 1);
    t.match(gone.stderr, /ENOENT: .*no status socket at .*: is the killer running/, 'the socket went with it');
  },
);

t.test('without the privilege to lower its oom_score_adj it says so and still works', async (t) => {
  // As root without CAP_SYS_RESOURCE (this machine) lowering oom_score_adj fails; as any user the default -1000
  // does. Either way the killer says so and runs.
  const r = cli('lmk', '--children-of', String(process.pid), '--once', '--json', '--nice', 'keep');
  t.equal(r.status, 0, r.stderr);
  const adj = r.stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l))
    .find((x) => x.event === 'protect' && x.what === 'oom-score-adj');
  const capable = readFileSync('/proc/self/status', 'utf8').match(/^CapEff:\s+([0-9a-f]+)$/m)![1];
  const hasResource = (BigInt(`0x${capable}`) & (1n << 24n)) !== 0n;
  if (hasResource) t.match(adj, { asked: -1000, now: -1000, done: true });
  else t.match(adj, { asked: -1000, done: false, code: 'EACCES' }, 'EACCES reported, and it ran on');
});

t.test(
  'pre-kill and post-kill commands: a hanging pre-kill delays the kill by its timeout, post-kill gets the kill',
  { skip: !memoryV1Root() && 'no cgroup v1 memory controller: the budget cannot be made' },
  async (t) => {
    const g = makeV1MemoryGroup('lmk-service-hooks', 512 * MiB)!;
    const procs = join(g, 'cgroup.procs');
    const pre = join(dir, 'pre.env');
    const post = join(dir, 'post.env');
    const run = startCli(
      'lmk',
      '--cgroup',
      g,
      '--json',
      '--pre-kill',
      `env > ${pre}; cat /proc/self/oom_score_adj >> ${pre}; sleep 30`,
      '--pre-kill-timeout',
      '300ms',
      '--post-kill',
      `{ env; echo ADJ=$(cat /proc/self/oom_score_adj); } > ${post}.tmp && mv ${post}.tmp ${post}`,
    );
    t.teardown(() => void run.child.kill('SIGTERM'));
    const records = (): any[] => run.out.all.filter((l) => l.startsWith('{')).map((l) => JSON.parse(l));
    await run.out.waitFor((l) => l.includes('"event":"sampling"'), 'the killer sampling');
    const hog = await new Worker([procs]).ready();
    workers.push(hog);
    // Into pressure (below 10 %: 51.2 MiB) but not to the critical level (half of it), which would end the wait.
    hog.proc.stdin!.write('a 470\n');
    const [, signal] = await ended(hog.proc);
    t.equal(signal, 'SIGKILL', 'the hog died of SIGKILL');
    await until(() => records().some((r) => r.event === 'hook' && r.hook === 'post-kill'), 'the post-kill hook');
    const kill = records().find((r) => r.event === 'kill');
    t.equal(kill.pid, hog.pid);
    t.equal(kill.preKillResult, 'timeout', 'the pre-kill hung: the kill went on at its timeout');
    t.ok(kill.preKillMs >= 300 && kill.decisionMs >= kill.preKillMs, `waited ${kill.preKillMs} ms, no less`);
    const preHook = records().find((r) => r.event === 'hook' && r.hook === 'pre-kill');
    t.match(preHook, { pid: hog.pid, ok: false, aborted: true }, 'the pre-kill was killed when the wait ended');
    const preEnv = readFileSync(pre, 'utf8');
    t.match(preEnv, new RegExp(`^PIDFD_LMK_PID=${hog.pid}$`, 'm'));
    t.match(preEnv, /^PIDFD_LMK_HOOK=pre-kill$/m);
    const env = Object.fromEntries(
      readFileSync(post, 'utf8')
        .split('\n')
        .filter((l) => l.includes('='))
        .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
    );
    t.equal(env.PIDFD_LMK_HOOK, 'post-kill');
    t.equal(env.PIDFD_LMK_PID, String(hog.pid));
    t.equal(env.PIDFD_LMK_NAME, 'mem-worker');
    t.equal(env.PIDFD_LMK_BYTES_FREED, String(Math.round(kill.bytesFreed)));
    t.equal(env.PIDFD_LMK_PRE_KILL, 'timeout');
    t.equal(env.ADJ, '0', "a hook does not inherit the killer's oom_score_adj");
    run.child.kill('SIGTERM');
    t.same(await ended(run.child), [0, null]);
  },
);

t.test('as uid 65534 it starts, says what it could not set, and still decides', async (t) => {
  const { node, dir: copy } = readableCopy([]);
  t.teardown(() => rmSync(copy, { recursive: true, force: true }));
  // The shell's child sleeps; exec makes the shell the killer, so the sleeper is the killer's own child.
  const script = `sleep 100 >/dev/null 2>&1 & exec ${node} ${join(copy, 'bin', 'pidfd.js')} lmk --children-of $$ --min-available 100% --dry-run --once --json`;
  const r = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', '/bin/sh', '-c', script], {
    encoding: 'utf8',
    cwd: '/',
  });
  if (r.error) return t.fail(`setpriv could not run: ${r.error.message}`);
  t.equal(r.status, 0, r.stderr);
  const records = r.stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  const protect = Object.fromEntries(records.filter((x) => x.event === 'protect').map((x) => [x.what, x]));
  t.match(protect['oom-score-adj'], { asked: -1000, done: false, code: 'EACCES' }, 'oom_score_adj: EACCES, said');
  t.match(protect.nice, { asked: -20, done: false, code: 'EACCES' }, 'nice: EACCES, said');
  t.match(protect.lock, { done: false }, `lock: ${protect.lock?.code}, said`);
  const kill = records.find((x) => x.event === 'kill');
  t.match(kill, { comm: 'sleep', dryRun: true }, 'and it decided: its own child, in dry run');
  spawnSync('kill', [String(kill?.pid)]);
});
