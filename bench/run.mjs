// `npm run bench`: every benchmark in one run, a table on stdout, bench/RESULTS.md (the latest run, with date and
// machine) and bench/results.json (everything, raw samples included).
//
//   node bench/run.mjs [--quick]       --quick: a few samples of each, to check that everything runs (~30 s)
//
// Parts (each also runs alone, see the file):
//   latency.mjs   SIGKILL → notification: C floor, waitExit, child_process 'exit', 10 ms kill(pid, 0) polling
//   idle.mjs      CPU time while 2,000 live processes are watched for 10 s: waitExit against a 10 ms poll
//   terminate.mjs terminate() of 2 × 200 processes against tree-kill + pm2-style polling
//   killtree.mjs  killTree() against the tree-kill package on 500-process trees (toolkit-report.mjs renders both)
//   mrelease.mjs  SIGKILL → memory freed for 1, 4 and 8 GiB processes, with and without pidfd.release(), idle,
//                 busy and starved (memory-report.mjs)
//   lmk.mjs       the low-memory killer: pressure onset → kill decision, PSI trigger against polling
//   health.mjs    event-loop wake-ups and CPU of a process watching 2,000 processes for 60 s, against pm2's polling
//
//   node bench/run.mjs --only memory    just the memory parts; replaces their sections of RESULTS.md in place
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { BENCH, compile, LineProc, loadPackage, ROOT, runScript } from './lib.mjs';
import { runToolkit, toolkitSection } from './toolkit-report.mjs';
import { memorySections, runMemoryParts, spliceSections } from './memory-report.mjs';

const quick = process.argv.includes('--quick');
const ROUNDS = quick ? 60 : 500;
const WATCHED = 2000;
const IDLE_S = quick ? 2 : 10;
const IDLE_PASSES = quick ? 1 : 2;
const TARGET_RATIO = 1.15;

if (process.platform !== 'linux') {
  console.error('The benchmarks need Linux.');
  process.exit(1);
}
loadPackage(); // fail early, with a hint, if the package is not built
compile('floor');
compile('helper');

const started = new Date();
const log = (s) => process.stderr.write(`${s}\n`);

if (process.argv.includes('--only')) {
  const only = process.argv[process.argv.indexOf('--only') + 1];
  if (only !== 'memory') {
    console.error('--only takes: memory');
    process.exit(2);
  }
  const mem = await runMemoryParts(quick, log);
  const section = memorySections(mem);
  process.stdout.write(`${section.join('\n')}\n`);
  if (!quick) spliceSections(section);
  writeFileSync(join(BENCH, quick ? 'results-memory-quick.json' : 'results-memory.json'), `${JSON.stringify({ date: started.toISOString(), ...mem }, null, 1)}\n`);
  process.exit(0);
}

log(`latency: ${ROUNDS} processes per mechanism, interleaved ...`);
const latency = await runScript('latency.mjs', [String(ROUNDS)]);

log(`idle CPU: ${WATCHED} processes watched for ${IDLE_S} s, ${IDLE_PASSES} pass(es) ...`);
const idle = { baseline: [], waitExit: [], poll: [] };
{
  const reaper = new LineProc(compile('helper'), ['reaper']);
  try {
    const pids = (await reaper.ask(`m ${WATCHED}`)).trim().split(' ');
    if (pids.length !== WATCHED) throw new Error(`expected ${WATCHED} pids, got ${pids.length}`);
    const orders = [['baseline', 'waitExit', 'poll'], ['poll', 'waitExit', 'baseline']];
    for (let pass = 0; pass < IDLE_PASSES; pass++) {
      for (const mode of orders[pass % 2]) {
        const r = await runScript('idle.mjs', [mode, String(IDLE_S), pids.join(',')]);
        if (r.exitedDuringWindow !== 0) throw new Error(`${mode}: ${r.exitedDuringWindow} watched processes exited`);
        log(`  ${mode}: ${r.cpuMs.toFixed(1)} ms CPU in ${(r.wallMs / 1000).toFixed(1)} s`);
        idle[mode].push(r);
      }
    }
  } finally {
    await reaper.end();
  }
}

const memory = await runMemoryParts(quick, log);

const toolkit = await runToolkit(quick, log);

// ---- report ----
const S = latency.stats;
const fmt = (x, d = 1) => (x === null || x === undefined || Number.isNaN(x) ? 'n/a' : x.toFixed(d));
const ratio = (a, b) => a / b;
const median = (a) => {
  const s = [...a].sort((x, y) => x - y);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

function latencyRows(rows, floorKey) {
  const f = S[floorKey];
  const out = ['| mechanism | processes | p50 µs | p99 µs | p50 × floor | p99 × floor |', '| --- | ---: | ---: | ---: | ---: | ---: |'];
  for (const [key, label, ownFloor] of rows) {
    const s = S[key];
    if (!s) continue;
    const fl = S[ownFloor ?? floorKey] ?? f;
    out.push(`| ${label} | ${s.n} | ${fmt(s.p50)} | ${fmt(s.p99)} | ${fmt(ratio(s.p50, fl.p50), 2)} | ${fmt(ratio(s.p99, fl.p99), 2)} |`);
  }
  return out;
}

const childTable = latencyRows(
  [
    ['floor.child', '**floor**: C program, pidfd in epoll'],
    ['waitExit.child', '`PidFd.fromChild(child).waitExit()` resolves'],
    ['exit.child', "child_process `'exit'` event"],
    ['race.waitExit', '`waitExit()`, both armed on the same child'],
    ['race.exit', "`'exit'`, both armed on the same child"],
    ['wake.child', '(diagnostic) the package\'s watcher reaches its first JS'],
  ],
  'floor.child',
);
const nonChildTable = latencyRows(
  [
    ['floor.exited', '**floor**: C program, pidfd EPOLLIN (exited, a zombie)', 'floor.exited'],
    ['floor.reaped', '**floor**: C program, pidfd EPOLLHUP (reaped by its parent)', 'floor.reaped'],
    ['wake.nonchild', "(diagnostic) the package's watcher sees EPOLLIN, first JS", 'floor.exited'],
    ['waitExit.nonchild', '`PidFd.open(pid).waitExit()` resolves (needs the reap)', 'floor.reaped'],
    ['poll.10ms', '`process.kill(pid, 0)` every 10 ms', 'floor.reaped'],
  ],
  'floor.reaped',
);

const wc = S['waitExit.child'];
const ex = S['exit.child'];
const fc = S['floor.child'];
const wn = S['waitExit.nonchild'];
const pl = S['poll.10ms'];
const wake = S['wake.child'];
const p50Ratio = wc.p50 / fc.p50;
const targetFloor = p50Ratio <= TARGET_RATIO;
const notSlowerP50 = wc.p50 <= ex.p50;
const notSlowerP99 = wc.p99 <= ex.p99;
const raceFirst = latency.raceWaitExitFirst;

const idleRow = (mode, label) => {
  const runs = idle[mode];
  const cpu = median(runs.map((r) => r.cpuMs));
  const wall = median(runs.map((r) => r.wallMs));
  const steady = median(runs.map((r) => r.steadyMsPerS));
  return { mode, label, watched: runs[0].watched, cpuMs: cpu, pct: (100 * cpu) / wall, steady, checks: median(runs.map((r) => r.checks)), runs: runs.length };
};
const idleRows = [
  idleRow('baseline', 'idle Node process, nothing watched'),
  idleRow('waitExit', '`waitExit()` pending on each'),
  idleRow('poll', '`process.kill(pid, 0)` on each, every 10 ms'),
];
const idleTable = [
  `| mechanism | processes watched | CPU ms in ${IDLE_S} s | % of one core | steady: CPU ms per second (median 1 s slice) |`,
  '| --- | ---: | ---: | ---: | ---: |',
  ...idleRows.map((r) => `| ${r.label} | ${r.watched} | ${fmt(r.cpuMs)} | ${fmt(r.pct, 2)} | ${fmt(r.steady, 2)} |`),
];

const idleW = idleRows[1];
const idleP = idleRows[2];
const idleB = idleRows[0];
verdict.push(
  `- Idle: watching ${WATCHED} processes for ${IDLE_S} s costs ${fmt(idleW.cpuMs)} ms CPU with waitExit against ` +
    `${fmt(idleP.cpuMs)} ms for the 10 ms poll (${fmt(idleP.cpuMs / idleW.cpuMs, 0)}× more); an idle Node process uses ` +
    `${fmt(idleB.cpuMs)} ms. In steady state waitExit costs ${fmt(idleW.steady, 2)} ms per second (idle Node: ` +
    `${fmt(idleB.steady, 2)}), the poll ${fmt(idleP.steady, 1)} ms per second` +
    (idleW.steady <= 2 * idleB.steady + 0.2
      ? ': watching itself costs nothing measurable' +
        (idleW.cpuMs > 2 * idleB.cpuMs + 2
          ? `; the rest of waitExit's window total is a one-off garbage collection of the setup's allocations ` +
            `(V8's memory reducer, some 8 s after setup).`
          : '.')
      : '.'),
);

const lines = [
  '# Benchmark results',
  '',
  `Latest \`npm run bench\`${quick ? ' --quick' : ''}: ${started.toISOString()}. Machine: ${machine}. pidfd ${pkgVersion}.`,
  'Other work may have been running on the machine; compare ratios from one run rather than absolute numbers across runs.',
  '',
  `## Death notification: SIGKILL → the watching code runs`,
  '',
  `One process at a time, ${latency.rounds} per mechanism, all mechanisms interleaved in a fresh random order each round ` +
    `(${latency.settleMs} ms after spawn before the kill). Time from just before kill(2) to the first line of the ` +
    'notified code, in the same process (CLOCK_MONOTONIC / process.hrtime).',
  '',
  '### Own children (ratios to the C floor for a child)',
  '',
  ...childTable,
  '',
  '### Not our children (their parent, a C helper, reaps them at once; ratios to the matching C floor)',
  '',
  ...nonChildTable,
  '',
  `## CPU while ${WATCHED} live processes are watched and idle (median of ${IDLE_PASSES})`,
  '',
  ...idleTable,
  '',
  ...memorySections(memory),
  '',
  '## Verdict',
  '',
  ...verdict,
  '',
  ...toolkitSection(toolkit),
  '## How it is measured',
  '',
  '- Victims are `bench/helper.c victim` (it sleeps in pause()). Children are spawned with `child_process.spawn`; ' +
    'non-children by `bench/helper.c reaper`, a C parent that reaps each one the moment it dies (SIGCHLD via signalfd).',
  '- The floor is `bench/floor.c` (compiled into build/bench/ on each run if needed): the same victim, the same wait ' +
    'after spawn, then kill(2) and epoll_wait(2) on the pidfd. It runs as a separate process but takes its samples one ' +
    'at a time on request, so they interleave with the Node samples.',
  '- The 10 ms poll starts at a random phase against the kill. kill(pid, 0) still succeeds on a zombie, so the poll ' +
    'can only see the reap.',
  '- Diagnostic rows time the first JS handler of the package\'s readiness watcher (internal module dist/watcher.js): ' +
    'what any JS-level work has to start from. `node bench/profile.mjs` prints the step-by-step timeline of waitExit.',
  `- Idle CPU: one fresh Node process per measurement, ${WATCHED} victims, 1 s to settle, then process.cpuUsage() ` +
    'over the window in 1 s slices.',
  '',
];
const report = lines.join('\n');
process.stdout.write(`\n${report}\n`);
if (!quick) {
  writeFileSync(join(BENCH, 'RESULTS.md'), report);
  // 60 s more: the event-loop health section, spliced into RESULTS.md by health.mjs itself.
  execFileSync(process.execPath, [join(BENCH, 'health.mjs')], { stdio: ['ignore', 'inherit', 'inherit'] });
}
writeFileSync(
  join(BENCH, quick ? 'results-quick.json' : 'results.json'),
  `${JSON.stringify({ date: started.toISOString(), machine: { kernel, cpu: cpuModel, cores: cpus().length, memBytes: totalmem(), node: process.version }, quick, latency, idle, memory, toolkit }, null, 1)}\n`,
);
log(`wrote ${quick ? '' : 'bench/RESULTS.md and '}bench/${quick ? 'results-quick.json' : 'results.json'} (${((Date.now() - started) / 1000).toFixed(0)} s)`);
