// Scale: 10,000 concurrent waits over at least 2,000 live processes all resolve once they die.
//
// The work runs in a child process (test/fixtures/scale-waits.js, loading the compiled package) under its own fd
// limit and in its own process group, so a failure there cannot leave the runner short of fds or with strays.
// Half the processes are our children (child_process), half are children of a small C forker that reaps them:
// for us they are non-children, whose exit status comes through PIDFD_INFO_EXIT.
import t from 'tap';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ensureDist } from '../helpers/dist';
import { fixture, track } from '../helpers/procs';

const CHILDREN = 1024;
const NON_CHILDREN = 1024;
const WAITS_PER_PROCESS = 5;
const PROCESSES = CHILDREN + NON_CHILDREN;
const DRIVER = join(__dirname, '..', 'fixtures', 'scale-waits.js');
// A hang guard, not a measurement: the whole run takes a few seconds; past this something never settled.
const HANG_GUARD_MS = 150_000;

interface FdCount {
  total: number;
  pidfds: number;
  other: string[];
}
type WaitRow = [number, number | null, string | null, string] | ['rejected'];
interface Report {
  limitNofile: string;
  warmWait: string;
  fdsBaseline: FdCount;
  fdsOpen: FdCount;
  fdsBeforeClose: FdCount;
  fdsAfterClose: FdCount;
  fdsEnd: FdCount;
  wrongParent: number;
  processes: number;
  waits: number;
  pendingBeforeKill: number;
  exitedBeforeKill: number;
  killFalse: number;
  rejected: string[];
  pendingAfter: number;
  rows: [string, number, string, ...WaitRow[]][];
  childExitMismatch: number;
  forker: { code: number | null; signal: string | null; reaped: string | null };
}

function hardNofile(): number {
  const line = readFileSync('/proc/self/limits', 'utf8')
    .split('\n')
    .find((l) => l.startsWith('Max open files'));
  const hard = (line ?? '').trim().split(/\s+/)[4];
  return hard === 'unlimited' ? 1 << 20 : Number(hard);
}

const epolls = (c: FdCount) => c.other.filter((f) => f.endsWith('anon_inode:[eventpoll]')).length;

t.test(`${PROCESSES * WAITS_PER_PROCESS} concurrent waits over ${PROCESSES} live processes`, async (t) => {
  t.equal(ensureDist(), undefined, 'the compiled package (dist/) is up to date with lib/');
  const forker = fixture('scale-forker');
  // Each process costs one pidfd in the driver; raise its soft limit as far as the hard limit allows.
  const limit = Math.min(hardNofile(), 65536);
  t.ok(limit >= PROCESSES + 256, `the fd hard limit (${limit}) leaves room for ${PROCESSES} pidfds`);

  // `env -u NODE_OPTIONS`: plain Node, without the test runner's hooks (which it re-adds to any env given to spawn).
  const args = [DRIVER, forker, String(CHILDREN), String(NON_CHILDREN), String(WAITS_PER_PROCESS)];
  const plainNode = ['env', '-u', 'NODE_OPTIONS', process.execPath];
  const driver = track(
    spawn('prlimit', [`--nofile=${limit}:${limit}`, '--', ...plainNode, ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true, // its own process group: the teardown below reaches every process it started
    }),
  );
  let stdout = '';
  let stderr = '';
  driver.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  driver.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  let hung = false;
  const guard = setTimeout(() => {
    hung = true;
    try {
      process.kill(-driver.pid!, 'SIGTERM'); // the forker kills and reaps its own children on SIGTERM
    } catch {
      /* gone */
    }
    setTimeout(() => {
      try {
        process.kill(-driver.pid!, 'SIGKILL');
      } catch {
        /* gone */
      }
    }, 2000).unref();
  }, HANG_GUARD_MS);
  const [code, signal] = await new Promise<[number | null, string | null]>((resolve) =>
    driver.once('close', (c, s) => resolve([c, s])),
  );
  clearTimeout(guard);

  t.notOk(hung, 'the driver finished (no wait left pending, nothing kept its event loop alive)');
  t.equal(signal, null, 'the driver was not killed by a signal');
  t.equal(code, 0, `the driver exited 0 by itself${stderr ? `; stderr: ${stderr.slice(0, 2000)}` : ''}`);
  let r: Report;
  try {
    r = JSON.parse(stdout) as Report;
  } catch {
    t.fail(`the driver printed its report (got ${JSON.stringify(stdout.slice(0, 500))})`);
    return;
  }
  t.comment(r.limitNofile);

  t.equal(r.processes, PROCESSES, `${PROCESSES} processes (>= 2,000) were live at once`);
  t.ok(r.waits >= 10_000, `${r.waits} waits (>= 10,000) were pending at once`);
  t.equal(r.wrongParent, 0, 'every pid named the intended process (ppid: us for children, the forker otherwise)');
  t.equal(r.fdsOpen.pidfds, PROCESSES, 'one pidfd per process');
  t.equal(r.exitedBeforeKill, 0, 'no process had exited before the kill');
  t.equal(r.pendingBeforeKill, PROCESSES, 'all waits of one PidFd share a single watcher registration');
  t.equal(r.killFalse, 0, 'every kill() was delivered (returned true)');

  t.same(r.rejected, [], 'no wait rejected');
  t.equal(r.pendingAfter, 0, 'pendingWatches() is back to 0 once every wait has settled');

  // Every wait of every process: the right pid, killed (no exit code) by the signal we sent, from the right source.
  const mismatches: string[] = [];
  const seen = new Set<string>();
  let resolved = 0;
  for (const [kind, pid, sent, ...waits] of r.rows) {
    if (waits.length !== WAITS_PER_PROCESS) mismatches.push(`${kind} ${pid}: ${waits.length} waits`);
    for (const w of waits) {
      if (w[0] === 'rejected') {
        mismatches.push(`${kind} ${pid}: rejected`);
        continue;
      }
      const [wpid, wcode, wsignal, source] = w;
      const sources = kind === 'child' ? ['waitid', 'pidfd-info'] : ['pidfd-info'];
      if (wpid !== pid || wcode !== null || wsignal !== sent || !sources.includes(source)) {
        mismatches.push(`${kind} ${pid} (sent ${sent}): got ${JSON.stringify(w)}`);
      } else {
        resolved++;
        seen.add(`${kind} ${sent}`);
      }
    }
  }
  t.same(mismatches.slice(0, 20), [], 'every wait resolved with the right pid, signal and source');
  t.equal(resolved, PROCESSES * WAITS_PER_PROCESS, `all ${PROCESSES * WAITS_PER_PROCESS} waits resolved correctly`);
  t.same(
    [...seen].sort(),
    ['child SIGKILL', 'child SIGTERM', 'other SIGKILL', 'other SIGTERM'],
    'both signals, for children and non-children alike',
  );
  t.equal(r.childExitMismatch, 0, "child_process still reaped every child and reported the same signal ('exit')");
  t.same(
    r.forker,
    { code: 0, signal: null, reaped: `reaped ${NON_CHILDREN}` },
    'the forker reaped all its children (our waits never took its zombies away)',
  );

  t.equal(r.fdsAfterClose.pidfds, 0, 'closing every PidFd closed every pidfd');
  t.equal(r.fdsAfterClose.total, r.fdsBeforeClose.total - PROCESSES, `fd count dropped by exactly ${PROCESSES}`);
  t.equal(r.fdsEnd.pidfds, 0, 'no pidfd left at the end');
  t.equal(epolls(r.fdsEnd), epolls(r.fdsBaseline), 'still one watcher epoll set, as before the run');
  t.comment(
    `fds: ${r.fdsBaseline.total} at start, ${r.fdsBeforeClose.total} with the PidFds open, ` +
      `${r.fdsAfterClose.total} after closing them (the rest: child_process stdio)`,
  );
});
