// CPU time and event-loop wake-ups of a daemon-shaped Node process that watches 2,000 live processes (not its
// children) doing nothing. One fresh process per mechanism, all over the same window and the same processes:
//   baseline   nothing watched: an idle Node process, for reference
//   waitExit   PidFd.open(pid).waitExit() pending on each (ref'd, as a supervisor holds them)
//   poll100    process.kill(pid, 0) on each every 100 ms, as pm2 watches its processes
//   poll10     the same every 10 ms
// Each one settles for 2 s (module loading, the first GC), then arms one timer for the whole window: its only
// wake-up of its own. Wake-ups are the loop thread's voluntary context switches (an idle loop sleeps in epoll_wait).
//
//   node bench/idle.mjs [seconds] [processes]           (default 60 s, 2,000): one JSON document on stdout
//   node bench/idle.mjs --write [seconds] [processes]   also replaces its section of bench/RESULTS.md
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { compile, fmt, LineProc, loadPackage, spliceSections } from './lib.mjs';

const SETTLE_MS = 2000;
const MODES = {
  baseline: { label: 'idle Node process, nothing watched' },
  waitExit: { label: "`waitExit()` pending on each (ref'd)" },
  poll100: { label: '`process.kill(pid, 0)` on each every 100 ms (pm2)', intervalMs: 100 },
  poll10: { label: '`process.kill(pid, 0)` on each every 10 ms', intervalMs: 10 },
};

/** The measured process: argv `watch <mode> <seconds> <pid,...>`. */
function watch(mode, seconds, list) {
  const pids = list.split(',').filter(Boolean).map(Number);
  const loopWakeups = () =>
    Number(/voluntary_ctxt_switches:\s+(\d+)/.exec(readFileSync(`/proc/self/task/${process.pid}/status`, 'utf8'))[1]);
  let exited = 0;
  let stop = () => {};
  if (mode === 'waitExit') {
    const { PidFd } = loadPackage();
    const handles = pids.map((pid) => PidFd.open(pid));
    for (const p of handles)
      p.waitExit().then(
        () => exited++,
        () => {},
      ); // rejected by close() below
    stop = () => handles.forEach((p) => p.close());
  } else if (MODES[mode]?.intervalMs) {
    const alive = new Set(pids);
    const timer = setInterval(() => {
      for (const pid of alive) {
        try {
          process.kill(pid, 0);
        } catch {
          alive.delete(pid);
          exited++;
        }
      }
    }, MODES[mode].intervalMs);
    stop = () => clearInterval(timer);
  } else if (mode !== 'baseline') {
    throw new Error(`unknown mode ${mode}`);
  }
  // The settling timer keeps the baseline process alive; the window's timer then keeps it alive to the end.
  setTimeout(() => {
    const timers = process.getActiveResourcesInfo().filter((k) => k === 'Timeout').length - 1; // less this one
    const cpu0 = process.cpuUsage();
    const sw0 = loopWakeups();
    const t0 = process.hrtime.bigint();
    setTimeout(
      () => {
        const wakeups = loopWakeups() - sw0;
        const cpu = process.cpuUsage(cpu0);
        const wallMs = Number(process.hrtime.bigint() - t0) / 1e6;
        const cpuMs = (cpu.user + cpu.system) / 1000;
        stop();
        process.stdout.write(
          `${JSON.stringify({
            mode,
            watched: mode === 'baseline' ? 0 : pids.length,
            timers,
            loopWakeups: wakeups,
            cpuMs,
            wallMs,
            exited,
          })}\n`,
        );
        process.exit(0);
      },
      Number(seconds) * 1000,
    );
  }, SETTLE_MS);
}

/** Runs every mode side by side on `count` fresh idle non-children; resolves with the rows. */
export async function measureIdle(seconds, count) {
  loadPackage(); // fail early, with a hint, if the package is not built
  const reaper = new LineProc(compile('helper'), ['reaper']);
  try {
    const pids = (await reaper.ask(`m ${count}`)).trim().split(' ');
    if (pids.length !== count) throw new Error(`expected ${count} pids, got ${pids.length}`);
    const run = (mode) =>
      new Promise((resolve, reject) => {
        const args = [fileURLToPath(import.meta.url), 'watch', mode, String(seconds), pids.join(',')];
        const c = spawn(process.execPath, args, {
          stdio: ['ignore', 'pipe', 'inherit'],
          env: { ...process.env, NODE_OPTIONS: '' },
        });
        let out = '';
        c.stdout.on('data', (d) => (out += d));
        c.on('close', (code) => (code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`${mode}: exit ${code}`))));
      });
    const rows = await Promise.all(Object.keys(MODES).map(run));
    for (const r of rows) {
      if (r.exited !== 0) throw new Error(`${r.mode}: ${r.exited} watched processes exited during the window`);
    }
    return { date: new Date().toISOString(), seconds, count, rows };
  } finally {
    await reaper.end();
  }
}

/** Its section of RESULTS.md. */
export function idleSection(idle) {
  const row = (r) =>
    `| ${MODES[r.mode].label} | ${r.watched} | ${r.timers} | ${r.loopWakeups} | ${fmt(r.cpuMs)} | ` +
    `${fmt((100 * r.cpuMs) / r.wallMs, 2)} |`;
  return [
    '<!-- section:idle -->',
    `## CPU and event-loop wake-ups while ${idle.count} live processes are watched for ${idle.seconds} s ` +
      `(${idle.date.slice(0, 10)})`,
    '',
    'One daemon-shaped process per row, all running over the same window and the same processes (not their',
    "children). Wake-ups are the voluntary context switches of the event loop's thread (an idle loop sleeps in",
    "epoll_wait); the window's own end timer is one of them. `node bench/idle.mjs --write` re-measures this section.",
    '',
    '| mechanism | processes | timers held | event-loop wake-ups | CPU ms | % of one core |',
    '| --- | ---: | ---: | ---: | ---: | ---: |',
    ...idle.rows.map(row),
    '<!-- /section:idle -->',
  ];
}

const [first, ...rest] = process.argv.slice(2);
if (process.argv[1] === fileURLToPath(import.meta.url)) {
  if (first === 'watch') {
    watch(...rest);
  } else {
    const write = first === '--write';
    const [seconds = '60', count = '2000'] = write ? rest : process.argv.slice(2);
    process.stderr.write(`idle: ${count} processes watched for ${seconds} s, every mechanism side by side ...\n`);
    const idle = await measureIdle(Number(seconds), Number(count));
    if (write) spliceSections(['idle'], idleSection(idle));
    process.stdout.write(`${JSON.stringify(idle)}\n`);
  }
}
