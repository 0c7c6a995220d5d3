// Environments a daemon meets: a seccomp filter that hides or forbids calls, a pid namespace where the target is
// invisible, an unprivileged user. Each runs test/fixtures/restricted-probe.js there, which tries every call on
// its own child and on an outside process and reports each outcome; a crash would leave no report.
import t from 'tap';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { ensureDist } from '../helpers/dist';
import { readableCopy } from '../helpers/readable-copy';
import { fixture, pidExists, runNode, sleeper } from '../helpers/procs';

ensureDist();
const PROBE = join(__dirname, '..', 'fixtures', 'restricted-probe.js');
const ENOSYS = 38;
const EPERM = 1;

type Outcome = { ok?: unknown; code?: string | null; message?: string };
interface Report {
  uid: number;
  pid: number;
  caps: Record<string, boolean>;
  own: Record<string, Outcome>;
  outsider: Record<string, Outcome>;
}

/** The probe and the package, copied where uid 65534 can read them. */
function readableProbe(): { probe: string; node: string; dir: string } {
  const copy = readableCopy([join('test', 'fixtures', 'restricted-probe.js')]);
  return { ...copy, probe: join(copy.dir, 'test', 'fixtures', 'restricted-probe.js') };
}

async function probe(
  prefix: string[],
  outsider = 0,
  copy?: { probe: string; node: string; dir: string },
): Promise<Report> {
  const r = await runNode([copy?.probe ?? PROBE, String(outsider)], prefix, copy && { node: copy.node, cwd: copy.dir });
  if (r.code !== 0 || r.signal !== null) {
    throw new Error(`probe under ${prefix.join(' ')} ended with ${r.code ?? r.signal}:\n${r.stdout}\n${r.stderr}`);
  }
  return JSON.parse(r.stdout) as Report;
}

const missing = (r: Report) => Object.keys(r.caps).filter((k) => !r.caps[k]);
const unsupported = (o: Outcome | undefined) => o?.code === 'ERR_PIDFD_UNSUPPORTED';

t.test('seccomp: process_mrelease and PIDFD_GET_INFO hidden (ENOSYS) or forbidden (EPERM)', async (t) => {
  const run = fixture('seccomp-run');
  for (const [errno, what] of [
    [ENOSYS, 'ENOSYS'],
    [EPERM, 'EPERM'],
  ] as const) {
    const r = await probe([run, String(errno), 'process_mrelease', 'pidfd_get_info', '--']);
    t.same(
      missing(r).sort(),
      ['pidfdGetInfo', 'pidfdInfoExit', 'processMrelease'],
      `${what}: capabilities() says which`,
    );
    t.ok(unsupported(r.own.info), `${what}: info() is ERR_PIDFD_UNSUPPORTED`);
    t.ok(unsupported(r.own.releaseLive) && unsupported(r.own.release), `${what}: release() is ERR_PIDFD_UNSUPPORTED`);
    t.match(
      r.own.release.message,
      what === 'EPERM' ? /refused it with EPERM/ : /needs Linux 5\.15/,
      `${what}: the message says why`,
    );
    t.same([r.own.open?.ok, r.own.kill?.ok, r.own.getfd?.ok], [true, true, true], `${what}: open, kill, getfd work`);
    t.match(r.own.waitExit?.ok, { signal: 'SIGKILL', source: 'waitid' }, `${what}: waitExit works`);
  }
});

t.test('seccomp: pidfd_open forbidden: everything reports itself missing, nothing crashes', async (t) => {
  const run = fixture('seccomp-run');
  const outside = sleeper();
  t.teardown(() => outside.kill('SIGKILL'));
  for (const errno of [ENOSYS, EPERM]) {
    const r = await probe([run, String(errno), 'pidfd_open', '--'], outside.pid);
    t.same(
      missing(r).length,
      Object.keys(r.caps).length,
      `errno ${errno}: all ${missing(r).length} capabilities missing`,
    );
    t.ok(unsupported(r.own.open), `errno ${errno}: fromChild is ERR_PIDFD_UNSUPPORTED`);
    t.ok(unsupported(r.outsider.open), `errno ${errno}: open is ERR_PIDFD_UNSUPPORTED`);
  }
  t.ok(pidExists(outside.pid!));
});

t.test('seccomp: getfd, madvise, signals, waitid each filtered alone', async (t) => {
  const run = fixture('seccomp-run');
  const a = await probe([run, String(ENOSYS), 'process_madvise', 'pidfd_getfd', '--']);
  t.same(missing(a).sort(), ['pidfdGetfd', 'processMadvise']);
  t.ok(unsupported(a.own.getfd) && unsupported(a.own.madvise), 'getfd and madvise: ERR_PIDFD_UNSUPPORTED');
  t.match(a.own.waitExit?.ok, { signal: 'SIGKILL' });

  const s = await probe([run, String(EPERM), 'pidfd_send_signal', '--']);
  t.same(missing(s).sort(), ['pidfdSendSignal', 'pidfdSignalScope']);
  t.ok(unsupported(s.own.kill) && unsupported(s.own.signal0), 'kill: ERR_PIDFD_UNSUPPORTED, not a bare EPERM');
  t.match(s.own.waitExit?.ok, { signal: 'SIGKILL' }, 'waitExit still sees the exit (the probe killed by pid)');

  // Without waitid(P_PIDFD) the status of our own child comes from PIDFD_INFO_EXIT once Node reaped it.
  const w = await probe([run, String(EPERM), 'waitid', '--']);
  t.same(missing(w), ['waitidPidfd']);
  t.match(w.own.waitExit?.ok, { signal: 'SIGKILL', source: 'pidfd-info' });
});

t.test('pid namespace: a process outside is invisible (ESRCH); everything inside works', async (t) => {
  const outside = sleeper();
  t.teardown(() => outside.kill('SIGKILL'));
  // Under `npm run test:sanitize`: LeakSanitizer cannot stop the world as pid 1 of a namespace, so no leak check
  // for this one probe (it runs the same code as the others).
  const lsan = process.env.ASAN_OPTIONS ? ['env', `ASAN_OPTIONS=${process.env.ASAN_OPTIONS}:detect_leaks=0`] : [];
  const r = await probe([...lsan, 'unshare', '--pid', '--fork', '--mount-proc'], outside.pid);
  t.equal(r.pid, 1, 'the probe is pid 1 of its own namespace');
  t.same(missing(r), []);
  t.equal(r.outsider.open?.code, 'ESRCH');
  t.match(r.own.waitExit?.ok, { signal: 'SIGKILL', source: 'waitid' });
  t.ok(pidExists(outside.pid!), 'the outside process was not touched');
});

t.test('unprivileged (uid 65534): documented failures on a root process, own child works', async (t) => {
  const outside = sleeper();
  t.teardown(() => outside.kill('SIGKILL'));
  const copy = readableProbe();
  t.teardown(() => rmSync(copy.dir, { recursive: true, force: true }));
  const r = await probe(['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups'], outside.pid, copy);
  t.equal(r.uid, 65534);
  t.same(missing(r), [], 'every capability is there for an unprivileged caller');
  t.equal(r.outsider.open?.ok, true, 'pidfd_open needs no permission');
  t.equal(r.outsider.kill?.code, 'EPERM', "signalling another user's process: EPERM");
  t.equal(r.outsider.signal0?.code, 'EPERM');
  t.equal(r.outsider.getfd?.code, 'EPERM', 'pidfd_getfd on it: EPERM');
  t.match(r.outsider.madvise?.code, /^(EPERM|EACCES)$/, 'process_madvise on it: EPERM or EACCES');
  t.equal(r.outsider.info?.ok, 0, 'PIDFD_GET_INFO needs no permission: ruid 0');
  t.equal(r.outsider.releaseLive?.code, 'EINVAL', 'process_mrelease checks no permission: only that it is dying');
  t.ok(pidExists(outside.pid!), 'the root process was not signalled');
  for (const call of ['open', 'getfd', 'signal0', 'kill']) t.equal(r.own[call]?.ok, true, `own child: ${call}`);
  t.equal(r.own.info?.ok, 65534);
  // process_madvise on any other process needs CAP_SYS_NICE, even on one's own child.
  t.equal(r.own.madvise?.code, 'EPERM', "own child's memory: EPERM without CAP_SYS_NICE");
  t.type(r.own.release?.ok, 'boolean', 'release() after SIGKILL on its own child: true or false, no error');
  t.match(r.own.waitExit?.ok, { signal: 'SIGKILL', source: 'waitid' });
});
