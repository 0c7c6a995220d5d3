// Pressure onset → kill decision: the low-memory killer driven by a kernel PSI trigger against the same killer
// sampling the stall totals (poll mode), and what each costs while nothing happens.
//
//   node bench/lmk.mjs [trials-per-mode]      prints one JSON document on stdout
//
// Onset is made, not waited for: a cgroup v2 group of our own holds a sleeping candidate; at t0 two busy processes
// pinned to one CPU join the group, so from t0 "some" task in the group always waits for that CPU (CPU pressure:
// the only PSI resource this machine lets us drive on demand without swap; the killer's code path is the same for
// memory). The killer (dryRun, so the candidate lives) watches the group's cpu.pressure with a threshold of 100 ms
// in a 2 s window; the time is t0 → its `kill` event. Modes alternate ABBA; each trial builds a fresh killer, and
// the group is left quiet for a while before the next.
//
// Idle cost: CPU time of a process holding one watcher for 5 s on a quiet group, per mode (fresh process each).
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { compile, loadPackage, median, removeCgroup, runScript, sleep } from './lib.mjs';

const TRIALS = Number(process.argv[2] ?? 6);
const THRESHOLD = 100;
const WINDOW = 2000;
const POLL_MS = 100;
const IDLE_S = 5;

const { LowMemoryKiller, watchPressure } = loadPackage();

function cgroup2Root() {
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const [left, right] = line.split(' - ');
    if (right?.startsWith('cgroup2 ')) return left.split(' ')[4];
  }
  return undefined;
}

function skip(reason) {
  process.stdout.write(`${JSON.stringify({ skipped: reason })}\n`);
  process.exit(0);
}

// Child mode: hold one watcher on a quiet group for IDLE_S seconds and report CPU time.
if (process.argv[2] === 'idle') {
  const [, , , mode, dir] = process.argv;
  const w = watchPressure({
    resource: 'cpu',
    threshold: THRESHOLD,
    window: WINDOW,
    cgroup: dir,
    mode,
    interval: POLL_MS,
  });
  await sleep(1000);
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  await sleep(IDLE_S * 1000);
  const c = process.cpuUsage(c0);
  w.close();
  process.stdout.write(
    `${JSON.stringify({ mode: w.mode, cpuMs: (c.user + c.system) / 1000, wallMs: performance.now() - t0 })}\n`,
  );
  process.exit(0);
}

const root = cgroup2Root();
if (!root) skip('no cgroup v2 mounted');
const dir = join(root, `pidfd-bench-lmk-${process.pid}`);
try {
  mkdirSync(dir);
} catch (err) {
  skip(`cannot create a cgroup v2 group (${err.code})`);
}
const helper = compile('helper');
const cpu = availableParallelism() - 1;
const sleeper = spawn('sleep', ['100000'], { stdio: 'ignore' });
await new Promise((r) => sleeper.once('spawn', r));
writeFileSync(join(dir, 'cgroup.procs'), String(sleeper.pid));

const total = () => Number(/^some .*total=(\d+)/m.exec(readFileSync(join(dir, 'cpu.pressure'), 'utf8'))[1]);

async function trial(mode) {
  const lmk = new LowMemoryKiller({
    candidates: () => [sleeper.pid],
    psi: { resource: 'cpu', kind: 'some', threshold: THRESHOLD, window: WINDOW, cgroup: dir, mode, interval: POLL_MS },
    reclaim: false,
    dryRun: true,
  });
  let tKill;
  const decided = new Promise((resolve) => lmk.once('kill', () => resolve((tKill = performance.now()))));
  lmk.start();
  const actual = lmk.psiMode;
  await sleep(2500); // past the arming noise of a fresh trigger (it fires only on real stall here: the group is quiet)
  const before = total();
  const spinners = [];
  const t0 = performance.now();
  for (let i = 0; i < 2; i++) {
    const s = spawn(helper, ['spin', String(cpu)], { stdio: 'ignore' });
    spinners.push(s);
  }
  await Promise.all(spinners.map((s) => new Promise((r) => s.once('spawn', r))));
  for (const s of spinners) writeFileSync(join(dir, 'cgroup.procs'), String(s.pid));
  const guard = sleep(30_000).then(() => undefined);
  const t = await Promise.race([decided, guard]);
  const stallAtDecision = (total() - before) / 1000;
  for (const s of spinners) s.kill('SIGKILL');
  await lmk.stop();
  await Promise.all(
    spinners.map((s) => (s.exitCode === null && s.signalCode === null ? new Promise((r) => s.once('exit', r)) : null)),
  );
  await sleep(WINDOW + 500); // let the group's window drain before the next trial
  return { mode: actual, onsetToDecisionMs: t === undefined ? null : tKill - t0, stallAtDecisionMs: stallAtDecision };
}

const trials = [];
try {
  for (let i = 0; i < TRIALS * 2; i++) {
    const mode = i % 4 === 1 || i % 4 === 2 ? 'poll' : 'auto';
    const r = await trial(mode);
    process.stderr.write(
      `  lmk ${r.mode}: decision ${r.onsetToDecisionMs?.toFixed(0)} ms after onset ` +
        `(${r.stallAtDecisionMs.toFixed(0)} ms stalled by then)\n`,
    );
    trials.push(r);
  }
  const idle = {};
  for (const mode of ['auto', 'poll']) {
    const r = await runScript('lmk.mjs', ['idle', mode, dir]);
    idle[r.mode] = r;
    process.stderr.write(`  idle ${r.mode}: ${r.cpuMs.toFixed(1)} ms CPU in ${(r.wallMs / 1000).toFixed(1)} s\n`);
  }
  const side = (mode) => {
    const t = trials.filter((r) => r.mode === mode);
    const d = t.map((r) => r.onsetToDecisionMs);
    return {
      trials: t.length,
      decided: d.filter((x) => x !== null).length,
      medianMs: median(d),
      minMs: Math.min(...d.filter((x) => x !== null)),
      maxMs: Math.max(...d.filter((x) => x !== null)),
      samplesMs: d,
    };
  };
  process.stdout.write(
    `${JSON.stringify({
      threshold: THRESHOLD,
      window: WINDOW,
      pollMs: POLL_MS,
      idleSeconds: IDLE_S,
      trigger: side('trigger'),
      poll: side('poll'),
      idle,
      trials,
    })}\n`,
  );
} finally {
  sleeper.kill('SIGKILL');
  await new Promise((r) => sleeper.once('exit', r));
  await removeCgroup(dir);
}
