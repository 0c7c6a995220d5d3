// What the killer must never do, and how it stays responsive: it never signals a process
// outside its candidates, including a stranger that receives the recycled pid of a dead candidate *between the
// decision and the kill*; never itself, never pid 1; it locks its own memory on request; and a PSI-driven killer
// acts on real pressure (a kernel trigger on a cgroup v2 group of our own).
import t from 'tap';
import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { Candidate, KillEvent, LowMemoryKiller, PidFd } from '../../lib/index';
import { ensureDist } from '../helpers/dist';
import { Lines, ended } from '../helpers/lines';
import { fixture, runNode, sleeper, track } from '../helpers/procs';
import {
  cgroup2Root,
  makeV1MemoryGroup,
  makeV2Group,
  memoryV1Root,
  removeAllGroups,
  spinners,
  stopAll,
  Worker,
} from '../helpers/mem-helpers';

const MiB = 2 ** 20;
const LIMIT = 512 * MiB;
const procs: ChildProcess[] = [];
const workers: Worker[] = [];
t.teardown(async () => {
  for (const w of workers) await w.kill();
  await stopAll(procs);
  await removeAllGroups();
});

function record(lmk: LowMemoryKiller): { type: string; e: any }[] {
  const log: { type: string; e: any }[] = [];
  for (const type of ['pressure', 'reclaim', 'trim', 'kill', 'recovered', 'error'] as const) {
    lmk.on(type, (e: unknown) => log.push({ type, e }));
  }
  return log;
}

const pidAlive = (pid: number): boolean => existsSync(`/proc/${pid}`);
const nap = new Int32Array(new SharedArrayBuffer(4));

// In every kill mode: the victim's group, tree or cgroup is read through its pidfd, so a victim that is gone
// names no set at all. The candidates are in sessions of their own (detached), so that a group kill can never
// reach this test's process group.
for (const mode of ['process', 'group', 'tree', 'cgroup'] as const) {
  t.test(
    `a stranger that inherits a candidate's pid between the decision and the kill is never signalled (${mode})`,
    { skip: !memoryV1Root() && 'no cgroup v1 memory controller' },
    async (t) => {
      for (let attempt = 1; ; attempt++) {
        const g = makeV1MemoryGroup(`lmk-swap-${mode}${attempt}`, LIMIT)!;
        const marker = join(tmpdir(), `pidfd-test-marker-${process.pid}-${attempt}`);
        t.teardown(() => rmSync(marker, { force: true }));
        const w = await new Worker([join(g, 'cgroup.procs')], { detached: true }).ready();
        workers.push(w);
        await w.ask('a 32', 'anon');
        const swapper = track(
          spawn(fixture('lmk-swap'), [join(g, 'cgroup.procs'), marker, '48'], {
            stdio: ['pipe', 'pipe', 'inherit'],
            detached: true,
          }),
        );
        procs.push(swapper);
        const victim = Number(
          (await new Lines(swapper.stdout as Readable).waitFor((l) => l.startsWith('victim '), 'victim')).split(' ')[1],
        );
        for (
          let i = 0;
          i < 500 && !readFileSync(join(g, 'cgroup.procs'), 'utf8').split('\n').includes(String(victim));
          i++
        )
          Atomics.wait(nap, 0, 0, 10);
        writeFileSync(`/proc/${victim}/oom_score_adj`, '1000'); // the victim is first in line
        let swapped: string | undefined;
        const lmk = new LowMemoryKiller({
          candidates: { cgroup: g },
          memory: { cgroup: g },
          minAvailable: LIMIT, // always under pressure: every check decides to kill
          reclaim: false,
          killMode: mode,
          rank: (a: Candidate, b: Candidate) => {
            // Runs after the candidates were listed and checked, right before the victim is chosen and killed: swap
            // the victim for a stranger now (killed, reaped, pid reused outside the group), and wait for it here,
            // synchronously, so that nothing of the killer runs in between.
            if (swapped === undefined) {
              swapper.kill('SIGUSR1');
              for (let i = 0; i < 1000 && !existsSync(marker); i++) Atomics.wait(nap, 0, 0, 5);
              swapped = existsSync(marker) ? readFileSync(marker, 'utf8').trim() : 'error timeout';
            }
            return b.oomScoreAdj - a.oomScoreAdj || b.memory.pss - a.memory.pss;
          },
        });
        const log = record(lmk);
        await lmk.check();
        if (swapped?.startsWith('error 17 ') && attempt < 5) {
          // Another process took the freed pid first (EEXIST): try again with a fresh pair.
          await lmk.stop();
          continue;
        }
        t.equal(swapped, `stranger ${victim}`, `the stranger has the dead candidate's pid (${swapped})`);
        t.ok(pidAlive(victim), 'the stranger lives after the decision to kill the old owner of its pid');
        t.notMatch(
          readFileSync(`/proc/${victim}/cgroup`, 'utf8'),
          g.split('/').pop()!,
          "the stranger is outside the candidates' group",
        );
        t.same(
          log.filter((x) => x.type === 'kill'),
          [],
          'no kill reported: the victim had already exited, the signal went nowhere',
        );
        t.ok(w.proc.exitCode === null, 'the other candidate was not killed in its place in the same episode');

        // The next decision lists the group again: the stranger is not in it, the other worker is.
        const listed = (await lmk.candidates()).map((c) => c.pid);
        t.same(listed, [w.pid], 'the stranger is not a candidate');
        await lmk.check();
        const kills = log.filter((x) => x.type === 'kill').map((x) => x.e as KillEvent);
        t.equal(kills.length, 1);
        t.equal(kills[0].pid, w.pid);
        t.same(
          kills[0].killed.map((k) => k.pid),
          [w.pid],
          `${mode}: the worker's set is the worker alone`,
        );
        t.ok(pidAlive(victim), 'the stranger still lives');
        t.equal(readFileSync(`/proc/${victim}/stat`, 'utf8').split(') ')[1][0] !== 'Z', true, 'and is not a zombie');
        await lmk.stop();
        break;
      }
    },
  );
}

t.test("never itself, never pid 1; a caller's PidFds are used, never closed", async (t) => {
  const lmk = new LowMemoryKiller({
    candidates: () => [process.pid, 1],
    minAvailable: Number.MAX_SAFE_INTEGER,
    reclaim: false,
  });
  const log = record(lmk);
  t.same(await lmk.candidates(), [], 'this process and pid 1 are never candidates');
  await lmk.check();
  t.same(
    log.map((x) => x.type),
    ['pressure', 'error'],
    'under pressure with nothing to act on: an error event, no kill',
  );
  t.equal(log[1].e.code, 'ERR_PIDFD_LMK_NO_CANDIDATE');
  await lmk.stop();

  const s1 = sleeper();
  const s2 = sleeper();
  procs.push(s1, s2);
  const p1 = PidFd.fromChild(s1);
  const p2 = PidFd.fromChild(s2);
  t.teardown(() => {
    p1.close();
    p2.close();
  });
  p1.kill('SIGKILL');
  await p1.waitExit();
  const byFd = new LowMemoryKiller({ candidates: () => [p1, p2], minAvailable: 0 });
  t.same(
    (await byFd.candidates()).map((c) => c.pid),
    [s2.pid],
    "a dead candidate's PidFd is skipped",
  );
  await byFd.stop();
  t.equal(p2.closed, false, "the caller's PidFd stays open");
  t.equal(p2.kill(0), true);
});

t.test(
  'never an ancestor of this process, in any kill mode (in a child process, whose parent is a shell)',
  async (t) => {
    t.equal(ensureDist(), undefined, 'dist/ is current');
    const root = join(__dirname, '..', '..');
    // The child's only candidate is its own parent (a shell, in the child's process group and cgroup). Were it
    // killed, the shell would not print its line after the child exits.
    const script = `
    const { LowMemoryKiller } = require(${JSON.stringify(root)});
    (async () => {
      const out = {};
      for (const killMode of ['process', 'group', 'tree', 'cgroup']) {
        const lmk = new LowMemoryKiller({
          candidates: () => [process.ppid], minAvailable: Number.MAX_SAFE_INTEGER, reclaim: false, killMode,
        });
        const kills = [];
        lmk.on('kill', (e) => kills.push(e.killed.map((k) => k.pid)));
        lmk.on('error', () => {});
        await lmk.check();
        await lmk.stop();
        out[killMode] = kills;
      }
      console.log(JSON.stringify(out));
    })();
  `;
    const r = await runNode(['-e', script], ['sh', '-c', '"$@"; echo shell-alive', 'sh']);
    const lines = r.stdout.trim().split('\n');
    t.equal(lines[lines.length - 1], 'shell-alive', `the shell outlived every mode (${r.stderr.trim()})`);
    t.same(JSON.parse(lines[0]), { process: [], group: [], tree: [], cgroup: [] }, 'no kill in any mode');
  },
);

t.test('lockMemory(): the code is locked, and Node lives on (in a child process)', async (t) => {
  t.equal(ensureDist(), undefined, 'dist/ is current');
  const root = join(__dirname, '..', '..');
  // A plain child (no test loaders in NODE_OPTIONS): lock, then make V8 allocate, collect, compile and tear down a
  // worker. mlockall would make V8 abort here (it frees heap pages with madvise(MADV_DONTNEED), which fails on
  // locked memory); lockMemory() locks only the file-backed mappings.
  const env = { ...process.env };
  delete env.NODE_OPTIONS;
  const out = execFileSync(
    process.execPath,
    [
      '--expose-gc',
      '-e',
      `
    const { LowMemoryKiller } = require(${JSON.stringify(root)});
    const fs = require('fs');
    const vmlck = () => Number(/^VmLck:\\s+(\\d+) kB/m.exec(fs.readFileSync('/proc/self/status', 'utf8'))[1]);
    const before = vmlck();
    const locked = new LowMemoryKiller({ candidates: () => [], minAvailable: 0 }).lockMemory();
    // Locked pages of the node binary's own mappings, from smaps
    const exe = fs.readlinkSync('/proc/self/exe');
    let exeLocked = 0;
    for (const block of fs.readFileSync('/proc/self/smaps', 'utf8').split(/\\n(?=[0-9a-f]+-)/)) {
      if (block.split('\\n')[0].endsWith(exe)) exeLocked += Number(/^Locked:\\s+(\\d+) kB/m.exec(block)[1]);
    }
    let keep = [];
    for (let i = 0; i < 200; i++) {
      keep.push(Buffer.alloc(1 << 20, 1));
      if (keep.length > 16) keep = [];
      new RegExp('a' + i + 'b*c').test('abbc');
    }
    global.gc();
    const { Worker } = require('worker_threads');
    new Worker('1 + 1', { eval: true }).on('exit', () => {
      console.log(JSON.stringify({ before, after: vmlck(), locked, exeLocked }));
    });
  `,
    ],
    { encoding: 'utf8', env },
  );
  const { before, after, locked, exeLocked } = JSON.parse(out);
  t.equal(before, 0, 'nothing locked before');
  t.ok(
    locked.ranges > 5 && locked.bytes > 10 * 2 ** 20,
    `${locked.ranges} file mappings, ${(locked.bytes / 2 ** 20).toFixed(0)} MiB`,
  );
  t.ok(after * 1024 >= locked.bytes * 0.9, `VmLck ${after} kB`);
  t.ok(exeLocked > 1024, `${exeLocked} kB of the node binary resident and locked`);
});

t.test(
  'PSI: a kernel trigger on real pressure makes the killer act, once',
  { skip: !cgroup2Root() && 'no cgroup v2' },
  async (t) => {
    // Two spinners on one CPU in a group of our own: one always waits. One of them is a candidate (with a sleeper,
    // the other candidate); when the killer kills it, the test stops the other spinner at once, so the group is
    // quiet from then on whatever else runs on this machine. A second kill (of the sleeper) would be over-killing on
    // PSI windows that began before the first kill.
    const g = makeV2Group('lmk-psi')!;
    const idle = sleeper();
    procs.push(idle);
    writeFileSync(join(g, 'cgroup.procs'), String(idle.pid));
    const spin = await spinners(2, 0, g);
    procs.push(...spin);
    writeFileSync(`/proc/${spin[1].pid}/oom_score_adj`, '700');
    const lmk = new LowMemoryKiller({
      candidates: () =>
        [spin[1], idle].filter((c) => c.exitCode === null && c.signalCode === null).map((c) => c.pid as number),
      psi: { resource: 'cpu', kind: 'some', threshold: 200, window: 2000, cgroup: g },
      reclaim: false,
    });
    t.teardown(() => lmk.stop());
    const log = record(lmk);
    lmk.on('kill', () => spin[0].kill('SIGKILL'));
    lmk.start();
    t.equal(lmk.psiMode, 'trigger', 'a kernel trigger');
    const kill: KillEvent = await new Promise((resolve, reject) => {
      const guard = setTimeout(() => reject(new Error('no kill within 20 s')), 20_000);
      lmk.once('kill', (e) => {
        clearTimeout(guard);
        resolve(e);
      });
    });
    t.equal(kill.pid, spin[1].pid, 'the oom_score_adj 700 spinner');
    t.match(kill.reason, /cpu some stall \d+ ms/);
    t.same(await ended(spin[1]), [null, 'SIGKILL']);
    await new Promise((r) => setTimeout(r, 6000)); // three PSI windows
    t.equal(
      log.filter((x) => x.type === 'kill').length,
      1,
      `one kill: ${JSON.stringify(log.map((x) => [x.type, x.e.pid, x.e.reason]))}`,
    );
    t.equal(idle.exitCode, null, 'the sleeper lives');
    t.same(
      log.filter((x) => x.type === 'error'),
      [],
    );
    await lmk.stop();
    await stopAll(spin);
  },
);
