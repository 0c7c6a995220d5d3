// Event-loop health of a daemon-shaped process: it watches 2,000 live processes (not its children) for 60 s and
// does nothing else. Measured side by side, over the same window and the same processes:
//   waitExit   PidFd.open(pid).waitExit() pending on each (ref'd, as a supervisor holds them)
//   poll       process.kill(pid, 0) on each every 100 ms, as pm2 watches its processes
// For each: CPU time (all threads), wake-ups of the event loop's thread (its voluntary context switches: an idle
// loop sleeps in epoll_wait, so each one is a wake-up), and the timers it holds. Writes its section of RESULTS.md.
//
//   node bench/health.mjs [seconds] [processes]        (default 60 s, 2,000)
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BENCH, compile, LineProc, loadPackage } from './lib.mjs';

if (process.argv[2] === 'watch') {
  // The measured process. argv: watch <mode> <seconds> <pid,...>
  const [, , , mode, seconds, list] = process.argv;
  const pids = list.split(',').map(Number);
  const loopSwitches = () =>
    Number(/voluntary_ctxt_switches:\s+(\d+)/.exec(readFileSync(`/proc/self/task/${process.pid}/status`, 'utf8'))[1]);
  let exited = 0;
  let stop;
  if (mode === 'waitExit') {
    const { PidFd } = loadPackage();
    const handles = pids.map((pid) => PidFd.open(pid));
    for (const p of handles) p.waitExit().then(() => exited++, () => {});
    stop = () => handles.forEach((p) => p.close());
  } else {
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
    }, 100);
    stop = () => clearInterval(timer);
  }
  // Settle (module loading, the first GC), then one timer for the whole window: the measurement's only wake-up.
  setTimeout(() => {
    const timers = process.getActiveResourcesInfo().filter((k) => k === 'Timeout').length - 1; // less this one
    const cpu0 = process.cpuUsage();
    const sw0 = loopSwitches();
    setTimeout(() => {
      const sw = loopSwitches() - sw0;
      const cpu = process.cpuUsage(cpu0);
      process.stdout.write(`${JSON.stringify({ mode, watched: pids.length, exited, timers, loopWakeups: sw, cpuMs: (cpu.user + cpu.system) / 1000 })}\n`);
      stop();
      process.exit(0);
    }, Number(seconds) * 1000);
  }, 2000);
} else {
  const seconds = Number(process.argv[2] ?? 60);
  const count = Number(process.argv[3] ?? 2000);
  loadPackage();
  const reaper = new LineProc(compile('helper'), ['reaper']);
  const pids = (await reaper.ask(`m ${count}`)).trim().split(' ');
  process.stderr.write(`health: ${pids.length} processes watched for ${seconds} s, waitExit and 100 ms polling side by side ...\n`);
  const run = (mode) =>
    new Promise((resolve, reject) => {
      const c = spawn(process.execPath, [join(BENCH, 'health.mjs'), 'watch', mode, String(seconds), pids.join(',')], {
        stdio: ['ignore', 'pipe', 'inherit'],
        env: { ...process.env, NODE_OPTIONS: '' },
      });
      let out = '';
      c.stdout.on('data', (d) => (out += d));
      c.on('close', (code) => (code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`${mode}: exit ${code}`))));
    });
  const [w, p] = await Promise.all([run('waitExit'), run('poll')]);
  await reaper.end();
  const row = (label, r) =>
    `| ${label} | ${r.watched} | ${seconds} | ${r.timers} | ${r.loopWakeups} | ${r.cpuMs.toFixed(1)} | ${r.exited} |`;
  const section = [
    '<!-- section:health -->',
    `## Event-loop health: ${count} processes watched for ${seconds} s (${new Date().toISOString().slice(0, 10)})`,
    '',
    'One daemon-shaped process per row, both running over the same window and the same processes (not their',
    "children). Wake-ups are the voluntary context switches of the event loop's thread (an idle loop sleeps in",
    "epoll_wait); the window's own end timer is one of them. `node bench/health.mjs` re-measures this section.",
    '',
    '| mechanism | processes | seconds | timers held | event-loop wake-ups | CPU ms | exited during the window |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: |',
    row('`waitExit()` pending on each (ref\'d)', w),
    row('`process.kill(pid, 0)` on each every 100 ms (pm2)', p),
    '<!-- /section:health -->',
  ];
  process.stdout.write(`${section.join('\n')}\n`);
  const file = join(BENCH, 'RESULTS.md');
  let text = readFileSync(file, 'utf8').replace(/<!-- section:health -->[\s\S]*?<!-- \/section:health -->\n?/, '');
  const at = text.search(/^## Verdict$/m); // the closing verdict, not a section's own `### Verdict`
  text = at >= 0 ? `${text.slice(0, at)}${section.join('\n')}\n\n${text.slice(at)}` : `${text}\n${section.join('\n')}\n`;
  writeFileSync(file, text);
}
