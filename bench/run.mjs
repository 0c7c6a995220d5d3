// `npm run bench`: every benchmark in one run, a table on stdout, bench/RESULTS.md (the latest run, with date and
// machine) and bench/results.json (everything, raw samples included).
//
//   node bench/run.mjs [--quick]       --quick: a few samples of each, to check that everything runs (~5 min)
//
// Parts (each also runs alone, see the file):
//   latency.mjs   SIGKILL → notification: C floor, waitExit, child_process 'exit', 10 ms kill(pid, 0) polling
//   idle.mjs      CPU and event-loop wake-ups while 2,000 live processes are watched for 60 s: waitExit against
//                 polling every 100 ms (pm2) and every 10 ms, and an idle Node process
//   terminate.mjs terminate() of 2 × 200 processes against tree-kill + pm2-style polling
//   killtree.mjs  killTree() against the tree-kill package on 500-process trees (toolkit-report.mjs renders both)
//   mrelease.mjs  SIGKILL → memory freed for 1, 4 and 8 GiB processes, with and without pidfd.release(), idle,
//                 busy and starved (memory-report.mjs)
//   lmk.mjs       the low-memory killer: pressure onset → kill decision, PSI trigger against polling
//   peers.mjs     `pidfd lmk` against earlyoom and nohang on the same workloads and thresholds (needs root)
//
//   node bench/run.mjs --only memory    just the memory parts; replaces their sections of RESULTS.md in place
//   node bench/run.mjs --only peers     just the low-memory killers side by side, likewise
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { BENCH, compile, fmt, loadPackage, ROOT, runScript, spliceSections } from './lib.mjs';
import { idleSection, measureIdle } from './idle.mjs';
import { runToolkit, toolkitSection } from './toolkit-report.mjs';
import { memorySections, runMemoryParts } from './memory-report.mjs';
import { peersSection } from './peers.mjs';

const quick = process.argv.includes('--quick');
const ROUNDS = quick ? 60 : 500;
const WATCHED = 2000;
const IDLE_S = quick ? 2 : 60;
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

const runPeers = () => runScript('peers.mjs', quick ? ['--quick'] : []);

if (process.argv.includes('--only')) {
  const only = process.argv[process.argv.indexOf('--only') + 1];
  if (only !== 'memory' && only !== 'peers') {
    console.error('--only takes: memory, peers');
    process.exit(2);
  }
  if (only === 'peers') {
    log(`peers: pidfd lmk, earlyoom and nohang on the same workloads${quick ? ' (quick)' : ''} ...`);
    const peers = await runPeers();
    const section = peersSection(peers);
    process.stdout.write(`${section.join('\n')}\n`);
    if (!quick) spliceSections(['peers'], section);
    writeFileSync(
      join(BENCH, quick ? 'results-peers-quick.json' : 'results-peers.json'),
      `${JSON.stringify(peers, null, 1)}\n`,
    );
    process.exit(0);
  }
  const mem = await runMemoryParts(quick, log);
  const section = memorySections(mem);
  process.stdout.write(`${section.join('\n')}\n`);
  if (!quick) spliceSections(['memory', 'lmk'], section);
  writeFileSync(
    join(BENCH, quick ? 'results-memory-quick.json' : 'results-memory.json'),
    `${JSON.stringify({ date: started.toISOString(), ...mem }, null, 1)}\n`,
  );
  process.exit(0);
}

log(`latency: ${ROUNDS} processes per mechanism, interleaved ...`);
const latency = await runScript('latency.mjs', [String(ROUNDS)]);

log(`idle: ${WATCHED} processes watched for ${IDLE_S} s, every mechanism side by side ...`);
const idle = await measureIdle(IDLE_S, WATCHED);

const memory = await runMemoryParts(quick, log);

const toolkit = await runToolkit(quick, log);

log(`peers: pidfd lmk, earlyoom and nohang on the same workloads${quick ? ' (quick)' : ''} ...`);
const peers = await runPeers();

// ---- report ----
const S = latency.stats;
const ratio = (a, b) => a / b;

function latencyRows(rows, floorKey) {
  const f = S[floorKey];
  const out = [
    '| mechanism | processes | p50 µs | p99 µs | p50 × floor | p99 × floor |',
    '| --- | ---: | ---: | ---: | ---: | ---: |',
  ];
  for (const [key, label, ownFloor] of rows) {
    const s = S[key];
    if (!s) continue;
    const fl = S[ownFloor ?? floorKey] ?? f;
    out.push(
      `| ${label} | ${s.n} | ${fmt(s.p50)} | ${fmt(s.p99)} | ` +
        `${fmt(ratio(s.p50, fl.p50), 2)} | ${fmt(ratio(s.p99, fl.p99), 2)} |`,
    );
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
    ['wake.child', "(diagnostic) the package's watcher reaches its first JS"],
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

const cpuModel = cpus()[0]?.model ?? 'unknown CPU';
const kernel = execFileSync('uname', ['-r'], { encoding: 'utf8' }).trim();
const pkgVersion = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).version;
const machine =
  `Linux ${kernel}, ${cpuModel} × ${cpus().length}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, ` +
  `Node ${process.version}`;

const notSlower =
  notSlowerP50 && notSlowerP99 ? 'not slower' : notSlowerP50 ? 'not slower at p50, slower at p99' : 'slower';
const verdict = [
  `- waitExit (child) p50 is ${fmt(p50Ratio, 2)}× the floor (target ≤ ${TARGET_RATIO}×): ` +
    `**${targetFloor ? 'met' : 'not met'}**.`,
  `- waitExit (child) against Node's own 'exit' event, measured on separate children: p50 ${fmt(wc.p50)} vs ` +
    `${fmt(ex.p50)} µs, p99 ${fmt(wc.p99)} vs ${fmt(ex.p99)} µs: **${notSlower}**. ` +
    `Armed on the same child, waitExit came first in ${raceFirst} of ${latency.rounds}.`,
  `- Non-children: waitExit resolves at p50 ${fmt(wn.p50)} µs against ${fmt(pl.p50)} µs for the 10 ms poll ` +
    `(${fmt(pl.p50 / wn.p50, 0)}× sooner), at ${fmt(S['floor.reaped'] ? wn.p50 / S['floor.reaped'].p50 : NaN, 2)}× ` +
    'the floor for a reaped process.',
];
if (wake) {
  const before = wake.p50 - fc.p50;
  const after = wc.p50 - wake.p50;
  verdict.push(
    `- Where the child path's ${fmt(wc.p50 - fc.p50)} µs over the floor go (p50s): ${fmt(before)} µs before the ` +
      "package's first JS runs (the loop wake-up, libuv's SIGCHLD handler, libuv dispatch, the N-API callback entry; " +
      `the watcher alone is already ${fmt(wake.p50 / fc.p50, 2)}× the floor), and ${fmt(after)} µs from that ` +
      'first JS to the resolved promise.',
  );
}
const idleOf = Object.fromEntries(idle.rows.map((r) => [r.mode, r]));
const { baseline: idleB, waitExit: idleW, poll100: idleP100, poll10: idleP10 } = idleOf;
verdict.push(
  `- Idle: watching ${WATCHED} processes for ${IDLE_S} s costs ${fmt(idleW.cpuMs)} ms CPU and ${idleW.loopWakeups} ` +
    `event-loop wake-ups with waitExit (an idle Node process: ${fmt(idleB.cpuMs)} ms, ${idleB.loopWakeups}), against ` +
    `${fmt(idleP100.cpuMs)} ms and ${idleP100.loopWakeups} wake-ups for the 100 ms poll ` +
    `(${fmt(idleP100.cpuMs / idleW.cpuMs, 0)}× the CPU) and ${fmt(idleP10.cpuMs)} ms and ${idleP10.loopWakeups} ` +
    `for the 10 ms poll (${fmt(idleP10.cpuMs / idleW.cpuMs, 0)}×).`,
);

const lines = [
  '# Benchmark results',
  '',
  `Latest \`npm run bench\`${quick ? ' --quick' : ''}: ${started.toISOString()}. ` +
    `Machine: ${machine}. pidfd ${pkgVersion}.`,
  'Other work may have been running on the machine; ' +
    'compare ratios from one run rather than absolute numbers across runs.',
  '',
  `## Death notification: SIGKILL → the watching code runs`,
  '',
  `One process at a time, ${latency.rounds} per mechanism, all mechanisms interleaved in a fresh random order each ` +
    `round (${latency.settleMs} ms after spawn before the kill). Time from just before kill(2) to the first line ` +
    'of the notified code, in the same process (CLOCK_MONOTONIC / process.hrtime).',
  '',
  '### Own children (ratios to the C floor for a child)',
  '',
  ...childTable,
  '',
  '### Not our children (their parent, a C helper, reaps them at once; ratios to the matching C floor)',
  '',
  ...nonChildTable,
  '',
  ...idleSection(idle),
  '',
  ...memorySections(memory),
  '',
  ...peersSection(peers),
  '',
  '## Verdict',
  '',
  ...verdict,
  '',
  ...toolkitSection(toolkit),
  '## How it is measured',
  '',
  '- Victims are `bench/helper.c victim` (it sleeps in pause()). Children are spawned with `child_process.spawn`; ' +
    'non-children by `bench/helper.c reaper`, a C parent that reaps each one the moment it dies (SIGCHLD via ' +
    'signalfd).',
  '- The floor is `bench/floor.c` (compiled into build/bench/ on each run if needed): the same victim, the same wait ' +
    'after spawn, then kill(2) and epoll_wait(2) on the pidfd. It runs as a separate process but takes its samples ' +
    'one at a time on request, so they interleave with the Node samples.',
  '- The 10 ms poll starts at a random phase against the kill. kill(pid, 0) still succeeds on a zombie, so the poll ' +
    'can only see the reap.',
  "- Diagnostic rows time the first JS handler of the package's readiness watcher (internal module dist/watcher.js): " +
    'what any JS-level work has to start from. `node bench/profile.mjs` prints the step-by-step timeline of waitExit.',
  `- Idle: one fresh Node process per mechanism, all on the same ${WATCHED} victims at once, 2 s to settle, then one ` +
    "timer for the window; process.cpuUsage() and the loop thread's voluntary context switches over it.",
  '',
];
const report = lines.join('\n');
process.stdout.write(`\n${report}\n`);
if (!quick) {
  writeFileSync(join(BENCH, 'RESULTS.md'), report);
}
const results = {
  date: started.toISOString(),
  machine: { kernel, cpu: cpuModel, cores: cpus().length, memBytes: totalmem(), node: process.version },
  quick,
  latency,
  idle,
  memory,
  toolkit,
  peers,
};
writeFileSync(join(BENCH, quick ? 'results-quick.json' : 'results.json'), `${JSON.stringify(results, null, 1)}\n`);
log(
  `wrote ${quick ? '' : 'bench/RESULTS.md and '}bench/${quick ? 'results-quick.json' : 'results.json'} ` +
    `(${((Date.now() - started) / 1000).toFixed(0)} s)`,
);
