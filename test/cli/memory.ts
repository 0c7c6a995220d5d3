// The memory, reclaim, pressure and lmk subcommands, run as `node bin/pidfd.js ...` child processes against real
// workers.
import t from 'tap';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cli, startCli } from '../helpers/cli';
import { ended } from '../helpers/lines';
import { makeV1MemoryGroup, makeV2Group, memoryV1Root, removeAllGroups, Worker } from '../helpers/mem-helpers';

const MiB = 2 ** 20;
const json = (out: string): any[] =>
  out
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l));

const workers: Worker[] = [];
t.teardown(async () => {
  for (const w of workers) await w.kill();
  await removeAllGroups();
});
async function worker(cgroupProcs: string[] = [], mib = 0): Promise<Worker> {
  const w = await new Worker(cgroupProcs).ready();
  workers.push(w);
  if (mib) await w.ask(`a ${mib}`, 'anon');
  return w;
}

t.test('memory <pid>: human and --json; --maps; a missing pid is status 1', async (t) => {
  const w = await worker([], 64);
  const human = cli('memory', String(w.pid));
  t.equal(human.status, 0, human.stderr);
  t.match(
    human.stdout,
    new RegExp(
      `^${w.pid} \\(mem-worker\\)  rss \\d+\\.\\d MiB  pss .* anon .* file .* shmem .* swap .*\\[smaps_rollup\\]\\n$`,
    ),
  );
  const [rec] = json(cli('memory', String(w.pid), '--json').stdout);
  t.equal(rec.pid, w.pid);
  t.equal(rec.comm, 'mem-worker');
  t.ok(rec.anon >= 64 * MiB, `anon ${rec.anon}`);
  const maps = cli('memory', String(w.pid), '--maps');
  // (at least 64 MiB: the kernel may merge it with an adjacent anonymous mapping)
  const sizes = [...maps.stdout.matchAll(/^ {2}[0-9a-f]{12}-[0-9a-f]{12} +(\d+\.\d) MiB rw-p anon +$/gm)].map((x) =>
    Number(x[1]),
  );
  t.ok(
    sizes.some((x) => x >= 64),
    `the 64 MiB mapping is listed (${sizes.join(', ')} MiB)`,
  );
  const [withMaps] = json(cli('memory', String(w.pid), '--maps', '--json').stdout);
  t.ok(
    withMaps.maps.some((m: any) => m.kind === 'special' && typeof m.start === 'string'),
    'addresses are strings in JSON',
  );
  const gone = cli('memory', '4194304');
  t.equal(gone.status, 1);
  t.match(gone.stderr, /no such process: 4194304/);
  t.equal(cli('memory').status, 2);
  t.equal(cli('memory', 'abc').status, 2);
});

t.test('reclaim <pid>: prints what was advised; bad advice is a usage error', async (t) => {
  const w = await worker([], 16);
  const [r] = json(cli('reclaim', String(w.pid), '--kinds', 'anon,file', '--json').stdout);
  t.equal(r.pid, w.pid);
  t.equal(r.advice, 'pageout');
  t.ok(r.advised >= 16 * MiB);
  t.equal(r.mapsChanged, false);
  const human = cli('reclaim', String(w.pid), '--advice', 'cold');
  t.equal(human.status, 0);
  t.match(human.stdout, new RegExp(`^${w.pid}: cold advised \\d+\\.\\d MiB over \\d+ mappings; RSS .* -> .*\\n$`));
  t.equal(cli('reclaim', String(w.pid), '--advice', 'willneed').status, 2);
  t.equal(cli('reclaim', String(w.pid), '--kinds', 'special').status, 2);
  t.equal(cli('reclaim').status, 2);
  t.equal(cli('reclaim', '4194304').status, 1);
});

t.test('pressure: now, --watch --count, and threshold events (a refused trigger says poll)', async (t) => {
  const now = cli('pressure');
  t.equal(now.status, 0);
  t.match(now.stdout, /^cpu +some .* full/m);
  t.match(now.stdout, /^memory +some .* full/m);
  t.match(now.stdout, /^io +some .* full/m);
  const [rec] = json(cli('pressure', '--resource', 'memory', '--json').stdout);
  t.ok(rec.memory.some.total >= 0 && !('cpu' in rec));
  const watch = cli('pressure', '--watch', '--count', '2', '--interval', '100ms', '--json');
  const samples = json(watch.stdout);
  t.equal(samples.length, 2);
  t.ok(samples.every((s) => typeof s.cpu.someStallMs === 'number'));
  t.equal(cli('pressure', '--threshold', '100ms').status, 2);
  t.equal(cli('pressure', '--resource', 'disk').status, 2);

  const g = makeV2Group('cli-psi');
  if (!g) return t.skip('no cgroup v2', () => {});
  // A 1 s window is not allowed for an unprivileged trigger: the CLI says it polls, and why; SIGINT stops it.
  const { child: c, out: lines } = startCli(
    'pressure',
    '--resource',
    'cpu',
    '--cgroup',
    g,
    '--threshold',
    '100ms',
    '--window',
    '1s',
    '--json',
  );
  const first = JSON.parse(await lines.waitFor((l) => l.startsWith('{'), 'the mode record'));
  t.equal(first.mode, 'poll');
  t.match(first.fallbackReason, /EINVAL/);
  c.kill('SIGINT');
  t.same(await ended(c), [0, null], 'SIGINT ends it with status 0');
});

t.test(
  'lmk: --dry-run --once decides and acts on nothing; --once kills one; bad arguments',
  { skip: !memoryV1Root() && 'no cgroup v1 memory' },
  async (t) => {
    const g = makeV1MemoryGroup('cli-lmk', 512 * MiB)!;
    const procs = [join(g, 'cgroup.procs')];
    const low = await worker(procs, 32);
    const high = await worker(procs, 16);
    writeFileSync(`/proc/${high.pid}/oom_score_adj`, '900');
    const dry = cli('lmk', '--cgroup', g, '--min-available', '100%', '--dry-run', '--once', '--json');
    t.equal(dry.status, 0, dry.stderr);
    const events = json(dry.stdout);
    t.same(
      events.map((e) => e.event).filter((e) => !['reclaim', 'protect'].includes(e)),
      ['start', 'pressure', 'kill'],
    );
    t.equal(events[0].headroom.source, 'cgroup-v1', "the candidates' memory cgroup is the budget");
    const kill = events.find((e) => e.event === 'kill');
    t.equal(kill.pid, high.pid);
    t.equal(kill.dryRun, true);
    t.ok(low.proc.exitCode === null && high.proc.exitCode === null, 'nobody died');

    const human = cli('lmk', '--cgroup', g, '--min-available', '100%', '--dry-run', '--once');
    t.match(human.stdout, new RegExp(`would kill ${high.pid} \\(mem-worker, oom_score_adj 900`));

    const real = cli(
      'lmk',
      '--cgroup',
      g,
      '--min-available',
      '100%',
      '--once',
      '--no-reclaim',
      '--protect',
      String(low.pid),
      '--json',
    );
    const k = json(real.stdout).find((e) => e.event === 'kill');
    t.equal(k.pid, high.pid);
    t.equal(k.dryRun, false);
    t.ok(k.bytesFreed >= 12 * MiB, `freed ${k.bytesFreed}`);
    t.same(await ended(high.proc), [null, 'SIGKILL']);
    t.equal(low.proc.exitCode, null, 'the protected worker lives');

    for (const args of [
      ['lmk'],
      ['lmk', '--cgroup', g, '--children-of', '1'],
      ['lmk', '--cgroup', g, '--psi', 'lots'],
      ['lmk', '--cgroup', g, '--min-available', '200%'],
      ['lmk', '--cgroup', g, '--min-available', '12 parsecs'],
      ['lmk', '--cgroup', g, '--interval', '0'],
      ['lmk', '--cgroup', g, '--interval', '1s..10ms'],
      ['lmk', '--cgroup', g, '--when', 'most'],
      ['lmk', '--cgroup', g, '--critical', '2s'],
      ['lmk', '--cgroup', g, '--kill-mode', 'everything'],
      ['lmk', '--cgroup', g, '--prefer', '/(/'],
      ['lmk', '--cgroup', g, '--trim-always', 'x'],
      ['lmk', '--cgroup', g, '--hysteresis', '-1'],
    ]) {
      t.equal(cli(...args).status, 2, args.join(' '));
    }
  },
);

t.test(
  "lmk: the kernel's own OOM kill in the budget is logged",
  { skip: !memoryV1Root() && 'no cgroup v1 memory' },
  async (t) => {
    const g = makeV1MemoryGroup('cli-lmk-oom', 64 * MiB)!;
    // minAvailable 0 is never crossed: the killer only watches, and the kernel acts.
    const { child, out } = startCli('lmk', '--cgroup', g, '--min-available', '0', '--interval', '20ms', '--json');
    await out.waitFor((l) => l.includes('"event":"start"'), 'the start record');
    const w = await worker([join(g, 'cgroup.procs')]);
    w.proc.stdin!.write('a 128\n');
    t.same(await ended(w.proc), [null, 'SIGKILL'], 'the kernel killed the worker');
    const e = JSON.parse(await out.waitFor((l) => l.includes('"event":"kernel-oom"'), 'a kernel-oom record'));
    t.equal(e.count, 1);
    t.equal(e.kills, 1);
    t.equal(e.total, 64 * MiB);
    child.kill('SIGINT');
    t.same(await ended(child), [0, null]);
  },
);

t.test('--help for each', async (t) => {
  for (const c of ['memory', 'reclaim', 'pressure', 'lmk']) {
    const r = cli(c, '--help');
    t.equal(r.status, 0);
    t.match(r.stdout, new RegExp(`^Usage: pidfd ${c} `));
  }
  const top = cli('--help').stdout;
  for (const c of ['memory', 'reclaim', 'pressure', 'lmk']) t.match(top, new RegExp(`\\n  ${c} +`));
});
