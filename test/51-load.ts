// Load: an exit storm (5,000 processes dying at once, every wait settles exactly once with the right status).
// Figures are printed as test comments; none is asserted as a timing.
import t from 'tap';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { ensureDist } from './helpers/dist';
import { PidFd } from '../lib/index';
import type { ExitInfo } from '../lib/index';
import { pendingWatches } from '../lib/watcher';
import { Lines, ended } from './helpers/lines';
import { fixture, runNode, sleeper, track } from './helpers/procs';

const STORM = 5000;

t.test(`exit storm: ${STORM} processes released at once`, async (t) => {
  const forker = track(spawn(fixture('storm-forker'), [String(STORM)], { stdio: ['pipe', 'pipe', 'inherit'] }));
  const out = new Lines(forker.stdout!);
  await out.waitFor((l) => l === 'ready', 'ready', 120_000);
  const procs = out.all.filter((l) => /^\d+ \d+$/.test(l)).map((l) => l.split(' ').map(Number) as [number, number]);
  t.equal(procs.length, STORM, `${STORM} processes forked`);

  const pending0 = pendingWatches();
  const settled = new Map<number, ExitInfo[]>();
  const fds = procs.map(([pid]) => PidFd.open(pid));
  const waits = fds.flatMap((p, i) => {
    const record = (info: ExitInfo) => {
      const list = settled.get(p.pid) ?? [];
      list.push(info);
      settled.set(p.pid, list);
    };
    // Two waits each: one ref'd, one not (both share the one registration of this PidFd).
    return [p.waitExit().then(record), p.waitExit({ ref: i % 2 === 0 }).then(record)];
  });
  t.equal(pendingWatches() - pending0, STORM, 'one registration per process');
  const t0 = process.hrtime.bigint();
  forker.stdin!.end('go\n');
  await Promise.all(waits);
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  const reaped = await out.waitFor((l) => l.startsWith('reaped '), 'reaped', 120_000);
  await ended(forker);
  const [, count, spreadUs] = reaped.split(' ').map(Number);
  t.equal(count, STORM, 'the forker reaped every process');

  let exactlyTwice = 0;
  let rightCode = 0;
  const sources: Record<string, number> = {};
  for (const [pid, code] of procs) {
    const list = settled.get(pid) ?? [];
    if (list.length === 2 && list[0] === list[1]) exactlyTwice++;
    const info = list[0];
    if (info) sources[info.source] = (sources[info.source] ?? 0) + 1;
    if (info?.source === 'pidfd-info' && info.code === code && info.signal === null) rightCode++;
    else if (info?.source !== 'none') t.fail(`pid ${pid}: ${JSON.stringify(info)} for exit code ${code}`);
  }
  t.equal(exactlyTwice, STORM, 'each of the 2 waits per process settled exactly once, with the same result');
  t.equal(pendingWatches(), pending0, 'no registration left');
  // 'none' would mean the reaper took longer than the 100 ms reap grace; it reaps all 5,000 in a few ms here.
  t.ok((sources.none ?? 0) <= STORM / 100, `at most 1% without a status (${sources.none ?? 0})`);
  t.equal(rightCode, STORM - (sources.none ?? 0), 'every status read through PIDFD_INFO_EXIT has the exit code the process chose');
  t.comment(`storm: the parent reaped ${count} processes within ${(spreadUs! / 1000).toFixed(1)} ms; all ${STORM * 2} waits settled ${ms.toFixed(1)} ms after the release; sources ${JSON.stringify(sources)}`);
  for (const p of fds) p.close();
});

const OPEN_CYCLES = 1_000_000;
const WAIT_CYCLES = 100_000;

t.test(`churn: ${OPEN_CYCLES} open/close and ${WAIT_CYCLES} wait/abort cycles leave fds, heap and registrations flat`, async (t) => {
  t.equal(ensureDist(), undefined);
  const target = sleeper();
  t.teardown(() => target.kill('SIGKILL'));
  const r = await runNode(['--expose-gc', join(__dirname, 'fixtures', 'churn.js'), String(target.pid), String(OPEN_CYCLES), String(WAIT_CYCLES)]);
  t.equal(r.code, 0, r.stderr);
  const report = JSON.parse(r.stdout);
  type Snap = { fds: number; rssKiB: number; heapUsedKiB: number; pending: number };
  const { start, afterOpen, afterWait } = report as { start: Snap; afterOpen: Snap; afterWait: Snap };
  for (const [name, snap] of [['open/close', afterOpen], ['wait/abort', afterWait]] as const) {
    t.equal(snap.fds, start.fds, `${name}: fd count ${start.fds} -> ${snap.fds}`);
    t.equal(snap.pending, start.pending, `${name}: native registrations ${start.pending} -> ${snap.pending}`);
    // A leaked object per cycle would be >= 1M objects: tens of MiB of heap.
    t.ok(snap.heapUsedKiB - start.heapUsedKiB < 2048, `${name}: live heap ${start.heapUsedKiB} -> ${snap.heapUsedKiB} KiB`);
    // RSS moves in a band of about 30 MiB as V8 resizes its heap; a native leak of even 32 bytes a cycle is more.
    t.ok(snap.rssKiB - start.rssKiB < 48 * 1024, `${name}: RSS ${start.rssKiB} -> ${snap.rssKiB} KiB`);
  }
  t.equal(report.rejected, WAIT_CYCLES, 'every aborted wait rejected with ABORT_ERR');
  t.comment(`churn: ${OPEN_CYCLES} open/close in ${(report.openMs / 1000).toFixed(1)} s, ${WAIT_CYCLES} wait/abort in ${(report.waitMs / 1000).toFixed(1)} s; fds ${start.fds}/${afterOpen.fds}/${afterWait.fds}, heap KiB ${start.heapUsedKiB}/${afterOpen.heapUsedKiB}/${afterWait.heapUsedKiB}, RSS KiB ${start.rssKiB}/${afterOpen.rssKiB}/${afterWait.rssKiB}, registrations ${start.pending}/${afterOpen.pending}/${afterWait.pending}`);
});
