// Death-notification latency: from just before kill(SIGKILL) to the moment the watching code runs, one process at
// a time, every mechanism interleaved round by round (in a fresh random order each round) so that drift of the
// machine hits all of them alike.
//
//   node bench/latency.mjs [rounds]      prints one JSON document on stdout, progress on stderr
//
// Children (spawned by this process with child_process):
//   floor.child       bench/floor.c: its own child, a pidfd in epoll (the physical limit)
//   waitExit.child    PidFd.fromChild(child).waitExit() resolves
//   exit.child        child_process 'exit' event
//   race.*            both armed on the same child: which one comes first
//   wake.child        (diagnostic) the package's watcher reports EPOLLIN: the first JS of waitExit's path runs
// Non-children (children of bench/helper.c's reaper, which reaps them at once):
//   floor.exited      bench/floor.c: pidfd EPOLLIN (the process exited, a zombie)
//   floor.reaped      bench/floor.c: pidfd EPOLLHUP (its parent reaped it; PIDFD_INFO_EXIT is readable from here)
//   wake.nonchild     (diagnostic) the package's watcher reports EPOLLIN (the first half of waitExit's path)
//   waitExit.nonchild PidFd.open(pid).waitExit() resolves (needs the reap for the exit status)
//   poll.10ms         process.kill(pid, 0) every 10 ms until ESRCH (a zombie still answers, so it sees the reap)
import { spawn } from 'node:child_process';
import { constants as osConstants } from 'node:os';
import { compile, LineProc, loadPackage, now, require, shuffle, sleep, summarize } from './lib.mjs';

const ROUNDS = Number(process.argv[2] ?? process.env.BENCH_ROUNDS ?? 500);
const WARMUP = 10;
const SETTLE_MS = 2; // after the victim is running, before the kill: let exec and the spawn bookkeeping finish
const SIGKILL = osConstants.signals.SIGKILL;

const { PidFd, constants: C } = loadPackage();
let watcher;
try {
  watcher = require('../dist/watcher.js'); // internal: the first wake-up of waitExit's path, on its own
} catch {
  watcher = undefined;
}

const helper = compile('helper');
const floorBin = compile('floor');
const floor = new LineProc(floorBin, ['serve', helper, String(SETTLE_MS * 1000)]);
const reaper = new LineProc(helper, ['reaper']);

const sources = {};
function countSource(name, info) {
  const key = `${name}:${info.source}${info.signal === 'SIGKILL' ? '' : `:${info.code}/${info.signal}`}`;
  sources[key] = (sources[key] ?? 0) + 1;
}

async function spawnVictim() {
  const child = spawn(helper, ['victim'], { stdio: 'ignore' });
  await new Promise((resolve, reject) => {
    child.once('spawn', resolve);
    child.once('error', reject);
  });
  return child;
}

function exitOf(child) {
  return new Promise((resolve) => child.once('exit', resolve));
}

// Kill → the package's readiness watcher calls its JS handler (internal API: the first step of waitExit's path).
async function wake(p, pid) {
  let t1;
  const fired = new Promise((resolve) =>
    watcher.watch(p.fd, C.EPOLLIN, () => {
      t1 = now();
      resolve();
    }),
  );
  const t0 = await settleAndKill(pid);
  await fired;
  return Number(t1 - t0);
}

async function nonChild() {
  return Number(await reaper.ask('s'));
}

// waitExit() on p, the time it settled taken first thing in its callback; `at()` reads it once `done` has settled.
function timedWait(p, label) {
  let t;
  const done = p.waitExit().then((info) => {
    t = now();
    countSource(label, info);
  });
  return { done, at: () => t };
}

// Every sample kills its victim SETTLE_MS after arming, and times from just before kill(2).
async function settleAndKill(pid) {
  await sleep(SETTLE_MS);
  const t0 = now();
  process.kill(pid, SIGKILL);
  return t0;
}

const samplers = {
  async floorChild() {
    return { 'floor.child': Number(await floor.ask('c')) };
  },

  async floorNonChild() {
    const pid = await nonChild();
    const [exited, reaped] = (await floor.ask(`n ${pid}`)).split(' ').map(Number);
    return { 'floor.exited': exited, 'floor.reaped': reaped };
  },

  async waitExitChild() {
    const child = await spawnVictim();
    const gone = exitOf(child);
    const p = PidFd.fromChild(child);
    const w = timedWait(p, 'waitExit.child');
    const t0 = await settleAndKill(child.pid);
    await w.done;
    await gone;
    p.close();
    return { 'waitExit.child': Number(w.at() - t0) };
  },

  async exitEvent() {
    const child = await spawnVictim();
    let t1;
    const gone = new Promise((resolve) =>
      child.once('exit', () => {
        t1 = now();
        resolve();
      }),
    );
    const t0 = await settleAndKill(child.pid);
    await gone;
    return { 'exit.child': Number(t1 - t0) };
  },

  async race() {
    const child = await spawnVictim();
    let te;
    const gone = new Promise((resolve) =>
      child.once('exit', () => {
        te = now();
        resolve();
      }),
    );
    const p = PidFd.fromChild(child);
    const w = timedWait(p, 'race.waitExit');
    const t0 = await settleAndKill(child.pid);
    await w.done;
    await gone;
    p.close();
    return { 'race.waitExit': Number(w.at() - t0), 'race.exit': Number(te - t0) };
  },

  async wakeChild() {
    if (watcher === undefined) return {};
    const child = await spawnVictim();
    const gone = exitOf(child);
    const p = PidFd.fromChild(child);
    const t1 = await wake(p, child.pid);
    await gone;
    p.close();
    return { 'wake.child': t1 };
  },

  async wakeNonChild() {
    if (watcher === undefined) return {};
    const pid = await nonChild();
    const p = PidFd.open(pid);
    const t1 = await wake(p, pid);
    p.close();
    return { 'wake.nonchild': t1 };
  },

  async waitExitNonChild() {
    const pid = await nonChild();
    const p = PidFd.open(pid);
    const w = timedWait(p, 'waitExit.nonchild');
    const t0 = await settleAndKill(pid);
    await w.done;
    p.close();
    return { 'waitExit.nonchild': Number(w.at() - t0) };
  },

  async poll() {
    const pid = await nonChild();
    let t1;
    let timer;
    const seen = new Promise((resolve) => {
      timer = setInterval(() => {
        try {
          process.kill(pid, 0);
        } catch (err) {
          if (err.code !== 'ESRCH') throw err;
          t1 = now();
          clearInterval(timer);
          resolve();
        }
      }, 10);
    });
    await sleep(SETTLE_MS + Math.random() * 10); // a random phase against the 10 ms poll
    const t0 = now();
    process.kill(pid, SIGKILL);
    await seen;
    return { 'poll.10ms': Number(t1 - t0) };
  },
};

async function main() {
  const series = {};
  const order = Object.values(samplers);
  const started = Date.now();
  for (let round = -WARMUP; round < ROUNDS; round++) {
    for (const sample of shuffle(order)) {
      const got = await sample();
      if (round < 0) continue;
      for (const [name, ns] of Object.entries(got)) (series[name] ??= []).push(ns);
    }
    if (round > 0 && round % 100 === 0) {
      process.stderr.write(`  latency: ${round}/${ROUNDS} rounds, ${((Date.now() - started) / 1000).toFixed(0)} s\n`);
    }
  }
  const raceWins = series['race.waitExit'].filter((w, i) => w < series['race.exit'][i]).length;
  const stats = {};
  for (const [name, ns] of Object.entries(series)) stats[name] = summarize(ns);
  return {
    rounds: ROUNDS,
    settleMs: SETTLE_MS,
    seconds: (Date.now() - started) / 1000,
    stats,
    raceWaitExitFirst: raceWins,
    sources,
    samplesNs: series,
  };
}

try {
  const result = await main();
  process.stdout.write(`${JSON.stringify(result)}\n`);
} finally {
  await floor.end();
  await reaper.end();
}
