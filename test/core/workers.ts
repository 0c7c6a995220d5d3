// Worker threads: four workers open and wait at once; terminating a worker with a pending waitExit
// leaves the process healthy (run in a child process).
//
// Workers load the compiled package (test/fixtures/worker-wait.js requires the package root, i.e. dist/).
import t from 'tap';
import { ChildProcess, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { pendingWatches } from '../../lib/watcher';
import { ensureDist } from '../helpers/dist';
import { exited, fixture, sleeper, track } from '../helpers/procs';

const WORKER = join(__dirname, '..', 'fixtures', 'worker-wait.js');
const TERMINATE = join(__dirname, '..', 'fixtures', 'worker-terminate.js');

interface ExitInfo {
  pid: number;
  code: number | null;
  signal: string | null;
  source: string;
}
interface WorkerMessage {
  type: 'waiting' | 'done';
  fds?: number[];
  pending?: number;
  infos?: ExitInfo[];
  pendingAfter?: number;
}

/** Starts the forker fixture with `n` children that pause until killed; resolves with it and their pids. */
async function forked(n: number): Promise<{ forker: ChildProcess; pids: number[]; output: Promise<string[]> }> {
  const forker = track(spawn(fixture('scale-forker'), [String(n)], { stdio: ['ignore', 'pipe', 'inherit'] }));
  const lines: string[] = [];
  const rl = createInterface({ input: forker.stdout! });
  const output = new Promise<string[]>((resolve) => rl.once('close', () => resolve(lines)));
  await new Promise<void>((resolve, reject) => {
    rl.on('line', (line) => {
      lines.push(line);
      if (line === 'ready') resolve();
    });
    forker.once('exit', () => reject(new Error('forker exited early')));
  });
  return { forker, pids: lines.slice(0, n).map(Number), output };
}

t.test("four workers open and wait at once, each gets its own processes' exit status", async (t) => {
  t.equal(ensureDist(), undefined, 'the compiled package (dist/) is up to date with lib/');
  const SIGNALS = ['SIGKILL', 'SIGTERM', 'SIGINT', 'SIGHUP'] as const;
  // Per worker: a child killed by a signal, a child that exits with a code, a non-child (the forker's) killed.
  const { forker, pids: others, output } = await forked(4);
  const targets = SIGNALS.map((sig, i) => ({
    killed: sleeper(),
    coded: track(spawn('sh', ['-c', `read line; exit ${10 + i}`], { stdio: ['pipe', 'ignore', 'ignore'] })),
    other: others[i],
    sig,
    otherSig: SIGNALS[(i + 1) % 4],
  }));

  const workers = targets.map((tg) => {
    const w = new Worker(WORKER, {
      workerData: { mode: 'wait', pids: [tg.killed.pid, tg.coded.pid, tg.other] },
      execArgv: [], // plain Node, without the test runner's loaders
    });
    const messages: WorkerMessage[] = [];
    const waiting = new Promise<WorkerMessage>((resolve, reject) => {
      w.on('message', (m: WorkerMessage) => {
        messages.push(m);
        if (m.type === 'waiting') resolve(m);
      });
      w.once('error', reject);
    });
    const done = new Promise<WorkerMessage>((resolve) =>
      w.on('message', (m: WorkerMessage) => m.type === 'done' && resolve(m)),
    );
    const exit = new Promise<number>((resolve) => w.once('exit', resolve));
    return { w, waiting, done, exit, messages };
  });

  // All four are waiting at the same time before any target dies.
  const waiting = await Promise.all(workers.map((w) => w.waiting));
  for (const [i, m] of waiting.entries()) {
    t.equal(m.pending, 3, `worker ${i}: its own environment has its 3 watches pending`);
  }
  t.equal(pendingWatches(), 0, "the main thread's environment has none of them (per-environment watchers)");
  t.equal(workers.filter((w) => w.messages.some((m) => m.type === 'done')).length, 0, 'no worker is done yet');

  for (const tg of targets) {
    tg.killed.kill(tg.sig);
    tg.coded.stdin!.end(); // `read` sees end of file, the shell exits with its code
    process.kill(tg.other, tg.otherSig);
  }

  const done = await Promise.all(workers.map((w) => w.done));
  for (const [i, m] of done.entries()) {
    const tg = targets[i];
    const infos = m.infos!;
    t.equal(infos.length, 6, `worker ${i}: two waits per target resolved`);
    const childSource = (s: string) => s === 'waitid' || s === 'pidfd-info';
    for (const k of [0, 1]) {
      t.match(infos[k], { pid: tg.killed.pid, code: null, signal: tg.sig }, `worker ${i}: child killed by ${tg.sig}`);
      t.ok(childSource(infos[k].source), `worker ${i}: source ${infos[k].source}`);
      t.match(infos[2 + k], { pid: tg.coded.pid, code: 10 + i, signal: null }, `worker ${i}: child exited ${10 + i}`);
      t.ok(childSource(infos[2 + k].source), `worker ${i}: source ${infos[2 + k].source}`);
      t.same(
        infos[4 + k],
        { pid: tg.other, code: null, signal: tg.otherSig, source: 'pidfd-info' },
        `worker ${i}: non-child killed by ${tg.otherSig}, status from PIDFD_INFO_EXIT`,
      );
    }
    t.equal(m.pendingAfter, 0, `worker ${i}: nothing left pending`);
  }
  const codes = await Promise.all(workers.map((w) => w.exit));
  t.same(codes, [0, 0, 0, 0], 'every worker ended by itself (its waits kept nothing alive), exit code 0');

  // Node's own bookkeeping was not disturbed: child_process reaped each child and saw the same status.
  for (const tg of targets) {
    t.same(await exited(tg.killed), [null, tg.sig]);
    t.same(await exited(tg.coded), [targets.indexOf(tg) + 10, null]);
  }
  t.same(await exited(forker), [0, null], 'the forker reaped its children');
  t.equal((await output).at(-1), 'reaped 4');
});

interface Iteration {
  mode: 'hang' | 'exit';
  workerFds: number[];
  pendingInWorker: number;
  terminateResult: number | null;
  exitCode: number;
  stillPidfd: number;
  pidfds: number;
  total: number;
}
interface FdSummary {
  total: number;
  pidfds: number;
  epolls: number;
}
interface TerminateReport {
  iterations: Iteration[];
  warmupExit: number;
  baseline: FdSummary;
  after: FdSummary;
  extra: string[];
  missing: string[];
  mainKill: boolean;
  mainInfo: ExitInfo;
  targetExit: [number | null, string | null];
  freshExit: number;
  freshDone: WorkerMessage | null;
  t1Exit: [number | null, string | null];
  pids: { target: number; t1: number; self: number };
  end: { total: number; pidfds: number };
}

const ITERATIONS = 40;
// The child runs plain Node: `env -u NODE_OPTIONS` drops the test runner's hooks (which every worker would load too,
// and which the runner re-adds to any env given to spawn).
const RUNS = 2;

for (let run = 1; run <= RUNS; run++) {
  t.test(`run ${run}: ${ITERATIONS} workers terminated with waitExit pending leave the process healthy`, async (t) => {
    t.equal(ensureDist(), undefined, 'the compiled package (dist/) is up to date with lib/');
    const child = track(
      spawn('env', ['-u', 'NODE_OPTIONS', process.execPath, TERMINATE, String(ITERATIONS)], {
        stdio: ['ignore', 'pipe', 'pipe'],
      }),
    );
    let stdout = '';
    let stderr = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const [code, signal] = await new Promise<[number | null, string | null]>((resolve) =>
      child.once('close', (c, s) => resolve([c, s])),
    );
    t.equal(signal, null, 'the child process was not killed by a signal (no abort, no SIGSEGV)');
    t.equal(code, 0, `the child process exited 0${stderr ? `; stderr: ${stderr.slice(0, 2000)}` : ''}`);
    let r: TerminateReport;
    try {
      r = JSON.parse(stdout) as TerminateReport;
    } catch {
      t.fail(`the child printed its report (got ${JSON.stringify(stdout.slice(0, 500))})`);
      return;
    }
    t.equal(r.warmupExit, 0, 'a worker that waits to the end exits 0');
    t.equal(r.iterations.length, ITERATIONS);
    const bad = r.iterations
      .map((it, i) => ({ i, ...it }))
      .filter(
        (it) =>
          it.pendingInWorker !== it.workerFds.length ||
          (it.mode === 'hang' ? it.terminateResult !== 1 || it.exitCode !== 1 : it.exitCode !== 7) ||
          it.stillPidfd !== 0 ||
          it.pidfds !== 0 ||
          it.total !== r.baseline.total,
      );
    t.same(
      bad,
      [],
      'every worker had its waits pending, ended as asked (terminate() → 1, process.exit(7) → 7), ' +
        'and every fd it opened was closed with it',
    );
    t.ok(
      r.iterations.filter((it) => it.mode === 'hang' && it.workerFds.length === 3).length > 0,
      "some terminations raced a target's death",
    );
    t.equal(r.baseline.pidfds, 0);
    t.same(
      r.after,
      r.baseline,
      `fd count after ${ITERATIONS} terminations equals the baseline ` +
        `(${r.baseline.total} fds, ${r.baseline.epolls} epoll sets)`,
    );
    t.same(r.extra, [], 'no fd appeared');
    t.same(r.missing, [], "no fd of the main thread was closed by a worker's teardown");
    t.comment(`fds before: ${r.baseline.total}, after: ${r.after.total}`);

    t.equal(r.mainKill, true, 'the main thread still signals through a PidFd');
    t.same(
      r.mainInfo,
      { pid: r.pids.target, code: null, signal: 'SIGKILL', source: 'waitid' },
      'and still waits for it (own child: status by waitid)',
    );
    t.same(r.targetExit, [null, 'SIGKILL'], 'child_process reports the same exit');
    t.equal(r.freshExit, 0, 'a new worker still works after all that');
    t.same(
      r.freshDone?.infos?.map((i) => [i.pid, i.code, i.signal]),
      [
        [r.pids.t1, null, 'SIGTERM'],
        [r.pids.t1, null, 'SIGTERM'],
      ],
      'and reports the right exit',
    );
    t.same(r.t1Exit, [null, 'SIGTERM']);
    t.equal(r.end.pidfds, 0, 'no pidfd left open at the end');
  });
}
