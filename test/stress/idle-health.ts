// Event-loop health: a script watching 2,000 processes for 60 s (ref'd waits, as a supervisor holds them) has no
// timer and wakes up only for the one timer that ends the measurement. CPU time is printed; the benchmark
// (bench/idle.mjs) compares it with a polling supervisor.
import t from 'tap';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { ensureDist } from '../helpers/dist';
import { Lines, ended } from '../helpers/lines';
import { fixture, runNode, track } from '../helpers/procs';

const WATCHED = 2000;
const SECONDS = Number(process.env.PIDFD_IDLE_SECONDS ?? 60);

t.test(`${WATCHED} processes watched for ${SECONDS} s: no timers, no wake-ups`, async (t) => {
  t.equal(ensureDist(), undefined);
  const forker = track(spawn(fixture('scale-forker'), [String(WATCHED)], { stdio: ['ignore', 'pipe', 'inherit'] }));
  t.teardown(() => forker.kill('SIGTERM'));
  const out = new Lines(forker.stdout!);
  await out.waitFor((l) => l === 'ready', 'ready', 120_000);
  const pids = out.all.filter((l) => /^\d+$/.test(l));
  t.equal(pids.length, WATCHED);

  const r = await runNode([join(__dirname, '..', 'fixtures', 'idle-watch.js'), String(SECONDS), pids.join(',')]);
  t.equal(r.code, 0, r.stderr);
  const report = JSON.parse(r.stdout);
  t.equal(report.exited, 0, 'no watched process exited during the window');
  t.ok(
    (report.activeResources.Timeout ?? 0) <= 1,
    `no timer but the measurement's own: ${JSON.stringify(report.activeResources)}`,
  );
  // The event loop's thread sleeps in epoll_wait: the window's end is one wake-up, and V8 posts a few tasks of its
  // own to the loop, mostly early. A supervisor polling once a second would wake SECONDS times, every 100 ms ten
  // times that: the bound sits well below both.
  t.ok(report.loopWakeups <= SECONDS / 2 + 5, `${report.loopWakeups} event-loop wake-ups in ${SECONDS} s`);
  t.comment(
    `idle health: ${WATCHED} watched for ${SECONDS} s: ${report.cpuMs.toFixed(1)} ms CPU, ` +
      `${report.loopWakeups} event-loop wake-ups (${report.processSwitches} in all threads), ` +
      `resources ${JSON.stringify(report.activeResources)}`,
  );
  forker.kill('SIGTERM');
  await ended(forker);
});
