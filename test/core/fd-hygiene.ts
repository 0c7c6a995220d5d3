// fd hygiene: 100,000 open/close cycles leave the process's fd count unchanged; a PidFd dropped
// without close has its fd closed after garbage collection. And a closed PidFd never touches its old fd number,
// which may already belong to another file.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { readdirSync, readlinkSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PidFd } from '../../lib/index';
import { pendingWatches } from '../../lib/watcher';
import { ensureDist } from '../helpers/dist';
import { exited, NodeRun, runNode, sleeper } from '../helpers/procs';

const CYCLES = 100_000;
const FIXTURES = join(__dirname, '..', 'fixtures');
const FILE = join(tmpdir(), `pidfd-fd-hygiene-${process.pid}.txt`);
const FILE_TEXT = 'pidfd fd-hygiene test file\n';
writeFileSync(FILE, FILE_TEXT);
t.teardown(() => {
  try {
    unlinkSync(FILE);
  } catch {
    /* gone */
  }
});

/** fd number → what it is (pipe, anon_inode:[pidfd], a path ...), without inode numbers. */
function fdTable(): Record<string, string> {
  const out: Record<string, string> = {};
  for (const f of readdirSync('/proc/self/fd')) {
    try {
      out[f] = readlinkSync(`/proc/self/fd/${f}`).replace(/:\[\d+\]$/, '');
    } catch {
      /* the directory fd of readdirSync itself */
    }
  }
  return out;
}
const pidfds = (table: Record<string, string>) => Object.values(table).filter((v) => v === 'anon_inode:[pidfd]').length;

/** The child's stderr, without the markers fd-closed.js writes there. */
const realStderr = (r: NodeRun) => r.stderr.replace(/MARK-\w+ \d+\n/g, '');

t.test(`${CYCLES.toLocaleString('en')} open/close cycles leave the fd table unchanged`, async (t) => {
  const target = sleeper();
  // Warm up: the first wait starts this environment's watcher (one epoll fd for the life of the process).
  const warm = PidFd.open(process.pid);
  const warmWait = warm.waitExit({ ref: false });
  warm.close();
  await t.rejects(warmWait, { code: 'ERR_PIDFD_CLOSED' });

  const before = fdTable();
  t.equal(pidfds(before), 0, 'no pidfd open before');
  let opened = 0;
  const seen = new Set<number>();
  for (let i = 0; i < CYCLES; i++) {
    const p = PidFd.open(i % 2 === 0 ? target.pid! : process.pid, i % 10 === 0 ? { nonblocking: true } : undefined);
    seen.add(p.fd);
    opened++;
    if (i % 3 === 0) p[Symbol.dispose]();
    else p.close();
  }
  const after = fdTable();
  t.equal(opened, CYCLES, `${CYCLES} PidFds opened and closed`);
  t.same(
    after,
    before,
    `fd table unchanged (${Object.keys(before).length} fds before, ${Object.keys(after).length} after)`,
  );
  t.ok(seen.size <= 2, `the same fd number was reused each time (numbers seen: ${[...seen].join(', ')})`);

  // Failed opens leak nothing either.
  let failures = 0;
  for (let i = 0; i < 1000; i++) {
    try {
      PidFd.open(2 ** 22); // above pid_max: no such process
    } catch (err) {
      if ((err as { code?: string }).code === 'ESRCH') failures++;
    }
  }
  t.equal(failures, 1000, 'every open of a pid that does not exist failed with ESRCH');
  t.same(fdTable(), before, 'fd table unchanged after 1,000 failed opens');

  // Cycles with a wait pending at close: the wait rejects, the watcher registration goes, the fd goes.
  const options = [undefined, { ref: false }, { timeout: 60_000 }, { signal: new AbortController().signal }];
  let rejected = 0;
  for (let i = 0; i < 1000; i++) {
    const p = PidFd.open(target.pid!);
    const waits = [p.waitExit(options[i % 4]), p.waitExit(options[(i + 1) % 4])];
    p.close();
    for (const r of await Promise.allSettled(waits)) {
      if (r.status === 'rejected' && (r.reason as { code?: string }).code === 'ERR_PIDFD_CLOSED') rejected++;
    }
  }
  t.equal(rejected, 2000, 'every pending wait rejected with ERR_PIDFD_CLOSED when its PidFd closed');
  t.equal(pendingWatches(), 0, 'no watcher registration left');
  t.same(fdTable(), before, 'fd table unchanged after 1,000 close-while-waiting cycles');

  t.ok(target.kill('SIGKILL'));
  t.same(await exited(target), [null, 'SIGKILL'], 'the target was never signalled by any of it');
});

t.test('a PidFd dropped without close() has its fd closed after garbage collection', async (t) => {
  t.equal(ensureDist(), undefined, 'the compiled package (dist/) is up to date with lib/');
  const DROPPED = 64;
  const r = await runNode(['--expose-gc', '--no-warnings', join(FIXTURES, 'fd-gc.js'), String(DROPPED), FILE]);
  t.equal(r.signal, null);
  t.equal(r.code, 0, `the child exited 0${r.stderr ? `; stderr: ${r.stderr.slice(0, 2000)}` : ''}`);
  let rep: {
    baseline: Record<string, string>;
    after: Record<string, string>;
    closedLast: number;
    fileFd: number;
    dropped: number[];
    afterOpenPidfds: number;
    warnings: { name: string; code: string; message: string }[];
    stillOpen: number[];
    fileStillOpen: boolean;
    rounds: number;
  };
  try {
    rep = JSON.parse(r.stdout);
  } catch {
    t.fail(`the child printed its report (got ${JSON.stringify(r.stdout.slice(0, 500))})`);
    return;
  }
  t.equal(rep.afterOpenPidfds, DROPPED, `${DROPPED} pidfds were open before the collection`);
  t.same(rep.stillOpen, [], 'after gc() and a few turns of the event loop, none of them is open');
  t.same(
    rep.after,
    { ...rep.baseline, [rep.fileFd]: FILE },
    'the fd table is the baseline again (plus the file opened)',
  );
  t.equal(
    rep.warnings.length,
    DROPPED,
    'one warning per PidFd closed by the collector, none for PidFds closed properly',
  );
  t.same([...new Set(rep.warnings.map((w) => w.code))], ['PIDFD_GC_CLOSE'], 'warning code PIDFD_GC_CLOSE');
  const warned = rep.warnings.map((w) => Number(/pidfd (\d+)/.exec(w.message)?.[1])).sort((a, b) => a - b);
  t.same(
    warned,
    [...rep.dropped].sort((a, b) => a - b),
    'each warning names one of the dropped fds, each exactly once',
  );
  t.ok(
    rep.warnings.every((w) => /call close\(\) instead/.test(w.message)),
    'the warning tells how to avoid it',
  );
  t.equal(rep.fileFd, rep.closedLast, 'a regular file took the number of a PidFd that was closed and then dropped');
  t.ok(rep.fileStillOpen, 'collecting that closed PidFd did not close the file now holding its old number');
  t.comment(
    `fds: ${Object.keys(rep.baseline).length} before, ${Object.keys(rep.baseline).length + DROPPED + 1} with the ` +
      `dropped PidFds and the file, ${Object.keys(rep.after).length} after collection (${rep.rounds + 1} gc round(s))`,
  );
});

interface ClosedReport {
  pendingRejected: string;
  oldFd: number;
  fileFd: number;
  calls: Record<string, string>;
  fileStillOpen: boolean;
  fileContent: string;
  targetAlive: boolean;
  reuse: {
    oldFd: number;
    newFd: number;
    killOld: string;
    closeOld: string;
    bAlive: boolean;
    aAlive: boolean;
    newStillOpen: boolean;
    killNew: boolean;
    bExit: { pid: number; code: number | null; signal: string | null };
  };
  exits: [number | null, string | null][];
  pids: { target: number; a: number; b: number };
}

function checkClosedReport(t: tap.Test, rep: ClosedReport): void {
  t.equal(rep.pendingRejected, 'ERR_PIDFD_CLOSED', 'a wait pending at close() rejects with ERR_PIDFD_CLOSED');
  t.equal(rep.fileFd, rep.oldFd, `a regular file now has the closed PidFd's old number (${rep.oldFd})`);
  const closed = 'ERR_PIDFD_CLOSED';
  t.same(
    rep.calls,
    {
      kill: closed,
      killSIGKILL: closed,
      killValue: closed,
      killGroup: closed,
      release: closed,
      info: closed,
      getfd: closed,
      madviseEmpty: closed,
      madvise: closed,
      fd: closed,
      exited: closed,
      waitExit: closed,
      waitExitTimeout: closed,
      waitExitSignal: closed,
      closeAgain: 'ok:undefined', // close() is idempotent: a no-op, not an error
      dispose: 'ok:undefined',
      pid: `ok:${rep.pids.target}`, // the pid stays readable
      closed: 'ok:true',
    },
    'every method throws or rejects ERR_PIDFD_CLOSED; close() again is a no-op',
  );
  t.ok(rep.fileStillOpen, 'the file is still open under that number');
  t.equal(rep.fileContent, FILE_TEXT, 'and still reads as the same file');
  t.ok(rep.targetAlive, "the closed PidFd's process was not signalled");
  t.equal(rep.reuse.newFd, rep.reuse.oldFd, 'a PidFd for another process took the old number');
  t.equal(rep.reuse.killOld, closed, 'kill() through the closed PidFd throws ERR_PIDFD_CLOSED ...');
  t.ok(rep.reuse.bAlive, '... and does not reach the process now behind that number');
  t.ok(rep.reuse.aAlive, '... nor its own old process');
  t.equal(rep.reuse.closeOld, 'ok:undefined');
  t.ok(rep.reuse.newStillOpen, "close() again on the old PidFd left the new PidFd's fd open");
  t.equal(rep.reuse.killNew, true);
  t.match(rep.reuse.bExit, { pid: rep.pids.b, code: null, signal: 'SIGKILL' }, 'the new PidFd still works');
  t.same(
    rep.exits,
    [
      [null, 'SIGKILL'],
      [null, 'SIGKILL'],
      [null, 'SIGKILL'],
    ],
    "each process died only by the test's own kill",
  );
}

function parseReport<T>(t: tap.Test, stdout: string): T | undefined {
  try {
    return JSON.parse(stdout) as T;
  } catch {
    t.fail(`the child printed its report (got ${JSON.stringify(stdout.slice(0, 500))})`);
    return undefined;
  }
}

t.test('a closed PidFd never touches its old fd number', async (t) => {
  t.equal(ensureDist(), undefined, 'the compiled package (dist/) is up to date with lib/');
  const r = await runNode([join(FIXTURES, 'fd-closed.js'), FILE]);
  t.equal(r.signal, null);
  t.equal(r.code, 0, `the child exited 0${realStderr(r) ? `; stderr: ${realStderr(r).slice(0, 2000)}` : ''}`);
  const rep = parseReport<ClosedReport>(t, r.stdout);
  if (rep) checkClosedReport(t, rep);
});

let hasStrace = true;
try {
  execFileSync('strace', ['-V'], { stdio: 'ignore' });
} catch {
  hasStrace = false;
}

t.test('... not even in a system call (strace)', { skip: hasStrace ? false : 'strace is not installed' }, async (t) => {
  t.equal(ensureDist(), undefined, 'the compiled package (dist/) is up to date with lib/');
  const log = join(tmpdir(), `pidfd-fd-hygiene-${process.pid}.strace`);
  t.teardown(() => {
    try {
      unlinkSync(log);
    } catch {
      /* gone */
    }
  });
  // The main thread only (no -f): every native call of the package runs on it. Every syscall that takes an fd.
  const traced = '%desc,pidfd_open,pidfd_send_signal,pidfd_getfd,process_madvise,process_mrelease,waitid,close,ioctl';
  const r = await runNode(
    [join(FIXTURES, 'fd-closed.js'), FILE],
    ['strace', '-qq', '-o', log, '-e', `trace=${traced}`],
  );
  t.equal(r.signal, null);
  t.equal(
    r.code,
    0,
    `the child exited 0 under strace${realStderr(r) ? `; stderr: ${realStderr(r).slice(0, 2000)}` : ''}`,
  );
  const rep = parseReport<ClosedReport>(t, r.stdout);
  if (!rep) return;
  checkClosedReport(t, rep);

  const lines = readFileSync(log, 'utf8').split('\n');
  const begin = lines.findIndex((l) => l.startsWith(`write(2, "MARK-BEGIN ${rep.oldFd}\\n"`));
  const end = lines.findIndex((l) => l.startsWith(`write(2, "MARK-END ${rep.oldFd}\\n"`));
  t.ok(begin > 0 && end > begin, 'the trace has both markers');
  const n = rep.oldFd;
  // Sanity: the trace does see the fd's life before the markers.
  const beforeMarks = lines.slice(0, begin);
  t.ok(
    beforeMarks.some((l) => /^pidfd_open\(/.test(l) && l.endsWith(`= ${n}`)),
    `the trace shows pidfd_open returning ${n}`,
  );
  t.ok(
    beforeMarks.some((l) => l.startsWith(`close(${n})`)),
    `the trace shows close(${n})`,
  );
  t.ok(
    beforeMarks.some((l) => /^openat\(.*pidfd-fd-hygiene/.test(l) && l.endsWith(`= ${n}`)),
    `the trace shows the file opened as ${n}`,
  );
  // Between the markers every method of the closed PidFd was called: no system call may name fd n.
  const names = (l: string): boolean => {
    const m = /^(\w+)\((.*)$/.exec(l);
    if (!m) return false;
    const args = m[2].split(', ');
    const at = m[1] === 'waitid' ? 1 : m[1] === 'epoll_ctl' ? 2 : 0;
    return args[at] === String(n) || new RegExp(`\\bfd=${n}\\b`).test(m[2]);
  };
  const offending = lines.slice(begin + 1, end).filter(names);
  t.same(offending, [], `no system call names fd ${n} while the closed PidFd's methods run`);
  t.comment(`${end - begin - 1} traced fd system call(s) between the markers`);
});
