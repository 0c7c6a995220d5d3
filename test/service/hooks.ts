// The command hooks (lib/service/hooks.ts): runHook runs a shell command in a process group of its own with stdin
// at end-of-file, captures its output, and SIGKILLs the whole group at the timeout; the pre-kill command runs as
// the killer's preKill before the first signal (the victim alive, its environment the victim's) and is killed
// with its group when the killer stops waiting; the post-kill command gets the documented environment, whose
// values match the kill event; the post-kill runner runs one command at a time and drops what its queue cannot
// hold.
//
// The kills happen in a real budget: a cgroup v1 memory group of the test's own (512 MiB) with mem-worker
// processes (test/fixtures/mem-worker.c) that allocate past minAvailable.
import t from 'tap';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KillEvent, LowMemoryKillerOptions, PidFd } from '../../lib/index';
import {
  HOOK_ENV,
  HookResult,
  OUTPUT_LIMIT,
  PostKillRunner,
  postKillEnv,
  preKillCommand,
  preKillEnv,
  runHook,
} from '../../lib/service/hooks';
import { exited } from '../helpers/procs';
import {
  killEvents,
  memoryV1Root,
  pressuredKiller,
  removeAllGroups,
  victimCgroupOf,
  Worker,
} from '../helpers/mem-helpers';

const MiB = 2 ** 20;
const LIMIT = 512 * MiB;
const MIN_AVAILABLE = 128 * MiB;

const dir = mkdtempSync(join(tmpdir(), 'pidfd-hooks-'));
const workers: Worker[] = [];
t.teardown(async () => {
  for (const w of workers) await w.kill();
  await removeAllGroups();
  rmSync(dir, { recursive: true, force: true });
});

/** `KEY=value` lines of `env` output (values here hold no newline). */
function parseEnv(text: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const line of text.split('\n')) {
    const i = line.indexOf('=');
    if (i > 0) m.set(line.slice(0, i), line.slice(i + 1));
  }
  return m;
}

/** Whether the process with this pid is gone or goes (its pidfd reports it); the guard turns a survivor into a
 *  failed assertion rather than a hung test (SIGKILL to its group was sent before the hook resolved). */
async function gone(pid: number): Promise<boolean> {
  let p: PidFd;
  try {
    p = PidFd.open(pid);
  } catch {
    return true; // ESRCH: gone
  }
  try {
    await p.waitExit({ timeout: 20_000 });
    return true;
  } catch {
    process.kill(pid, 'SIGKILL');
    return false;
  } finally {
    p.close();
  }
}

t.test('runHook: status, output of both streams, stdin at end-of-file, a process group of its own', async (t) => {
  const r = await runHook('echo out; echo err >&2; read x; echo "read=$?"; exit 3', { HOOK_X: 'y' }, 10_000);
  t.equal(r.status, 3);
  t.equal(r.signal, null);
  t.equal(r.timedOut, false);
  t.equal(r.aborted, false);
  t.equal(r.error, undefined);
  t.same(r.output.split('\n').filter(Boolean).sort(), ['err', 'out', 'read=1'], 'both streams; stdin at EOF');
  t.ok(r.ms > 0);
  const g = await runHook('echo "$$ $(cut -d" " -f5 /proc/$$/stat) $HOOK_X"', { HOOK_X: 'y' }, 10_000);
  const [pid, pgid, x] = g.output.trim().split(' ');
  t.equal(pgid, pid, 'the shell leads its own process group');
  t.not(Number(pgid), Number(readFileSync('/proc/self/stat', 'utf8').split(') ')[1].split(' ')[2]), 'not ours');
  t.equal(x, 'y', 'the given environment is added');
  const big = await runHook(`head -c ${OUTPUT_LIMIT * 2} /dev/zero | tr '\\0' a`, {}, 10_000);
  t.equal(big.output.length, OUTPUT_LIMIT, 'output kept up to OUTPUT_LIMIT');
  t.equal(big.truncated, true);
});

t.test('runHook: SIGKILL to the whole process group at the timeout', async (t) => {
  const pidFile = join(dir, 'bg.pid');
  const TIMEOUT = 300;
  const r = await runHook(`sleep 1000 & echo $! > ${pidFile}; wait`, {}, TIMEOUT);
  t.equal(r.timedOut, true);
  t.equal(r.signal, 'SIGKILL');
  t.equal(r.status, null);
  t.ok(r.ms >= TIMEOUT, `ended after ${r.ms.toFixed(0)} ms (>= ${TIMEOUT})`);
  const bg = Number(readFileSync(pidFile, 'utf8'));
  t.ok(await gone(bg), `the background sleep (${bg}) of its group died too`);
});

t.test('runHook: the group is killed at the timeout even after the shell itself has exited', async (t) => {
  // The shell ends at once; its background sleep keeps the output open, so the hook runs on until the timeout.
  // The shell is reaped by then: the group is reached through the shell's pidfd (6.9+), or by its number.
  const pidFile = join(dir, 'orphan.pid');
  const r = await runHook(`sleep 1000 & echo $! > ${pidFile}`, {}, 300);
  t.equal(r.timedOut, true, 'ended by its timeout');
  t.equal(r.status, 0, 'the shell itself had exited with 0');
  const bg = Number(readFileSync(pidFile, 'utf8'));
  t.ok(await gone(bg), `the orphaned sleep (${bg}) of its group died`);
});

t.test('runHook: a detached background process does not hold it; an abort kills it', async (t) => {
  const r = await runHook('sleep 1000 >/dev/null 2>&1 & echo $!', {}, 60_000);
  t.equal(r.status, 0, 'done when the shell exited and its output closed');
  const bg = Number(r.output.trim());
  t.ok(existsSync(`/proc/${bg}`), 'the redirected background process outlives the hook');
  process.kill(bg, 'SIGKILL');
  const ac = new AbortController();
  const p = runHook('echo started; sleep 1000', {}, Infinity, ac.signal);
  ac.abort();
  const a = await p;
  t.equal(a.aborted, true);
  t.equal(a.timedOut, false);
  t.equal(a.signal, 'SIGKILL');
});

t.test('runHook: bad arguments', async (t) => {
  t.throws(() => runHook('', {}, 1000), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' });
  t.throws(() => runHook('true', null as never, 1000), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' });
  t.throws(() => runHook('true', {}, 0), { name: 'RangeError', code: 'ERR_OUT_OF_RANGE', message: /timeoutMs/ });
  t.throws(() => runHook('true', {}, '1s' as never), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' });
  t.throws(() => new PostKillRunner('true', -1), { name: 'RangeError', code: 'ERR_OUT_OF_RANGE' });
  t.throws(() => new PostKillRunner('true', 1000, { limit: 1.5 }), { name: 'RangeError', code: 'ERR_OUT_OF_RANGE' });
  t.throws(() => preKillCommand(undefined as never), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' });
});

/** A worker in a fresh group holding enough to put the killer (returned, over that group) under pressure. */
const pressured = (tag: string, options: Partial<LowMemoryKillerOptions>) =>
  pressuredKiller(workers, tag, { limit: LIMIT, mib: 400, minAvailable: MIN_AVAILABLE, options });

if (!memoryV1Root()) {
  t.skip('no cgroup v1 memory controller: the kill tests need a memory group of their own', () => {});
} else {
  t.test('pre-kill command: runs before the kill, with the victim alive and its environment', async (t) => {
    const out = join(dir, 'pre.env');
    const results: HookResult[] = [];
    const { w, lmk, log } = await pressured('svc-pre', {
      preKill: preKillCommand(`{ env; grep '^State:' /proc/$PIDFD_LMK_PID/status; } > ${out}`, (r) => results.push(r)),
      preKillTimeout: 10_000,
    });
    t.teardown(() => lmk.stop());
    const died = exited(w.proc);
    await lmk.check();
    const k = killEvents(log)[0];
    t.equal(k?.pid, w.pid);
    t.equal(k.preKillResult, 'ok');
    t.same(await died, [null, 'SIGKILL']);
    const text = readFileSync(out, 'utf8');
    t.match(text, /^State:\s+[RS] /m, 'the victim was alive while the command ran');
    const env = parseEnv(text);
    t.equal(env.get('PIDFD_LMK_HOOK'), 'pre-kill');
    t.equal(env.get('PIDFD_LMK_PID'), String(w.pid));
    t.equal(env.get('PIDFD_LMK_NAME'), 'mem-worker');
    t.equal(env.get('PIDFD_LMK_CMDLINE'), k.cmdline.join(' '));
    t.equal(env.get('PIDFD_LMK_CGROUP'), k.victimCgroup);
    t.equal(env.get('PIDFD_LMK_REASON'), k.reason);
    t.equal(env.get('PIDFD_LMK_TRIGGERED'), 'memory');
    t.equal(env.get('PIDFD_LMK_KILL_MODE'), 'process');
    t.equal(env.get('PIDFD_LMK_RSS'), String(Math.round(k.rss)));
    t.equal(env.get('PIDFD_LMK_KILLED'), undefined, 'no post-kill variable before the kill');
    const pre = Object.entries(HOOK_ENV)
      .filter(([, v]) => (v.hooks as readonly string[]).includes('pre-kill'))
      .map(([n]) => n);
    for (const name of pre) t.ok(env.has(name), `${name} is set`);
    t.equal(results.length, 1);
    t.equal(results[0].status, 0);
  });

  t.test('a hanging pre-kill command: killed with its group at the timeout, then the kill', async (t) => {
    const pidFile = join(dir, 'pre-hang.pid');
    const TIMEOUT = 300;
    const results: HookResult[] = [];
    const { w, lmk, log } = await pressured('svc-pre-hang', {
      preKill: preKillCommand(`sleep 1000 & echo $! > ${pidFile}; wait`, (r) => results.push(r)),
      preKillTimeout: TIMEOUT,
    });
    t.teardown(() => lmk.stop());
    const died = exited(w.proc);
    await lmk.check();
    const k = killEvents(log)[0];
    t.equal(k?.pid, w.pid, 'killed anyway');
    t.same(await died, [null, 'SIGKILL']);
    t.equal(k.preKillResult, 'timeout');
    t.ok(k.preKillMs! >= TIMEOUT, `the kill waited ${k.preKillMs!.toFixed(0)} ms (>= ${TIMEOUT})`);
    t.ok(await gone(Number(readFileSync(pidFile, 'utf8'))), "the hook's background sleep died with its group");
    await lmk.stop();
    t.equal(results[0]?.aborted, true, 'the command was ended by the killer');
    t.same(
      log.filter((x) => x.type === 'error'),
      [],
    );
  });

  t.test('a failing pre-kill command: reported through error, the kill goes on', async (t) => {
    const { w, lmk, log } = await pressured('svc-pre-fail', {
      preKill: preKillCommand('echo no space left >&2; exit 7'),
    });
    t.teardown(() => lmk.stop());
    const died = exited(w.proc);
    await lmk.check();
    t.same(
      log.map((x) => x.type),
      ['pressure', 'error', 'kill'],
    );
    t.match(log[1].e.message, /pre-kill command "echo no space left >&2; exit 7" exited with status 7: no space left/);
    t.equal(killEvents(log)[0].preKillResult, 'failed');
    t.same(await died, [null, 'SIGKILL']);
  });

  t.test('post-kill command: the documented environment, matching the kill event', async (t) => {
    const out = join(dir, 'post.env');
    const done: [HookResult, KillEvent][] = [];
    const post = new PostKillRunner(`env > ${out}`, 10_000, { onDone: (r, e) => done.push([r, e]) });
    const { w, lmk, log } = await pressured('svc-post', {});
    t.teardown(() => lmk.stop());
    const cgroup = victimCgroupOf(w.pid);
    const order: string[] = [];
    lmk.on('kill', (e) => {
      order.push(`push ${post.push(e)}`);
      order.push(`after push: ${done.length} done`);
    });
    await lmk.check();
    order.push(`check done: ${done.length} done`);
    await post.idle();
    t.same(order, ['push true', 'after push: 0 done', 'check done: 0 done'], 'the command never held up the killer');
    const k = killEvents(log)[0];
    t.equal(k.pid, w.pid);
    t.equal(done.length, 1);
    t.equal(done[0][0].status, 0);
    const env = parseEnv(readFileSync(out, 'utf8'));
    const want: Record<string, string> = {
      PIDFD_LMK_HOOK: 'post-kill',
      PIDFD_LMK_EPISODE: String(k.episode),
      PIDFD_LMK_PID: String(k.pid),
      PIDFD_LMK_NAME: k.comm,
      PIDFD_LMK_CMDLINE: k.cmdline.join(' '),
      PIDFD_LMK_CGROUP: k.victimCgroup ?? '',
      PIDFD_LMK_PSS: String(Math.round(k.pss)),
      PIDFD_LMK_RSS: String(Math.round(k.rss)),
      PIDFD_LMK_OOM_SCORE_ADJ: String(k.oomScoreAdj),
      PIDFD_LMK_REASON: k.reason,
      PIDFD_LMK_TRIGGERED: k.triggered.join(' '),
      PIDFD_LMK_KILL_MODE: k.killMode,
      PIDFD_LMK_KILLED: k.killed.map((x) => x.pid).join(' '),
      PIDFD_LMK_HELD: String(Math.round(k.held)),
      PIDFD_LMK_BYTES_FREED: String(Math.round(k.bytesFreed)),
      PIDFD_LMK_REGAINED: k.regained ? '1' : '0',
      PIDFD_LMK_DECISION_MS: String(Math.round(k.decisionMs)),
      PIDFD_LMK_DEATH_MS: String(Math.round(k.deathMs)),
      PIDFD_LMK_MEMORY_MS: String(Math.round(k.memoryMs)),
      PIDFD_LMK_ESCALATED: '',
      PIDFD_LMK_CGROUP_KILLED: '',
      PIDFD_LMK_PRE_KILL: '',
      PIDFD_LMK_PRE_KILL_MS: '',
    };
    t.same(Object.keys(want).sort(), Object.keys(HOOK_ENV).sort(), 'every documented variable is checked here');
    for (const [name, value] of Object.entries(want)) t.equal(env.get(name), value, name);
    t.equal(env.get('PIDFD_LMK_CGROUP'), cgroup, 'its cgroup path');
    t.ok(Number(env.get('PIDFD_LMK_BYTES_FREED')) > 0, `${env.get('PIDFD_LMK_BYTES_FREED')} bytes freed`);
    t.same(postKillEnv(k), Object.fromEntries(Object.entries(want)), 'postKillEnv builds exactly these');
  });
}

t.test('PostKillRunner: one command at a time, in order, a bounded queue, no dry runs', async (t) => {
  const out = join(dir, 'serial.log');
  const event = (pid: number, dryRun = false): KillEvent =>
    ({
      episode: 1,
      pid,
      comm: 'x',
      reason: 'r',
      triggered: ['memory'],
      oomScoreAdj: 0,
      pss: 0,
      rss: 0,
      cmdline: [],
      victimCgroup: undefined,
      bytesFreed: 0,
      deathMs: 0,
      decisionMs: 0,
      preKillResult: undefined,
      preKillMs: undefined,
      memoryMs: 0,
      regained: true,
      released: undefined,
      killMode: 'process',
      modeReason: undefined,
      cgroup: undefined,
      cgroupKill: false,
      killed: [{ pid, comm: 'x', rss: 0, released: undefined }],
      held: 0,
      escalated: false,
      escalatedMs: undefined,
      dryRun,
    }) satisfies KillEvent;
  const dropped: number[] = [];
  // Each run appends its start and its end; a second run overlapping the first would interleave them.
  const post = new PostKillRunner(
    `echo start $PIDFD_LMK_PID >> ${out}; sleep 0.1; echo end $PIDFD_LMK_PID >> ${out}`,
    10_000,
    { limit: 2, onDrop: (e) => dropped.push(e.pid) },
  );
  t.equal(post.push(event(100, true)), false, 'a dry run is not hooked');
  t.same(
    [101, 102, 103, 104].map((pid) => post.push(event(pid))),
    [true, true, true, false],
  );
  t.equal(post.waiting, 2);
  t.equal(post.dropped, 1);
  t.same(dropped, [104]);
  await post.idle();
  t.same(readFileSync(out, 'utf8').trim().split('\n'), [
    'start 101',
    'end 101',
    'start 102',
    'end 102',
    'start 103',
    'end 103',
  ]);
  t.same(
    preKillEnv({
      episode: 2,
      pid: 5,
      comm: 'c',
      cmdline: ['a', 'b'],
      cgroup: undefined,
      oomScoreAdj: 3,
      memory: { pss: 1.4, rss: 2.6 } as never,
      reason: 'why',
      triggered: ['critical', 'memory'],
      killMode: 'tree',
    }),
    {
      PIDFD_LMK_HOOK: 'pre-kill',
      PIDFD_LMK_EPISODE: '2',
      PIDFD_LMK_PID: '5',
      PIDFD_LMK_NAME: 'c',
      PIDFD_LMK_CMDLINE: 'a b',
      PIDFD_LMK_CGROUP: '',
      PIDFD_LMK_PSS: '1',
      PIDFD_LMK_RSS: '3',
      PIDFD_LMK_OOM_SCORE_ADJ: '3',
      PIDFD_LMK_REASON: 'why',
      PIDFD_LMK_TRIGGERED: 'critical memory',
      PIDFD_LMK_KILL_MODE: 'tree',
    },
  );
});
