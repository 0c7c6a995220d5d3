// The toolkit's CLI commands (wait, kill, tree-kill, info), run as child processes the way a user runs them.
import { ChildProcess, spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { Readable } from 'node:stream';
import t from 'tap';
import { PidFd } from '../../lib/pidfd';
import { statUnchecked as readStat } from '../../lib/procfs';
import { CliRun, startCli as start } from '../helpers/cli';
import { ended, Lines } from '../helpers/lines';
import { exited, fixture, sleeper, track } from '../helpers/procs';

const cli = (...args: string[]): Promise<CliRun> => start(...args).done;

async function victim(how: 'ignore' | 'handler' | 'default'): Promise<{ child: ChildProcess; pid: number }> {
  const child = track(spawn(fixture('tree-fixture'), ['victim', how], { stdio: ['ignore', 'pipe', 'inherit'] }));
  const ready = await new Lines(child.stdout as Readable).waitFor((l) => l.startsWith('ready '), 'ready');
  return { child, pid: Number(ready.split(' ')[1]) };
}

/** Resolves once process `holder` holds a pidfd for `pid` (its /proc fdinfo says so): the CLI is then waiting,
 *  and a signal sent now cannot race its pidfd_open. */
async function holding(holder: ChildProcess, pid: number): Promise<void> {
  for (let i = 0; i < 2000; i++) {
    let fds: string[] = [];
    try {
      fds = readdirSync(`/proc/${holder.pid}/fdinfo`);
    } catch {
      /* not started yet */
    }
    for (const fd of fds) {
      try {
        if (new RegExp(`^Pid:\\s+${pid}$`, 'm').test(readFileSync(`/proc/${holder.pid}/fdinfo/${fd}`, 'utf8'))) return;
      } catch {
        /* closed meanwhile */
      }
    }
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`${holder.pid} never opened a pidfd for ${pid}`);
}

/** A pid that names no process now. */
function freePid(): number {
  for (let pid = 4_000_000; ; pid--) if (!existsSync(`/proc/${pid}`)) return pid;
}

t.test('bad arguments: one line and the usage on stderr, status 2, nothing on stdout', async (t) => {
  const cases = [
    ['wait'],
    ['wait', 'abc'],
    ['wait', '0'],
    ['wait', '1', '--timeout', 'soon'],
    ['wait', '1', '--bogus'],
    ['kill'],
    ['kill', '1', '2'],
    ['kill', '1', '-s', 'NOPE'],
    ['kill', '1', '--timeout=-5'],
    ['kill', '1', '--kill-signal', 'x'],
    ['tree-kill'],
    ['tree-kill', 'x'],
    ['tree-kill', '1', '--signal', '99'],
    ['info'],
    ['info', '1', '2'],
    ['info', '-1'],
  ];
  for (const args of cases) {
    const r = await cli(...args);
    t.equal(r.status, 2, args.join(' '));
    t.equal(r.stdout, '', `${args.join(' ')}: nothing on stdout`);
    const lines = r.stderr.trimEnd().split('\n');
    t.equal(lines.length, 2, `${args.join(' ')}: ${r.stderr}`);
    t.match(lines[0], new RegExp(`^pidfd ${args[0]}: `));
    t.match(lines[1], new RegExp(`^Usage: pidfd ${args[0]} `));
  }
});

t.test('a missing process: status 1 and a clear line', async (t) => {
  const pid = freePid();
  for (const cmd of ['wait', 'kill', 'tree-kill', 'info']) {
    const r = await cli(cmd, String(pid));
    t.equal(r.status, 1, cmd);
    t.equal(r.stderr, `pidfd ${cmd}: no such process: ${pid} (ESRCH)\n`);
    const j = await cli(cmd, String(pid), '--json');
    t.equal(j.status, 1);
    t.same(JSON.parse(j.stdout), { error: { message: `no such process: ${pid}`, code: 'ESRCH' } });
  }
});

t.test('--help for every command: usage, options, exit statuses', async (t) => {
  for (const cmd of ['wait', 'kill', 'tree-kill', 'info']) {
    const r = await cli(cmd, '--help');
    t.equal(r.status, 0);
    t.match(r.stdout, new RegExp(`^Usage: pidfd ${cmd} `));
    t.match(r.stdout, /Exit status:/);
    t.match(r.stdout, /Example/);
  }
  const top = await cli('--help');
  for (const cmd of ['wait', 'kill', 'tree-kill', 'info']) t.match(top.stdout, new RegExp(`\\n  ${cmd} +\\S`));
});

t.test('wait: prints each exit as it happens; 0 when all have exited', async (t) => {
  const a = sleeper();
  const b = sleeper();
  const run = start('wait', String(a.pid), String(b.pid));
  await holding(run.child, b.pid as number); // opened in order: it holds both
  t.equal(run.child.exitCode, null, 'still waiting');
  a.kill('SIGTERM');
  const first = await run.out.waitFor((l) => l.startsWith(`${a.pid} `), 'the first exit');
  t.match(first, `${a.pid} killed by SIGTERM (after `, 'printed as it happened');
  t.equal(run.child.exitCode, null, 'still waiting for the second');
  b.kill('SIGKILL');
  const r = await run.done;
  t.equal(r.status, 0);
  t.match(r.out.all[1], `${b.pid} killed by SIGKILL`);
});

t.test('wait --any --json: one JSON line per exit, returns at the first', async (t) => {
  const a = sleeper();
  const b = sleeper();
  const run = start('wait', '--any', '--json', String(a.pid), String(b.pid));
  await holding(run.child, b.pid as number);
  b.kill('SIGKILL');
  const r = await run.done;
  t.equal(r.status, 0);
  const docs = r.out.all.filter((l) => l !== '').map((l) => JSON.parse(l));
  t.equal(docs.length, 1);
  t.match(docs[0], { event: 'exit', pid: b.pid, code: null, signal: 'SIGKILL', source: 'pidfd-info' });
  t.type(docs[0].elapsedMs, 'number');
  t.equal(a.exitCode, null, 'the other is untouched');
  a.kill('SIGKILL');
});

t.test('wait --timeout: status 124 and the processes still running', async (t) => {
  const a = sleeper();
  const r = await cli('wait', '--timeout', '200ms', String(a.pid));
  t.equal(r.status, 124);
  t.equal(r.stdout, `timed out after 200.0 ms: still running: ${a.pid}`);
  const j = await cli('wait', '--timeout', '0.1s', '--json', String(a.pid));
  t.equal(j.status, 124);
  t.match(JSON.parse(j.stdout), { event: 'timeout', running: [a.pid] });
  a.kill('SIGKILL');
});

t.test('wait on a process that is not a child of the CLI, with its exit code', async (t) => {
  const { child, pid } = await victim('handler');
  const run = start('wait', '--json', String(pid));
  await holding(run.child, pid);
  child.kill('SIGTERM'); // its handler exits 7; we (its parent) reap it, so the kernel has the status
  const r = await run.done;
  t.equal(r.status, 0);
  t.match(JSON.parse(r.stdout), { pid, code: 7, signal: null, source: 'pidfd-info' });
});

t.test('kill: a process that honours SIGTERM, human and --json', async (t) => {
  const a = sleeper();
  const r = await cli('kill', String(a.pid));
  t.equal(r.status, 0);
  t.match(r.stdout, new RegExp(`^${a.pid}: SIGTERM → killed by SIGTERM in \\S+ ms$`));
  t.same(await exited(a), [null, 'SIGTERM']);
  const b = sleeper();
  const j = await cli('kill', '--json', '-s', 'INT', String(b.pid));
  t.equal(j.status, 0);
  t.match(JSON.parse(j.stdout), {
    pid: b.pid,
    escalated: false,
    signals: ['SIGINT'],
    exit: { pid: b.pid, signal: 'SIGINT' },
  });
});

t.test('kill: one that ignores SIGTERM is escalated after --timeout', async (t) => {
  const { child, pid } = await victim('ignore');
  const r = await cli('kill', '--timeout', '200', '--json', String(pid));
  t.equal(r.status, 0);
  const doc = JSON.parse(r.stdout);
  t.match(doc, { pid, escalated: true, signals: ['SIGTERM', 'SIGKILL'], exit: { signal: 'SIGKILL' } });
  t.ok(doc.elapsedMs >= 200);
  t.same(await exited(child), [null, 'SIGKILL']);
});

t.test('kill --kill-signal none: status 124, the process still runs', async (t) => {
  const { child, pid } = await victim('ignore');
  const r = await cli('kill', '--timeout', '100', '--kill-signal', 'none', String(pid));
  t.equal(r.status, 124);
  t.match(r.stderr, new RegExp(`^pidfd kill: process ${pid} is still running 100 ms after SIGTERM`));
  t.equal(child.exitCode, null);
  t.equal(readStat(pid)?.state !== undefined && readStat(pid)?.state !== 'Z', true, 'alive');
  child.kill('SIGKILL');
  await exited(child);
});

t.test('tree-kill: every process of a tree, one line each; --json', async (t) => {
  // sh -> (sleep, sh -> sleep): a small tree of real processes.
  const root = track(spawn('sh', ['-c', 'sleep 1000 & sh -c "sleep 1000 & wait" & wait'], { stdio: 'ignore' }));
  const rootFd = PidFd.fromChild(root);
  for (let i = 0; i < 400; i++) {
    const kids = readFileSync(`/proc/${root.pid}/task/${root.pid}/children`, 'utf8').trim().split(' ').filter(Boolean);
    if (
      kids.length === 2 &&
      kids.every(
        (k) =>
          readFileSync(`/proc/${k}/task/${k}/children`, 'utf8').trim() !== '' ||
          readFileSync(`/proc/${k}/comm`, 'utf8').trim() === 'sleep',
      )
    )
      break;
    await new Promise((r) => setTimeout(r, 10));
  }
  const r = await cli('tree-kill', '--json', String(root.pid));
  t.equal(r.status, 0, r.stderr);
  const doc = JSON.parse(r.stdout);
  t.equal(doc.root, root.pid);
  t.equal(doc.processes.length, 4, 'sh, its sleep, the inner sh, its sleep');
  t.equal(doc.processes[0].pid, root.pid);
  // The grandchildren's status is known once whoever reaps them (init, after their parents died) has done so.
  t.ok(
    doc.processes.every(
      (m: { exit: { signal: string | null; source: string } }) =>
        m.exit.signal === 'SIGTERM' || m.exit.source === 'none',
    ),
    'SIGTERM killed each',
  );
  t.same(await exited(root), [null, 'SIGTERM']);
  rootFd.close();

  const h = track(
    spawn(fixture('tree-fixture'), ['harness', '0', '2', '2', 'ignore-one'], { stdio: ['pipe', 'pipe', 'inherit'] }),
  );
  const hl = new Lines(h.stdout as Readable);
  const rootPid = Number((await hl.waitFor((l) => / 0 \d+$/.test(l) && l.startsWith('born '), 'root')).split(' ')[1]);
  await hl.waitFor(() => hl.all.filter((l) => l.startsWith('born ')).length >= 7, '7 born');
  const human = await cli('tree-kill', '--timeout', '300ms', String(rootPid));
  t.equal(human.status, 0, human.stderr);
  const lines = human.stdout.split('\n');
  t.equal(lines.length, 8, '7 processes and a summary');
  t.match(lines[0], new RegExp(`^\\s*${rootPid}  root\\s+killed by SIGTERM$`));
  t.equal(lines.filter((l) => l.endsWith('killed by SIGKILL (escalated)')).length, 1);
  t.match(lines[7], /^7 process\(es\) gone in \S+ m?s; 1 needed SIGKILL$/);
  h.stdin!.end();
  await ended(h);
});

t.test('info: human and --json, identity that adopt accepts', async (t) => {
  const a = sleeper();
  const r = await cli('info', String(a.pid));
  t.equal(r.status, 0);
  t.match(r.stdout, new RegExp(`^pid +${a.pid}\\n`));
  t.match(r.stdout, /\ncommand +sleep 1000\n/);
  t.match(r.stdout, new RegExp(`\\nppid +${process.pid}\\n`));
  t.match(r.stdout, /\nmemory +VmRSS \d+ KiB/);
  const j = await cli('info', '--json', String(a.pid));
  const doc = JSON.parse(j.stdout);
  t.equal(doc.exited, false);
  t.equal(doc.proc.cmdline.join(' '), 'sleep 1000');
  t.equal(doc.kernel.ppid, process.pid);
  const q = PidFd.adopt(doc.identity);
  t.equal(q.pid, a.pid, 'the identity it printed adopts the process');
  t.equal(q.id.toString(), doc.id);
  q.close();
  a.kill('SIGKILL');
});
