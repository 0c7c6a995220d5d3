// terminate() against tree-kill + pm2-style polling, on N processes that honour SIGTERM and N that ignore it.
//
//   node bench/terminate.mjs [N=200] [graceMs=1000] [rounds=3]     prints one JSON document on stdout
//
// The processes are children of a C helper (bench/toolkit-helper.c) that reaps them at once, as a supervisor
// would; for this process they are any processes, addressed by pid. Both mechanisms get the same grace period.
// - pidfd: `terminate(pid, { timeout: grace })` for all 2N at once (SIGTERM, SIGKILL after the grace, release).
// - pm2: as pm2 stops a process: `tree-kill` (the npm package) with SIGTERM, then `process.kill(pid, 0)`
//   every 100 ms until it throws; after the grace period `tree-kill` again with SIGKILL.
// - poll: the same polling with plain `process.kill(pid, sig)` instead of tree-kill (the cost of polling alone).
// Measured: wall time until every process is known to be gone, per-process detection times, CPU of this process
// (process.cpuUsage) and of the processes it started and reaped (tree-kill runs `ps`; /proc/self/stat cutime+cstime).
import { readFileSync } from 'node:fs';
import { compile, LineProc, loadPackage, require, sleep, summarize } from './lib.mjs';

const N = Number(process.argv[2] ?? 200);
const GRACE = Number(process.argv[3] ?? 1000);
const ROUNDS = Number(process.argv[4] ?? 3);
const { terminate } = loadPackage();
const treeKill = require('tree-kill');
const helperBin = compile('toolkit-helper');
const log = (s) => process.stderr.write(`${s}\n`);
const TICK_MS = 1000 / 100; // USER_HZ

function childCpuMs() {
  const s = readFileSync('/proc/self/stat', 'latin1');
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
  return (Number(f[13]) + Number(f[14])) * TICK_MS; // fields 16, 17: cutime, cstime
}

// `kill`: the signal sender; pm2 uses tree-kill, the `poll` row sends with process.kill to isolate the polling.
function pm2Stop(pid, t0, kill) {
  return new Promise((resolve) => {
    kill(pid, 'SIGTERM');
    let escalated = false;
    const timer = setInterval(() => {
      try {
        process.kill(pid, 0);
      } catch {
        clearInterval(timer);
        resolve({ pid, escalated, ms: performance.now() - t0 });
        return;
      }
      if (!escalated && performance.now() - t0 >= GRACE) {
        escalated = true;
        kill(pid, 'SIGKILL');
      }
    }, 100);
  });
}

async function round(mode) {
  const helper = new LineProc(helperBin, []);
  try {
    const honour = (await helper.ask(`v ${N} 0`)).trim().split(' ').map(Number);
    const ignore = (await helper.ask(`v ${N} 1`)).trim().split(' ').map(Number);
    await sleep(300);
    const cpu0 = process.cpuUsage();
    const child0 = childCpuMs();
    const t0 = performance.now();
    const all = [...honour, ...ignore];
    let results;
    if (mode === 'pidfd') {
      results = await Promise.all(
        all.map(async (pid) => {
          const r = await terminate(pid, { timeout: GRACE });
          return { pid, escalated: r.escalated, ms: performance.now() - t0 };
        }),
      );
    } else if (mode === 'pm2') {
      results = await Promise.all(all.map((pid) => pm2Stop(pid, t0, (p, s) => treeKill(p, s, () => {}))));
    } else {
      results = await Promise.all(
        all.map((pid) =>
          pm2Stop(pid, t0, (p, s) => {
            try {
              process.kill(p, s);
            } catch {
              /* gone */
            }
          }),
        ),
      );
    }
    const wallMs = performance.now() - t0;
    await sleep(50); // let the last `ps` children be reaped, so their CPU is counted
    const cpu = process.cpuUsage(cpu0);
    const childMs = childCpuMs() - child0;
    const alive = Number((await helper.ask('c')).split(' ')[1]);
    const byPid = new Map(results.map((r) => [r.pid, r]));
    return {
      mode,
      wallMs,
      cpuMs: (cpu.user + cpu.system) / 1000,
      childCpuMs: childMs,
      alive,
      // summarize() takes ns and reports µs.
      honourUs: summarize(honour.map((p) => byPid.get(p).ms * 1e6)),
      ignoreUs: summarize(ignore.map((p) => byPid.get(p).ms * 1e6)),
      escalatedHonour: honour.filter((p) => byPid.get(p).escalated).length,
      escalatedIgnore: ignore.filter((p) => byPid.get(p).escalated).length,
    };
  } finally {
    await helper.end();
  }
}

const runs = [];
for (let i = 0; i < ROUNDS; i++) {
  for (const mode of i % 2 ? ['pm2', 'poll', 'pidfd'] : ['pidfd', 'poll', 'pm2']) {
    const r = await round(mode);
    log(
      `  ${mode}: ${r.wallMs.toFixed(0)} ms wall, ` +
        `${r.cpuMs.toFixed(0)} ms CPU + ${r.childCpuMs.toFixed(0)} ms in children, ` +
        `honouring p50 ${(r.honourUs.p50 / 1000).toFixed(1)} ms, left alive ${r.alive}`,
    );
    runs.push(r);
  }
}
process.stdout.write(`${JSON.stringify({ n: N, graceMs: GRACE, rounds: ROUNDS, runs })}\n`);
