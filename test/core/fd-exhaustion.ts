// A process that runs out of file descriptors gets EMFILE, never "unsupported", and recovers fully once it closes
// some: a probe that could not run is not an answer. Each case runs test/fixtures/fd-exhaustion.js in a child
// process with RLIMIT_NOFILE 64 and checks its report against capabilities() of this (unlimited) process.
import t, { Test } from 'tap';
import { join } from 'node:path';
import { capabilities } from '../../lib/index';
import { ensureDist } from '../helpers/dist';
import { runNode } from '../helpers/procs';

const FIXTURE = join(__dirname, '..', 'fixtures', 'fd-exhaustion.js');
const LIMIT = ['bash', '-c', 'ulimit -n 64 && exec "$@"', 'bash'];
const EMFILE = { code: 'EMFILE', errno: -24 };

interface Failure {
  code: string | null;
  errno: number | null;
  syscall: string | null;
  message: string;
}
type Outcome = { ok?: unknown } & Partial<Failure>;
type Caps = Record<string, boolean>;
/** After the fds were closed: capabilities() and every feature tried once. */
interface After {
  caps: Caps;
  cached?: boolean;
  features: Record<string, Outcome>;
}
interface LoopReport extends After {
  whileFull: { opened: number; error: Failure; caps: Caps } & Record<
    'nonblocking' | 'scope' | 'getfd' | 'waitExit',
    Outcome
  >;
}
interface FirstProbeReport extends After {
  whileFull: { spare: number; caps: Caps; open: Outcome };
}
interface WorkerReport {
  filler: { full: { opened: number; error: Failure; caps: Caps }; freed: After };
  mainWhileFull: { caps: Caps; open: Outcome };
  main: After;
  fresh: After;
}

async function run<T>(...args: string[]): Promise<T> {
  const r = await runNode([FIXTURE, ...args], LIMIT);
  if (r.code !== 0 || r.signal !== null) {
    throw new Error(`fixture ${args.join(' ')}: ${r.code ?? r.signal}\n${r.stdout}\n${r.stderr}`);
  }
  return JSON.parse(r.stdout) as T;
}

/** Every feature worked: the same calls as in an unlimited process, with the same results. */
function worked(t: Test, f: After['features'], where: string): void {
  for (const name of ['fromChild', 'nonblocking', 'thread', 'signal0', 'scope', 'getfd', 'info', 'kill']) {
    t.same(f[name], { ok: true }, `${where}: ${name}`);
  }
  t.same(f.madvise, { ok: 4096 }, `${where}: madvise`);
  t.same(f.identity, { ok: 'ino' }, `${where}: identity from the pidfs inode`);
  t.same(f.pressure, { ok: 'trigger' }, `${where}: a PSI trigger is armed`);
  t.same(f.release, { ok: 'boolean' }, `${where}: release`);
  t.match(f.waitExit, { ok: { signal: 'SIGKILL', source: 'waitid' } }, `${where}: waitExit of a child`);
  t.match(f.nonChild, { ok: { signal: 'SIGKILL', source: 'pidfd-info' } }, `${where}: waitExit of a non-child`);
}

t.before(() => {
  t.equal(ensureDist(), undefined, 'the compiled package (dist/) is up to date with lib/');
});

const reference = (): Caps => ({ ...capabilities() });

t.test(
  'PidFd.open in a loop ends with EMFILE; afterwards capabilities() and every feature are as before',
  async (t) => {
    const r = await run<LoopReport>('loop');
    const full = r.whileFull;
    t.ok(full.opened > 10, `${full.opened} pidfds opened first`);
    t.match(full.error, { ...EMFILE, syscall: 'pidfd_open' }, 'the open that failed: EMFILE, with errno and syscall');
    t.match(full.error.message, /^EMFILE: too many open files, pidfd_open/);
    t.match(full.nonblocking, { ...EMFILE, syscall: 'pidfd_open' }, 'a flag whose probe cannot run: EMFILE too');
    t.match(full.scope, EMFILE, 'kill with a scope whose probe cannot run: EMFILE, not unsupported');
    t.match(full.getfd, { ...EMFILE, syscall: 'pidfd_getfd' }, 'getfd: EMFILE');
    t.match(full.waitExit, { ...EMFILE, syscall: 'epoll_create1' }, 'waitExit with no fd for the watcher: EMFILE');
    t.same(r.caps, reference(), 'capabilities() after closing the fds: what an unlimited process reports');
    t.equal(r.cached, true, 'and cached from then on');
    worked(t, r.features, 'after closing the fds');
  },
);

t.test('a full fd table at the very first probe: nothing is cached until the probe can run', async (t) => {
  const none = await run<FirstProbeReport>('first-probe', '0');
  t.ok(
    Object.values(none.whileFull.caps).every((v) => v === false),
    'no fd free: nothing confirmed',
  );
  t.match(none.whileFull.open, { ...EMFILE, syscall: 'pidfd_open' }, 'PidFd.open: EMFILE');
  t.same(none.caps, reference(), 'after freeing the table: every capability');
  t.equal(none.cached, true);
  worked(t, none.features, 'no fd free at the first probe');

  // One fd free: the probes that need only the process's own pidfd answer; those that need a second fd cannot run.
  const one = await run<FirstProbeReport>('first-probe', '1');
  const partial = one.whileFull.caps;
  t.equal(partial.pidfdOpen, true, 'one fd free: the own pidfd opens');
  t.equal(partial.pidfdNonblock, false, 'a second pidfd cannot be opened: PIDFD_NONBLOCK not confirmed yet');
  t.same(one.whileFull.open, { ok: true }, 'PidFd.open takes the one free fd');
  t.same(one.caps, reference(), 'the probes that could not run, run again: every capability');
  worked(t, one.features, 'one fd free at the first probe');
});

t.test('worker threads: one fills the fd table; the main thread and a new worker probe correctly after', async (t) => {
  const r = await run<WorkerReport>('worker');
  t.match(r.filler.full.error, { ...EMFILE, syscall: 'pidfd_open' }, 'the worker: PidFd.open ends with EMFILE');
  t.match(r.mainWhileFull.open, { ...EMFILE, syscall: 'pidfd_open' }, 'the main thread meanwhile: EMFILE');
  t.same(r.filler.freed.caps, reference(), 'the worker, after closing its fds: every capability');
  worked(t, r.filler.freed.features, 'the worker that hit EMFILE');
  t.same(r.main.caps, reference(), 'the main thread, whose first probe ran while the table was full');
  worked(t, r.main.features, 'the main thread');
  t.same(r.fresh.caps, reference(), 'a new worker');
  worked(t, r.fresh.features, 'a new worker');
});

t.test("killTree's children-file check: no answer while the table is full, the real one after", async (t) => {
  const r = await run<{ whileFull: boolean | null; after: boolean | null; tree: Outcome }>('children-files');
  t.equal(r.whileFull, null, 'with no fd free the check has no answer (not "no children files")');
  t.equal(r.after, true, 'once fds are free it finds the children files this kernel has');
  t.same(r.tree, { ok: 3 }, 'killTree then kills the shell and its two sleepers');
});
