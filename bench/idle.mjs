// CPU time of a Node process that watches many live processes that do nothing, measured with process.cpuUsage()
// (user + system, all threads) over a fixed window (in one-second slices) after a short settling period.
//
//   node bench/idle.mjs <mode> <seconds> <pid,pid,...>
//
// modes: baseline   nothing watched (an idle Node process, for reference)
//        waitExit   PidFd.open(pid).waitExit() pending on every pid
//        poll       one 10 ms interval that checks every pid with process.kill(pid, 0), as supervisors do
// Prints one JSON document on stdout.
import { loadPackage, sleep } from './lib.mjs';

const [mode, seconds, list] = process.argv.slice(2);
const pids = (list ?? '').split(',').filter(Boolean).map(Number);
const windowMs = Number(seconds) * 1000;
const SETTLE_MS = 1000;

let stop = () => {};
let checks = 0;
let gone = 0;
if (mode === 'waitExit') {
  const { PidFd } = loadPackage();
  const handles = pids.map((pid) => PidFd.open(pid));
  for (const p of handles) {
    p.waitExit().then(
      () => gone++,
      () => {}, // rejected by close() below
    );
  }
  stop = () => {
    for (const p of handles) p.close();
  };
} else if (mode === 'poll') {
  const alive = new Set(pids);
  const timer = setInterval(() => {
    for (const pid of alive) {
      checks++;
      try {
        process.kill(pid, 0);
      } catch {
        alive.delete(pid);
        gone++;
      }
    }
  }, 10);
  stop = () => clearInterval(timer);
} else if (mode !== 'baseline') {
  throw new Error(`unknown mode ${mode}`);
}
const keepAlive = setInterval(() => {}, 1 << 30);

await sleep(SETTLE_MS);
const cpu0 = process.cpuUsage();
const t0 = process.hrtime.bigint();
const checks0 = checks;
// One-second slices as well: the total includes one-off costs (V8's memory reducer runs a full GC some 8 s after the
// setup's allocation burst); the median slice is the steady cost of watching.
const slices = [];
for (let i = 0; i < windowMs / 1000; i++) {
  const c = process.cpuUsage();
  await sleep(1000);
  const d = process.cpuUsage(c);
  slices.push((d.user + d.system) / 1000);
}
const cpu = process.cpuUsage(cpu0);
const wallMs = Number(process.hrtime.bigint() - t0) / 1e6;
stop();
clearInterval(keepAlive);
process.stdout.write(
  `${JSON.stringify({
    mode,
    watched: mode === 'baseline' ? 0 : pids.length,
    wallMs,
    userMs: cpu.user / 1000,
    systemMs: cpu.system / 1000,
    cpuMs: (cpu.user + cpu.system) / 1000,
    sliceMs: slices,
    steadyMsPerS: [...slices].sort((a, b) => a - b)[slices.length >> 1],
    checks: checks - checks0,
    exitedDuringWindow: gone,
  })}\n`,
);
