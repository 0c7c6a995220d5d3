// waitExit on real processes.
// Statuses: a child, a non-child (reaped by its own parent), a zombie, an already-exited process; code and
// signal right wherever the kernel can tell; child_process still emits 'exit' with the right code.
// Timeouts and aborts: timeout and AbortSignal reject correctly, leave no registration behind, and never keep the event
// loop alive unless asked to (checked in child processes).
import t, { Test } from 'tap';
import { ChildProcess, spawn } from 'node:child_process';
import { getEventListeners } from 'node:events';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { ExitInfo, PidFd } from '../../lib/index';
import { Lines, ended } from '../helpers/lines';
import { pendingWatches } from '../../lib/watcher';
import { fixture, procState, sleeperFor, track, untilSync } from '../helpers/procs';

/** Settles with the promise, or rejects after a guard (so a wait that never settles fails the test). */
function guarded<T>(p: Promise<T>, what: string, guardMs = 20_000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const guard = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not settled within ${guardMs} ms`)), guardMs);
  });
  return Promise.race([p, guard]).finally(() => clearTimeout(timer));
}

function alive(pid: number): boolean {
  const s = procState(pid);
  return s !== undefined && s !== 'Z' && s !== 'X';
}

/** `sh -c 'read c; exit $c'`: our own child, which exits with the code we write to it. */
function exitOnDemand(t: Test): ChildProcess {
  const child = track(spawn('sh', ['-c', 'read c; exit "$c"'], { stdio: ['pipe', 'ignore', 'inherit'] }));
  t.teardown(() => {
    child.kill('SIGKILL');
  });
  return child;
}

interface Tree {
  parent: ChildProcess;
  out: Lines;
  /** The grandchild's pid: not our child. */
  pid: number;
  /** Makes the grandchild exit with this code. */
  exit(code: number): void;
  /** Resolves with the parent's "reaped" line. */
  reaped(): Promise<string>;
}

/** test/fixtures/wait-tree.c: a parent (our child) and its child (our grandchild). */
async function tree(t: Test, mode: 'reap' | 'noreap'): Promise<Tree> {
  const parent = track(spawn(fixture('wait-tree'), [mode], { stdio: ['pipe', 'pipe', 'inherit'] }));
  t.teardown(async () => {
    parent.kill('SIGTERM'); // it SIGKILLs and reaps its child, then exits
    await ended(parent);
  });
  const out = new Lines(parent.stdout as Readable);
  const pid = Number((await out.waitFor((l) => l.startsWith('child '), 'child')).split(' ')[1]);
  return {
    parent,
    out,
    pid,
    exit: (code) => parent.stdin?.write(`${code}\n`),
    reaped: () => out.waitFor((l) => l.startsWith(`reaped pid=${pid} `), 'reaped'),
  };
}

/**
 * How an own child's exit must look when the wait was pending as it died. The status is read with waitid(WNOWAIT)
 * when the wake-up reaches us before Node's SIGCHLD handling reaps the child (the usual case), else from
 * PIDFD_INFO_EXIT: Node reaped first once in about 90 full runs here, so the source may be either; the code and
 * signal must be exact. (The deterministic 'waitid' case, an unreaped zombie
 * child, is checked below with the event loop blocked.)
 */
function assertOwnChildExit(t: Test, info: ExitInfo, expected: Omit<ExitInfo, 'source'>, what: string): void {
  t.same({ pid: info.pid, code: info.code, signal: info.signal }, expected, what);
  t.ok(info.source === 'waitid' || info.source === 'pidfd-info', `${what}: source ${info.source}`);
  if (info.source !== 'waitid') t.comment(`${what}: Node reaped the child before the wake-up was handled`);
}

const STATUS_LINE = (code: number | null, signal: number) => `code=${code === null ? -1 : code} signal=${signal}`;

t.test('own child — exit codes and signals, and child_process still reports the exit', async (t) => {
  for (const code of [0, 3, 255]) {
    const child = exitOnDemand(t);
    const pid = child.pid as number;
    const p = PidFd.fromChild(child);
    const wait = p.waitExit();
    const nodeSaw = ended(child);
    t.equal(p.exited, false);
    child.stdin?.end(`${code}\n`);
    assertOwnChildExit(t, await guarded(wait, 'waitExit'), { pid, code, signal: null }, `exit ${code}`);
    t.same(await nodeSaw, [code, null], `Node's 'exit' event still says ${code}`);
    p.close();
  }
  for (const signal of ['SIGTERM', 'SIGKILL', 'SIGINT'] as const) {
    const child = sleeperFor(t);
    const pid = child.pid as number;
    const p = PidFd.fromChild(child);
    const wait = p.waitExit();
    const nodeSaw = ended(child);
    t.equal(p.kill(signal), true);
    assertOwnChildExit(t, await guarded(wait, 'waitExit'), { pid, code: null, signal }, signal);
    t.same(await nodeSaw, [null, signal], `Node's 'exit' event still says ${signal}`);
    p.close();
  }
});

t.test('a non-child, reaped by its own parent', async (t) => {
  const cases: Array<[string, (tr: Tree, p: PidFd) => void, number | null, NodeJS.Signals | null, string]> = [
    ['exit 0', (tr) => tr.exit(0), 0, null, STATUS_LINE(0, 0)],
    ['exit 3', (tr) => tr.exit(3), 3, null, STATUS_LINE(3, 0)],
    ['exit 255', (tr) => tr.exit(255), 255, null, STATUS_LINE(255, 0)],
    ['SIGTERM', (_tr, p) => p.kill('SIGTERM'), null, 'SIGTERM', STATUS_LINE(null, 15)],
    ['SIGKILL', (_tr, p) => p.kill('SIGKILL'), null, 'SIGKILL', STATUS_LINE(null, 9)],
  ];
  for (const [name, end, code, signal, line] of cases) {
    const tr = await tree(t, 'reap');
    const p = PidFd.open(tr.pid);
    const wait = p.waitExit();
    t.equal(p.exited, false);
    end(tr, p);
    const info = await guarded(wait, 'waitExit');
    t.same(info, { pid: tr.pid, code, signal, source: 'pidfd-info' }, `${name}: the status the kernel kept`);
    t.match(await tr.reaped(), line, `${name}: the same status the parent got from waitpid`);
    p.close();
  }
});

t.test('a zombie nobody reaps resolves with nulls, and a later wait sees the real status', async (t) => {
  const tr = await tree(t, 'noreap');
  const p = PidFd.open(tr.pid);
  const base = pendingWatches();
  const wait = p.waitExit();
  t.equal(pendingWatches(), base + 1, 'one registration while pending');
  tr.exit(5);
  // The library gives the parent REAP_GRACE_MS to reap; this one never does.
  const info = await guarded(wait, 'waitExit');
  t.same(info, { pid: tr.pid, code: null, signal: null, source: 'none' }, 'the kernel cannot tell: nulls');
  t.equal(procState(tr.pid), 'Z', 'it really is an unreaped zombie');
  t.equal(pendingWatches(), base, 'nothing left registered');
  t.equal(p.exited, true);

  // Waiting on the zombie now (already exited) gives the same answer.
  t.same(await guarded(p.waitExit(), 'second waitExit'), info);
  t.equal(pendingWatches(), base);

  // 'none' is not final: once the parent reaps, the kernel has the status.
  tr.parent.kill('SIGUSR2');
  t.match(await tr.reaped(), STATUS_LINE(5, 0));
  t.same(await guarded(p.waitExit(), 'waitExit after the reap'), {
    pid: tr.pid,
    code: 5,
    signal: null,
    source: 'pidfd-info',
  });
  p.close();
});

t.test('a zombie whose parent reaps it while we wait', async (t) => {
  const tr = await tree(t, 'noreap');
  const p = PidFd.open(tr.pid);
  tr.exit(9);
  untilSync(() => p.exited, 'the grandchild to exit');
  // The wait starts on a zombie; the parent reaps it before the grace runs out (the EPOLLHUP path).
  const wait = p.waitExit();
  tr.parent.kill('SIGUSR2');
  t.same(await guarded(wait, 'waitExit'), { pid: tr.pid, code: 9, signal: null, source: 'pidfd-info' });
  t.match(await tr.reaped(), STATUS_LINE(9, 0));
  p.close();
});

t.test('processes that exited before the wait started', async (t) => {
  // Own child, a zombie not yet reaped by Node (Node reaps only from the event loop, which we block).
  const a = track(spawn('sh', ['-c', 'exit 3'], { stdio: 'ignore' }));
  const pa = PidFd.fromChild(a);
  untilSync(() => pa.exited, 'the child to exit');
  t.equal(procState(a.pid as number), 'Z');
  const infoA = await guarded(pa.waitExit(), 'waitExit');
  t.same(infoA, { pid: a.pid, code: 3, signal: null, source: 'waitid' }, 'unreaped child: read with WNOWAIT');
  t.same(await ended(a), [3, null], 'and Node still reaps it and reports 3');
  pa.close();

  // Own child, already reaped by Node.
  const b = track(spawn('sh', ['-c', 'exit 255'], { stdio: 'ignore' }));
  const pb = PidFd.fromChild(b);
  t.same(await ended(b), [255, null]);
  t.same(
    await guarded(pb.waitExit(), 'waitExit'),
    { pid: b.pid, code: 255, signal: null, source: 'pidfd-info' },
    'reaped child: the status the kernel kept',
  );
  pb.close();

  // Own child killed by a signal, already reaped.
  const c = sleeperFor(t);
  const pc = PidFd.fromChild(c);
  pc.kill('SIGKILL');
  t.same(await ended(c), [null, 'SIGKILL']);
  t.same(await guarded(pc.waitExit(), 'waitExit'), { pid: c.pid, code: null, signal: 'SIGKILL', source: 'pidfd-info' });
  pc.close();

  // A non-child, already reaped by its parent.
  const tr = await tree(t, 'reap');
  const pd = PidFd.open(tr.pid);
  tr.exit(42);
  t.match(await tr.reaped(), STATUS_LINE(42, 0));
  t.same(await guarded(pd.waitExit(), 'waitExit'), { pid: tr.pid, code: 42, signal: null, source: 'pidfd-info' });
  pd.close();
});

t.test('many concurrent waits on one PidFd all resolve with the same info', async (t) => {
  const child = sleeperFor(t);
  const p = PidFd.fromChild(child);
  const base = pendingWatches();
  const ac = new AbortController();
  const waits: Promise<ExitInfo>[] = [];
  for (let i = 0; i < 40; i++) {
    const opts = [
      {},
      { ref: false },
      { timeout: 600_000 },
      { signal: ac.signal },
      { timeout: 600_000, signal: ac.signal, ref: false },
    ];
    waits.push(p.waitExit(opts[i % opts.length]));
  }
  t.equal(pendingWatches(), base + 1, 'all of them share one registration');
  t.equal(getEventListeners(ac.signal, 'abort').length, 16, 'one abort listener per wait that has the signal');
  const nodeSaw = ended(child);
  t.equal(p.kill('SIGTERM'), true);
  const infos = await guarded(Promise.all(waits), 'all waits');
  const expected = infos[0];
  assertOwnChildExit(t, expected, { pid: child.pid as number, code: null, signal: 'SIGTERM' }, 'the first');
  for (const info of infos) t.same(info, expected);
  t.equal(infos.length, 40);
  t.same(await nodeSaw, [null, 'SIGTERM']);
  t.equal(pendingWatches(), base, 'nothing left registered');
  t.equal(getEventListeners(ac.signal, 'abort').length, 0, 'every abort listener removed');
  t.same(await p.waitExit(), expected, 'a later wait gets the same info at once');
  t.same(await p.waitExit({ timeout: 0 }), expected, 'even with a zero timeout: it has exited');
  ac.abort(); // aborting after the fact changes nothing
  p.close();
});

t.test('waitExit with a timeout', async (t) => {
  const child = sleeperFor(t);
  const pid = child.pid as number;
  const p = PidFd.fromChild(child);
  const base = pendingWatches();

  await t.rejects(p.waitExit({ timeout: 30 }), { code: 'ETIMEDOUT', message: /30 ms/ });
  t.equal(pendingWatches(), base, 'the timed-out wait left nothing registered');
  t.ok(alive(pid), 'the process is untouched');
  t.equal(p.exited, false);

  await t.rejects(p.waitExit({ timeout: 0 }), { code: 'ETIMEDOUT' }, 'zero timeout on a live process');
  t.equal(pendingWatches(), base);

  // One wait times out while another stays pending on the same PidFd: the shared registration must survive.
  const longWait = p.waitExit();
  await t.rejects(p.waitExit({ timeout: 20, ref: false }), { code: 'ETIMEDOUT' }, "unref'd timeout fires too");
  t.equal(pendingWatches(), base + 1, 'the other wait is still registered');
  p.kill('SIGTERM');
  assertOwnChildExit(
    t,
    await guarded(longWait, 'the other wait'),
    { pid, code: null, signal: 'SIGTERM' },
    'the other wait',
  );
  t.equal(pendingWatches(), base);

  await t.rejects(p.waitExit({ timeout: -1 }), { code: 'ERR_OUT_OF_RANGE' });
  await t.rejects(p.waitExit({ timeout: '5' as unknown as number }), { code: 'ERR_INVALID_ARG_TYPE' });
  await t.rejects(p.waitExit({ signal: {} as AbortSignal }), { code: 'ERR_INVALID_ARG_TYPE' });
  await t.rejects(p.waitExit({ ref: 1 as unknown as boolean }), { code: 'ERR_INVALID_ARG_TYPE' });
  p.close();
});

t.test('waitExit with an AbortSignal', async (t) => {
  const child = sleeperFor(t);
  const pid = child.pid as number;
  const p = PidFd.fromChild(child);
  const base = pendingWatches();

  const ac1 = new AbortController();
  const w1 = p.waitExit({ signal: ac1.signal });
  t.equal(pendingWatches(), base + 1);
  ac1.abort();
  await t.rejects(w1, { name: 'AbortError', code: 'ABORT_ERR' }, 'default reason: AbortError ABORT_ERR');
  t.equal(pendingWatches(), base, 'nothing left registered');
  t.equal(getEventListeners(ac1.signal, 'abort').length, 0, 'listener removed');

  const ac2 = new AbortController();
  const mine = new Error('mine');
  const w2 = p.waitExit({ signal: ac2.signal, timeout: 600_000 });
  ac2.abort(mine);
  let caught: unknown;
  try {
    await w2;
  } catch (err) {
    caught = err;
  }
  t.equal(caught, mine, 'a custom reason is the rejection itself');
  t.equal(pendingWatches(), base);

  const ac3 = new AbortController();
  ac3.abort();
  await t.rejects(p.waitExit({ signal: ac3.signal }), { name: 'AbortError', code: 'ABORT_ERR' }, 'already aborted');
  t.equal(pendingWatches(), base, 'an already-aborted signal registers nothing');
  const ac4 = new AbortController();
  ac4.abort('just a string');
  let caught4: unknown;
  try {
    await p.waitExit({ signal: ac4.signal });
  } catch (err) {
    caught4 = err;
  }
  t.equal(caught4, 'just a string', 'a non-Error reason, as is');

  await t.rejects(
    p.waitExit({ signal: AbortSignal.timeout(20) }),
    { name: 'TimeoutError' },
    'AbortSignal.timeout rejects with its own TimeoutError',
  );
  t.equal(pendingWatches(), base);

  t.ok(alive(pid), 'aborting never touched the process');
  t.equal(p.exited, false);
  const w5 = p.waitExit({ signal: new AbortController().signal });
  p.kill('SIGKILL');
  assertOwnChildExit(t, await guarded(w5, 'waitExit'), { pid, code: null, signal: 'SIGKILL' }, 'a wait still works');
  t.equal(pendingWatches(), base);
  p.close();
});

t.test('close() while a wait is pending rejects it with ERR_PIDFD_CLOSED', async (t) => {
  const child = sleeperFor(t);
  const pid = child.pid as number;
  const p = PidFd.fromChild(child);
  const base = pendingWatches();
  const ac = new AbortController();
  const w1 = p.waitExit();
  const w2 = p.waitExit({ timeout: 600_000, signal: ac.signal, ref: false });
  t.equal(pendingWatches(), base + 1);
  p.close();
  await t.rejects(w1, { code: 'ERR_PIDFD_CLOSED' });
  await t.rejects(w2, { code: 'ERR_PIDFD_CLOSED' });
  t.equal(pendingWatches(), base, 'nothing left registered');
  t.equal(getEventListeners(ac.signal, 'abort').length, 0);
  await t.rejects(p.waitExit(), { code: 'ERR_PIDFD_CLOSED' }, 'waiting on a closed PidFd');
  t.ok(alive(pid), 'closing the PidFd does not touch the process');
});

// The loop-liveness checks run in child processes: whether a process exits by itself is the thing under test.
const TS_LOADER = process.execArgv.filter((a) => a.includes('@tapjs/typescript'));
const LIB = JSON.stringify(join(__dirname, '..', '..', 'lib', 'index.ts'));
const WATCHER = JSON.stringify(join(__dirname, '..', '..', 'lib', 'watcher.ts'));
const PRELUDE = `
const { PidFd } = require(${LIB});
const { pendingWatches } = require(${WATCHER});
const p = PidFd.open(Number(process.argv[1]));
process.on('exit', () => console.log('exit pending=' + pendingWatches()));
`;

/** Runs a script (given the target pid as argv[1]); `finish` resolves once it exits by itself, or says it had to
 *  be killed after the guard. */
function script(
  t: Test,
  body: string,
  pid: number,
): { out: Lines; finish(guardMs?: number): Promise<[number | null, NodeJS.Signals | null]> } {
  const env = { ...process.env };
  delete env.NODE_OPTIONS; // tap's own instrumentation stays out of it
  const child = track(
    spawn(process.execPath, [...TS_LOADER, '-e', PRELUDE + body, String(pid)], {
      stdio: ['ignore', 'pipe', 'inherit'],
      env,
    }),
  );
  t.teardown(() => {
    child.kill('SIGKILL');
  });
  const out = new Lines(child.stdout as Readable);
  return {
    out,
    finish: async (guardMs = 30_000) => {
      const r = await ended(child, guardMs);
      await new Promise<void>((resolve) =>
        child.stdout?.readableEnded ? resolve() : child.stdout?.once('end', resolve),
      );
      return r;
    },
  };
}

t.test("an unref'd wait does not keep the loop alive", async (t) => {
  const target = sleeperFor(t);
  const s = script(
    t,
    `p.waitExit({ ref: false }).then((i) => console.log('resolved ' + JSON.stringify(i)));
     p.waitExit({ ref: false, timeout: 600000 }).then((i) => console.log('resolved ' + JSON.stringify(i)));
     console.log('armed pending=' + pendingWatches());`,
    target.pid as number,
  );
  t.same(await s.finish(), [0, null], 'the script exited by itself (the guard would have SIGKILLed it)');
  t.same(s.out.all, ['armed pending=1', 'exit pending=1'], 'it exited with the waits still pending, unresolved');
  t.ok(alive(target.pid as number), 'the target is still alive: nothing else ended the script');
});

t.test("a ref'd wait keeps the loop alive until the target dies", async (t) => {
  // The target is not the script's child: the script learns the status once the target's parent reaps it, which
  // wait-tree does at once.
  const tr = await tree(t, 'reap');
  const targetPid = tr.pid;
  const s = script(
    t,
    `p.waitExit().then((i) => console.log('resolved ' + JSON.stringify(i)));
     p.waitExit({ ref: false }).then((i) => console.log('unref resolved ' + i.signal));
     console.log('armed pending=' + pendingWatches());`,
    targetPid,
  );
  await s.out.waitFor((l) => l.startsWith('armed'), 'armed', 30_000);
  // If the ref'd wait did not hold the loop, the script would exit now, without ever printing 'resolved'.
  process.kill(targetPid, 'SIGTERM');
  t.same(await s.finish(), [0, null], 'the script exited by itself once the wait resolved');
  t.same(
    s.out.all,
    [
      'armed pending=1',
      `resolved {"pid":${targetPid},"code":null,"signal":"SIGTERM","source":"pidfd-info"}`,
      'unref resolved SIGTERM',
      'exit pending=0',
    ],
    'it stayed alive until the target died, and saw how it died',
  );
});

t.test("a ref'd wait that times out or is aborted releases the loop", async (t) => {
  const target = sleeperFor(t);
  const s1 = script(
    t,
    `p.waitExit({ timeout: 50 }).catch((e) => console.log('rejected ' + e.code + ' pending=' + pendingWatches()));`,
    target.pid as number,
  );
  const s2 = script(
    t,
    `const ac = new AbortController();
     p.waitExit({ signal: ac.signal }).catch((e) => console.log('rejected ' + e.code + ' pending=' + pendingWatches()));
     setTimeout(() => ac.abort(), 50);`,
    target.pid as number,
  );
  const s3 = script(
    t,
    `p.waitExit().catch((e) => console.log('rejected ' + e.code + ' pending=' + pendingWatches()));
     setTimeout(() => p.close(), 50);`,
    target.pid as number,
  );
  const [r1, r2, r3] = await Promise.all([s1.finish(), s2.finish(), s3.finish()]);
  t.same(r1, [0, null], 'timeout: exited by itself');
  t.same(s1.out.all, ['rejected ETIMEDOUT pending=0', 'exit pending=0']);
  t.same(r2, [0, null], 'abort: exited by itself');
  t.same(s2.out.all, ['rejected ABORT_ERR pending=0', 'exit pending=0']);
  t.same(r3, [0, null], 'close: exited by itself');
  t.same(s3.out.all, ['rejected ERR_PIDFD_CLOSED pending=0', 'exit pending=0']);
  t.ok(alive(target.pid as number));
});
