// killTree() against the tree-kill package on a tree of N processes, static and growing.
//
//   node bench/killtree.mjs [N=500] [rounds=3]     prints one JSON document on stdout
//
// The tree hangs below a C subreaper (bench/toolkit-helper.c), breadth first with 3 children per member; orphans
// are re-parented to the helper, which counts whatever is still alive afterwards: the survivors.
// - static: the tree does nothing while it is killed.
// - growing: GROW_N members (200), and the root also forks a new long-lived child every 50 ms (up to 400) while it
//   runs.
// - pidfd: `await killTree(root, { timeout: 1000 })`: resolves once every member has exited.
// - tree-kill: `treeKill(root, 'SIGTERM', callback)`; the callback says the signals were sent (the package
//   neither waits nor escalates), so the row also times, pm2-style, `process.kill(pid, 0)` every 100 ms on every
//   pid tree-kill was given until all are gone.
// Survivors are counted 300 ms after each mechanism reports completion.
import { compile, LineProc, loadPackage, require, sleep } from './lib.mjs';

const N = Number(process.argv[2] ?? 500);
const ROUNDS = Number(process.argv[3] ?? 2);
// The growing tree starts smaller: tree-kill runs one `ps` per process, each reading all of /proc, so on ~1,000
// processes it already takes tens of seconds.
const GROW_N = Math.min(N, 200);
const { killTree } = loadPackage();
const treeKill = require('tree-kill');
const helperBin = compile('toolkit-helper');
const log = (s) => process.stderr.write(`${s}\n`);

function treeKillAndPoll(root, pids, t0) {
  return new Promise((resolve, reject) => {
    treeKill(root, 'SIGTERM', (err) => {
      if (err) return reject(err);
      const signalledMs = performance.now() - t0;
      const timer = setInterval(() => {
        const alive = pids.filter((p) => {
          try {
            process.kill(p, 0);
            return true;
          } catch {
            return false;
          }
        });
        if (alive.length === 0) {
          clearInterval(timer);
          resolve({ signalledMs });
        }
      }, 100);
    });
  });
}

async function round(mode, grow) {
  const helper = new LineProc(helperBin, []);
  try {
    const [root, ...pids] = (await helper.ask(`t ${grow ? GROW_N : N} ${grow ? 1 : 0}`)).trim().split(' ').map(Number);
    await sleep(200);
    const before = Number((await helper.ask('c')).split(' ')[1]);
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    let extra = {};
    if (mode === 'pidfd') {
      const r = await killTree(root, { timeout: 1000 });
      extra = { members: r.processes.length, escalated: r.processes.filter((m) => m.escalated).length };
    } else {
      extra = await treeKillAndPoll(root, pids, t0);
    }
    const wallMs = performance.now() - t0;
    const cpu = process.cpuUsage(cpu0);
    await sleep(300);
    const survivors = Number((await helper.ask('c')).split(' ')[1]);
    await helper.ask('k');
    return { mode, grow, n: pids.length, before, wallMs, cpuMs: (cpu.user + cpu.system) / 1000, survivors, ...extra };
  } finally {
    await helper.end();
  }
}

const runs = [];
for (const grow of [false, true]) {
  for (let i = 0; i < (grow ? 1 : ROUNDS); i++) {
    // one growing round: tree-kill needs tens of seconds there
    for (const mode of i % 2 ? ['tree-kill', 'pidfd'] : ['pidfd', 'tree-kill']) {
      const r = await round(mode, grow);
      log(
        `  ${grow ? 'growing' : 'static'} ${mode}: ${r.before} alive before, ` +
          `${r.wallMs.toFixed(0)} ms, ${r.cpuMs.toFixed(0)} ms CPU, ${r.survivors} survivors`,
      );
      runs.push(r);
    }
  }
}
process.stdout.write(`${JSON.stringify({ n: N, growN: GROW_N, rounds: ROUNDS, runs })}\n`);
