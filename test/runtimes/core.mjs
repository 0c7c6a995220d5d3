// The core of the suite as one self-contained script that any runtime able to load Node-API addons can run
// (Node, Bun, Deno): tap itself does not run under Bun or Deno. It tests the compiled package (dist/) against
// real processes and prints TAP: one `ok N - ...` line per assertion and a `# { total, pass, fail }` summary.
//
//   node test/runtimes/core.mjs            (PIDFD_WATCHER=thread: the helper-thread path on Node)
//   bun test/runtimes/core.mjs
//   deno run --allow-all test/runtimes/core.mjs
//
// Run as `core.mjs --worker-teardown` it is the child of the worker test: it terminates workers mid-wait and
// prints one JSON line. An abort there ends only that child, so it fails one assertion instead of the run.
import { spawn, spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const here = dirname(fileURLToPath(import.meta.url));
const pkg = require(join(here, '..', '..', 'dist', 'index.js'));
const { PidFd, ExitWatcher, terminate, killTree, watchPressure, readPressure } = pkg;
const v = process.versions;
const runtime = v.bun ? `bun ${v.bun}` : v.deno ? `deno ${v.deno}` : `node ${process.version}`;
const self = fileURLToPath(import.meta.url);
// How to run this script again in a child process under the same runtime.
const selfCmd = v.deno ? ['run', '--allow-all', self] : [self];

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Rejects after ms with a message: a hang fails one assertion instead of stalling the run. */
function within(ms, promise, what) {
  let timer;
  const guard = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: nothing within ${ms} ms`)), ms);
  });
  return Promise.race([promise, guard]).finally(() => clearTimeout(timer));
}

function started(child) {
  return new Promise((resolve, reject) => {
    child.once('spawn', resolve);
    child.once('error', reject);
  });
}

function exited(child) {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

/** A shell that starts `n` sleepers (its children, not ours), prints their pids, and reaps them. */
async function nonChildren(n, secs = 60) {
  const sh = spawn('sh', ['-c', `i=0; while [ $i -lt ${n} ]; do sleep ${secs} & echo $!; i=$((i+1)); done; wait`], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const pids = [];
  let buf = '';
  await new Promise((resolve, reject) => {
    sh.stdout.on('data', (d) => {
      buf += d;
      const lines = buf.split('\n');
      buf = lines.pop();
      for (const l of lines) if (l) pids.push(Number(l));
      if (pids.length >= n) resolve();
    });
    sh.once('exit', () => reject(new Error('the shell ended early')));
  });
  return { sh, pids };
}

// ---- a minimal TAP harness ------------------------------------------------------------------------------------
const tests = [];
const test = (name, fn, skip) => tests.push({ name, fn, skip });
let n = 0;
let pass = 0;
let fail = 0;
let skipped = 0;

function point(ok, name, diag) {
  n++;
  if (ok) pass++;
  else fail++;
  console.log(`${ok ? 'ok' : 'not ok'} ${n} - ${name.replace(/#/g, '')}`);
  if (!ok && diag !== undefined) {
    console.log('  ---');
    for (const line of String(diag).split('\n')) console.log(`  ${line}`);
    console.log('  ...');
  }
}

function assertions(prefix) {
  const show = (x) => JSON.stringify(x, (_, val) => (typeof val === 'bigint' ? `${val}n` : val));
  const t = {
    ok: (c, msg) => point(!!c, `${prefix} > ${msg}`, c ? undefined : `got: ${show(c)}`),
    equal: (a, b, msg) => point(a === b, `${prefix} > ${msg}`, `expected: ${show(b)}\nactual:   ${show(a)}`),
    /** Every key of `want` equals (or, for an array, is one of) the value in `got`. */
    match: (got, want, msg) => {
      const same = ([k, w]) => (Array.isArray(w) ? w.includes(got[k]) : got[k] === w);
      const ok = got != null && Object.entries(want).every(same);
      point(ok, `${prefix} > ${msg}`, `expected: ${show(want)}\nactual:   ${show(got)}`);
    },
    rejects: async (promise, code, msg) => {
      try {
        await promise;
        point(false, `${prefix} > ${msg}`, 'it resolved');
      } catch (err) {
        point(err?.code === code || err?.name === code, `${prefix} > ${msg}`, `error: ${err?.code} ${err?.message}`);
      }
    },
    throws: (fn, code, msg) => {
      try {
        fn();
        point(false, `${prefix} > ${msg}`, 'it did not throw');
      } catch (err) {
        point(err?.code === code, `${prefix} > ${msg}`, `error: ${err?.code} ${err?.message}`);
      }
    },
  };
  return t;
}

// ---- the tests ------------------------------------------------------------------------------------------------
const SOURCES = ['waitid', 'pidfd-info'];

test('open and kill', async (t) => {
  const child = spawn('sleep', ['30'], { stdio: 'ignore' });
  await started(child);
  const p = PidFd.open(child.pid);
  t.equal(p.pid, child.pid, 'the PidFd names the pid');
  t.ok(p.fd >= 0, 'it has an fd');
  t.equal(p.exited, false, 'a running process has not exited');
  t.equal(p.kill('SIGTERM'), true, 'kill sends the signal');
  const info = await within(10_000, p.waitExit(), 'waitExit');
  t.match(info, { pid: child.pid, code: null, signal: 'SIGTERM', source: SOURCES }, 'its exit: SIGTERM');
  t.equal(p.kill('SIGTERM'), false, 'kill after the exit returns false');
  p.close();
  t.equal(p.closed, true, 'close() closes it');
  t.throws(() => PidFd.open(2 ** 22 - 1), 'ESRCH', 'opening a pid nobody has: ESRCH');
  await exited(child);
});

test('waitExit of children: exit codes and signals', async (t) => {
  for (const [args, want] of [
    [['-c', 'exit 0'], { code: 0, signal: null }],
    [['-c', 'exit 7'], { code: 7, signal: null }],
    [['-c', 'kill -KILL $$'], { code: null, signal: 'SIGKILL' }],
  ]) {
    const child = spawn('sh', args, { stdio: 'ignore' });
    const p = PidFd.fromChild(child);
    const info = await within(10_000, p.waitExit(), 'waitExit');
    t.match(info, { ...want, pid: child.pid, source: SOURCES }, `sh ${args[1]}: ${JSON.stringify(want)}`);
    const again = await p.waitExit();
    t.equal(again, info, 'a second waitExit resolves with the same status');
    p.close();
    await exited(child);
  }
});

test('waitExit of non-children', async (t) => {
  const { sh, pids } = await nonChildren(2, 30);
  const [a, b] = pids.map((pid) => PidFd.open(pid));
  const wa = a.waitExit();
  const wb = b.waitExit();
  a.kill('SIGKILL');
  b.kill('SIGTERM');
  const [ia, ib] = await within(10_000, Promise.all([wa, wb]), 'waitExit');
  t.match(ia, { pid: pids[0], signal: 'SIGKILL', code: null, source: 'pidfd-info' }, 'SIGKILL, from PIDFD_INFO_EXIT');
  t.match(ib, { pid: pids[1], signal: 'SIGTERM', code: null, source: 'pidfd-info' }, 'SIGTERM, from PIDFD_INFO_EXIT');
  a.close();
  b.close();
  await exited(sh);
});

test('timeouts, aborts and close while waiting', async (t) => {
  const child = spawn('sleep', ['30'], { stdio: 'ignore' });
  const p = PidFd.fromChild(child);
  await t.rejects(p.waitExit({ timeout: 30 }), 'ETIMEDOUT', 'a timeout rejects with ETIMEDOUT');
  const ac = new AbortController();
  const aborted = p.waitExit({ signal: ac.signal });
  setTimeout(() => ac.abort(), 20);
  await t.rejects(aborted, 'AbortError', 'an abort rejects with the AbortError');
  await t.rejects(p.waitExit({ signal: AbortSignal.abort() }), 'AbortError', 'an aborted signal rejects at once');
  const pending = p.waitExit();
  p.close();
  await t.rejects(pending, 'ERR_PIDFD_CLOSED', 'close() rejects a pending wait');
  const q = PidFd.fromChild(child);
  q.kill('SIGKILL');
  t.match(await within(10_000, q.waitExit(), 'waitExit'), { signal: 'SIGKILL' }, 'after all that, the exit arrives');
  q.close();
  await exited(child);
});

test('terminate and killTree', async (t) => {
  const stubborn = spawn('sh', ['-c', 'trap "" TERM; while :; do sleep 0.05; done'], { stdio: 'ignore' });
  await started(stubborn);
  await sleep(100); // the trap is set
  const r = await within(20_000, terminate(stubborn, { timeout: 200, killTimeout: 5000 }), 'terminate');
  t.equal(r.escalated, true, 'terminate escalates to SIGKILL when SIGTERM is ignored');
  t.match(r.exit, { signal: 'SIGKILL' }, 'and the exit says SIGKILL');
  await exited(stubborn);
  const tree = spawn('sh', ['-c', 'sleep 60 & sleep 60 & sh -c "sleep 60 & wait" & wait'], { stdio: 'ignore' });
  await started(tree);
  await sleep(200);
  const k = await within(20_000, killTree(tree, { timeout: 2000 }), 'killTree');
  t.ok(k.processes.length >= 5, `killTree saw the whole tree (${k.processes.length} processes)`);
  t.ok(
    k.processes.every((m) => m.exit.signal !== null || m.exit.code !== null || m.exit.source === 'none'),
    'and every member has exited',
  );
  await exited(tree);
});

test('ExitWatcher with 1,000 processes', async (t) => {
  const N = 1000;
  const { sh, pids } = await nonChildren(N, 120);
  const w = new ExitWatcher();
  for (const pid of pids) w.add(pid);
  t.equal(w.size, N, `${N} processes watched`);
  const seen = new Map();
  const all = new Promise((resolve) => {
    w.on('exit', (info) => {
      seen.set(info.pid, (seen.get(info.pid) ?? 0) + 1);
      if (seen.size === N) resolve();
    });
  });
  for (const pid of [...pids].sort(() => Math.random() - 0.5)) process.kill(pid, 'SIGKILL');
  await within(60_000, all, 'exit events').catch((err) => t.ok(false, err.message));
  t.equal(seen.size, N, 'each exit is emitted');
  t.ok(
    [...seen.values()].every((c) => c === 1),
    'exactly once',
  );
  t.equal(w.size, 0, 'and the watcher is empty');
  w.close();
  await exited(sh);
});

test('release, madvise and info', async (t) => {
  const child = spawn('sleep', ['30'], { stdio: 'ignore' });
  await started(child);
  const p = PidFd.fromChild(child);
  const info = p.info();
  t.match(info, { pid: child.pid, ppid: process.pid }, 'info(): pid and parent');
  const file = p
    .maps()
    .filter((m) => m.kind === 'file')
    .map((m) => ({ address: m.start, length: m.end - m.start }));
  t.ok(file.length > 0, 'maps() lists the file mappings');
  const advised = p.madvise('cold', file);
  t.ok(typeof advised === 'number' && advised >= 0, `madvise('cold') advised ${advised} bytes`);
  t.throws(() => p.release(), 'EINVAL', 'release() of a process that is not dying: EINVAL');
  p.kill('SIGKILL');
  const released = p.release();
  t.equal(typeof released, 'boolean', `release() after SIGKILL returns ${released}`);
  t.match(await within(10_000, p.waitExit(), 'waitExit'), { signal: 'SIGKILL' }, 'and it exits');
  await sleep(50); // Node reaps its child: PIDFD_INFO_EXIT is there from then on
  t.match(p.info().exit ?? {}, { signal: 'SIGKILL' }, 'info() of the reaped process has its exit');
  p.close();
  await exited(child);
});

test(
  'PSI: a trigger reports real CPU contention',
  async (t) => {
    const before = readPressure('cpu');
    t.ok(before.some.total >= 0, 'readPressure reads /proc/pressure/cpu');
    const w = watchPressure({ resource: 'cpu', threshold: 50, window: 2000 });
    t.equal(w.mode, 'trigger', 'the kernel accepted the trigger');
    const spinners = [0, 1, 2].map(() => spawn('sh', ['-c', 'while :; do :; done'], { stdio: 'ignore' }));
    try {
      const e = await within(30_000, new Promise((resolve) => w.once('pressure', resolve)), 'pressure event');
      t.ok(e.stall >= 50, `an event with stall ${e.stall} ms over the threshold`);
      t.equal(e.mode, 'trigger', 'from the trigger');
    } catch (err) {
      t.ok(false, err.message);
    } finally {
      w.close();
      for (const s of spinners) s.kill('SIGKILL');
      await Promise.all(spinners.map(exited));
    }
    t.equal(w.closed, true, 'close() stops it');
  },
  existsPressure() ? undefined : 'no /proc/pressure/cpu',
);

function existsPressure() {
  try {
    readPressure('cpu');
    return true;
  } catch {
    return false;
  }
}

test("ref: a ref'd wait keeps the runtime alive until the exit, an unref'd one does not", async (t) => {
  const run = (mode) => {
    const t0 = Date.now();
    const r = spawnSync(process.execPath, [...selfCmd, '--ref-check', mode], { encoding: 'utf8', timeout: 30_000 });
    return { ...r, ms: Date.now() - t0, out: (r.stdout ?? '').trim() };
  };
  const held = run('ref');
  t.equal(held.status, 0, `ref'd: exits 0 (signal ${held.signal}) ${(held.stderr ?? '').slice(-300)}`);
  t.equal(held.out, 'settled SIGKILL', "ref'd: the runtime stayed until the wait settled");
  const free = run('unref');
  t.equal(free.status, 0, `unref'd: exits 0 on its own (signal ${free.signal}) ${(free.stderr ?? '').slice(-300)}`);
  t.equal(free.out, 'main done', "unref'd: nothing settled, nothing kept the runtime alive");
});

test('PIDFD_WATCHER=uv: libuv where the runtime has it, else ERR_PIDFD_UNSUPPORTED naming the runtime', (t) => {
  const env = { ...process.env, PIDFD_WATCHER: 'uv' };
  const r = spawnSync(process.execPath, [...selfCmd, '--uv-check'], { encoding: 'utf8', timeout: 30_000, env });
  t.equal(r.status, 0, `exits 0, no abort (signal ${r.signal}) ${(r.stderr ?? '').slice(-300)}`);
  const out = (r.stdout ?? '').trim();
  if (v.bun || v.deno) {
    const name = v.bun ? `Bun ${v.bun}` : `Deno ${v.deno}`;
    t.ok(out.startsWith('ERR_PIDFD_UNSUPPORTED') && out.includes(name), `waitExit rejects, naming ${name}: ${out}`);
  } else {
    t.equal(out, 'settled SIGKILL', 'Node: the libuv poll serves the wait');
  }
});

async function uvCheck() {
  const target = spawn('sleep', ['30'], { stdio: 'ignore' });
  await started(target);
  const p = PidFd.open(target.pid);
  try {
    const w = p.waitExit();
    target.kill('SIGKILL');
    console.log(`settled ${(await w).signal}`);
  } catch (err) {
    target.kill('SIGKILL');
    console.log(`${err.code}: ${err.message}`);
  }
  p.close();
}

/** The child of the ref test: waits on a sleeper that is killed 300 ms later, ref'd or not. */
async function refCheck(mode) {
  const target = spawn('sleep', ['30'], { stdio: 'ignore', detached: true });
  target.unref();
  await started(target);
  const p = PidFd.open(target.pid);
  const ref = mode === 'ref';
  p.waitExit({ ref }).then((info) => console.log(`settled ${info.signal}`));
  if (!ref) {
    const w = watchPressure({ resource: 'cpu', threshold: 50, window: 2000, ref: false });
    void w;
  }
  // The kill comes from a detached killer, so no timer of ours keeps the runtime alive.
  spawn('sh', ['-c', `sleep 0.3; kill -KILL ${target.pid}`], { stdio: 'ignore', detached: true }).unref();
  if (!ref) console.log('main done');
}

test('a threshold sampler: a crossing in a file fires once, update re-arms, close stops', async (t) => {
  const { ThresholdSampler } = require(join(here, '..', '..', 'dist', 'sampler.js'));
  const { closeSync, mkdtempSync, openSync, rmSync, writeFileSync, writeSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const dir = mkdtempSync(join(tmpdir(), 'pidfd-core-sampler-'));
  const path = join(dir, 'n');
  writeFileSync(path, '100\n');
  const fd = openSync(path, 'r+');
  const s = new ThresholdSampler({ path, op: 'below', bound: 50, minMs: 10, maxMs: 10 });
  const seen = [];
  let next;
  s.on('cross', (v) => {
    seen.push(v);
    next?.(v);
  });
  const crossing = () => within(10_000, new Promise((r) => (next = r)), 'the sampler');
  try {
    s.start();
    await sleep(100);
    t.equal(seen.length, 0, 'no crossing, no call');
    let c = crossing();
    writeSync(fd, '020', 0);
    t.equal(await c, 20, 'the crossing is reported with its value');
    await sleep(100);
    t.equal(seen.length, 1, 'once');
    c = crossing();
    s.update({ bound: 30 });
    t.equal(await c, 20, 're-armed with a bound that holds: fires at once');
    s.close();
    writeSync(fd, '001', 0);
    s.close();
    await sleep(100);
    t.equal(seen.length, 2, 'closed: no call');
  } finally {
    s.close();
    closeSync(fd);
    rmSync(dir, { recursive: true, force: true });
  }
});

let Worker;
try {
  ({ Worker } = await import('node:worker_threads'));
} catch {
  Worker = undefined;
}

test(
  'workers terminated mid-wait leave the process healthy (in a child process)',
  async (t) => {
    const r = spawnSync(process.execPath, [...selfCmd, '--worker-teardown'], { encoding: 'utf8', timeout: 60_000 });
    const last = (r.stdout ?? '').trim().split('\n').pop();
    let out;
    try {
      out = JSON.parse(last);
    } catch {
      out = undefined;
    }
    t.equal(r.status, 0, `the child exits 0 (status ${r.status}, signal ${r.signal}) ${(r.stderr ?? '').slice(-400)}`);
    t.ok(out?.terminated > 0, `workers terminated while waiting: ${out?.terminated}`);
    t.equal(out?.workerExit, 'SIGKILL', 'a worker saw its own wait settle before that');
    t.match(out?.main ?? {}, { signal: 'SIGKILL' }, 'the main thread still waits after the terminations');
  },
  Worker === undefined ? `${runtime} has no worker_threads` : undefined,
);

async function workerTeardown() {
  const code = `
    const { parentPort, workerData } = require('node:worker_threads');
    const { PidFd } = require(workerData.pkg);
    const { spawn } = require('node:child_process');
    (async () => {
      const p = PidFd.open(workerData.pid);
      if (workerData.settle) {
        const c = spawn('sleep', ['30'], { stdio: 'ignore' });
        const q = PidFd.fromChild(c);
        const w = q.waitExit();
        q.kill('SIGKILL');
        const info = await w;
        parentPort.postMessage({ exit: info.signal });
      }
      parentPort.postMessage('waiting');
      await p.waitExit();
    })();
  `;
  const target = spawn('sleep', ['60'], { stdio: 'ignore' });
  await started(target);
  const pkgPath = join(here, '..', '..', 'dist', 'index.js');
  let terminated = 0;
  let workerExit;
  for (let i = 0; i < 8; i++) {
    const wk = new Worker(code, { eval: true, workerData: { pid: target.pid, pkg: pkgPath, settle: i === 0 } });
    await new Promise((resolve, reject) => {
      wk.on('message', (m) => {
        if (m === 'waiting') resolve();
        else workerExit = m.exit;
      });
      wk.once('error', reject);
    });
    await wk.terminate();
    terminated++;
  }
  const p = PidFd.fromChild(target);
  p.kill('SIGKILL');
  const main = await p.waitExit();
  p.close();
  console.log(JSON.stringify({ terminated, workerExit, main }));
}

// ---- run ------------------------------------------------------------------------------------------------------
if (process.argv.includes('--uv-check')) {
  await uvCheck();
} else if (process.argv.includes('--ref-check')) {
  await refCheck(process.argv[process.argv.indexOf('--ref-check') + 1]);
} else if (process.argv.includes('--worker-teardown')) {
  await workerTeardown();
  process.exit(0);
} else {
  await main();
}

async function main() {
  console.log('TAP version 14');
  console.log(`# pidfd core under ${runtime}, watcher: ${process.env.PIDFD_WATCHER ?? 'default'}`);
  const only = process.env.CORE_ONLY;
  for (const { name, fn, skip } of tests) {
    if (only && !name.includes(only)) continue;
    if (skip) {
      n++;
      skipped++;
      console.log(`ok ${n} - ${name} # SKIP ${skip}`);
      continue;
    }
    const t = assertions(name);
    try {
      await fn(t);
    } catch (err) {
      point(false, `${name} > threw`, err?.stack ?? String(err));
    }
  }
  console.log(`1..${n}`);
  console.log(`# { total: ${n}, pass: ${pass}, fail: ${fail}, skip: ${skipped} }`);
  process.exitCode = fail > 0 ? 1 : 0;
}
