// Time from SIGKILL to "memory freed" for a large process, with and without process_mrelease (pidfd.release()).
// "Freed" is read from the victim's own memory cgroup (v1 memory.usage_in_bytes): the system-wide MemAvailable
// lags, because freed pages sit on per-CPU lists first.
//
//   node bench/mrelease.mjs [MiB] [trials-per-side] [scenarios]   prints one JSON document on stdout
//                                  scenarios: comma-separated, default idle,busy,starved
//
// Each victim (bench/helper.c hog) is moved into a fresh cgroup before it touches its memory, so the cgroup's
// usage is the victim's memory alone. Trials alternate ABBA between the two sides. The usage is read every ~50 µs,
// sleeping in between: a busy poller would compete for a CPU with the exiting victim on a small machine.
//
// Two scenarios:
//   idle  the machine is otherwise idle: the victim frees its memory itself as soon as it runs, and release() only
//         helps if it reaches the memory before the victim detaches it (else it returns false)
//   busy  the victim's CPU is shared with 3 busy processes (pinned there), as on a loaded machine: its own exit
//         gets a quarter of a CPU, while release() frees the memory from the caller's CPU (this process is kept
//         on another CPU for the scenario)
//   starved  as busy, and the victim runs at nice 19: its exit gets almost no CPU at all (the case
//         process_mrelease exists for: a victim that cannot run cannot free its own memory)
//
// Memory: one victim at a time, and a trial waits until MemAvailable has room for the victim plus 4 GiB to spare
// (other people use this machine too).
import { execFileSync, spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism, constants as osConstants, setPriority } from 'node:os';
import { join } from 'node:path';
import { compile, loadPackage, median, now, removeCgroup, sleep } from './lib.mjs';

const MIB = Number(process.argv[2] ?? 2048);
const TRIALS = Number(process.argv[3] ?? 6);
const SCENARIOS = (process.argv[4] ?? 'idle,busy,starved').split(',');
const SPARE = 4 * 2 ** 30;
const CG_ROOT = '/sys/fs/cgroup/memory';
const SIGKILL = osConstants.signals.SIGKILL;
const FREED = 0.01; // "freed": usage at or below 1% of what it was before the kill
const LIMIT_NS = 20_000_000_000n;
const POLL_US = 50;
const SPINNERS = 3;

const { PidFd, capabilities } = loadPackage();
const helper = compile('helper');

function skip(reason) {
  process.stdout.write(`${JSON.stringify({ skipped: reason })}\n`);
  process.exit(0);
}
if (!existsSync(join(CG_ROOT, 'memory.usage_in_bytes'))) skip(`no cgroup v1 memory controller at ${CG_ROOT}`);
if (!capabilities().processMrelease) skip('process_mrelease is not available on this kernel');

const cg = join(CG_ROOT, `pidfd-bench-${process.pid}`);
try {
  mkdirSync(cg);
} catch (err) {
  skip(`cannot create a memory cgroup (${err.code}); run as root`);
}

const nap = new Int32Array(new SharedArrayBuffer(4));
const buf = Buffer.alloc(64);
function usage(fd) {
  const n = readSync(fd, buf, 0, buf.length, 0);
  return Number(buf.toString('latin1', 0, n));
}

function started(child) {
  return new Promise((resolve, reject) => {
    child.once('spawn', resolve);
    child.once('error', reject);
  });
}

function memAvailable() {
  return Number(/^MemAvailable:\s+(\d+) kB/m.exec(readFileSync('/proc/meminfo', 'utf8'))[1]) * 1024;
}

async function roomFor(bytes) {
  for (let i = 0; i < 120 && memAvailable() < bytes + SPARE; i++) {
    if (i === 0)
      process.stderr.write(`  mrelease: waiting for ${((bytes + SPARE) / 2 ** 30).toFixed(1)} GiB available\n`);
    await sleep(1000);
  }
  if (memAvailable() < bytes + SPARE) throw new Error('not enough memory available for the victim: not running it');
}

async function trial(withRelease, busyCpu, nice) {
  await roomFor(MIB * 2 ** 20);
  const args = ['hog', String(MIB), ...(busyCpu === undefined ? [] : [String(busyCpu)])];
  const child = spawn(helper, args, { stdio: ['pipe', 'pipe', 'inherit'] });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  const spinners = [];
  try {
    await started(child);
    writeFileSync(join(cg, 'cgroup.procs'), String(child.pid));
    if (nice) setPriority(child.pid, 19);
    const ready = new Promise((resolve, reject) => {
      child.stdout.once('data', resolve);
      child.once('exit', () => reject(new Error('hog died before it was ready')));
    });
    child.stdin.write('g');
    await ready;
    const p = PidFd.fromChild(child);
    if (busyCpu !== undefined) {
      for (let i = 0; i < SPINNERS; i++) spinners.push(spawn(helper, ['spin', String(busyCpu)], { stdio: 'ignore' }));
      await Promise.all(spinners.map(started));
    }
    await sleep(200);
    const fd = openSync(join(cg, 'memory.usage_in_bytes'), 'r');
    const before = usage(fd);
    let released = null;
    let releaseNs = null;
    let t50 = null;
    let tFreed = null;

    const t0 = now();
    process.kill(child.pid, SIGKILL);
    if (withRelease) {
      released = p.release();
      releaseNs = Number(now() - t0);
    }
    for (;;) {
      const left = usage(fd);
      const t = now();
      if (t50 === null && left <= before / 2) t50 = Number(t - t0);
      if (left <= before * FREED) {
        tFreed = Number(t - t0);
        break;
      }
      if (t - t0 > LIMIT_NS) break;
      Atomics.wait(nap, 0, 0, POLL_US / 1000);
    }
    for (const s of spinners) s.kill('SIGKILL');
    const info = await p.waitExit();
    await exited;
    await sleep(50);
    const after = usage(fd);
    closeSync(fd);
    p.close();
    return {
      release: withRelease,
      released,
      beforeBytes: before,
      afterBytes: after,
      releaseNs,
      t50Ns: t50,
      freedNs: tFreed,
      signal: info.signal,
    };
  } finally {
    for (const s of spinners) if (s.exitCode === null && s.signalCode === null) s.kill('SIGKILL');
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
  }
}

const ms = (ns) => (ns === null ? null : ns / 1e6);

function side(trials, withRelease) {
  const t = trials.filter((r) => r.release === withRelease);
  return {
    trials: t.length,
    freedMs: median(t.map((r) => ms(r.freedNs ?? Number(LIMIT_NS)))),
    freedMsAll: t.map((r) => ms(r.freedNs)),
    halfMs: median(t.map((r) => ms(r.t50Ns ?? Number(LIMIT_NS)))),
    releaseCallMs: withRelease ? median(t.map((r) => ms(r.releaseNs))) : null,
    // false: the victim had already detached its memory (exit_mm) and frees it itself
    releasedTrue: t.filter((r) => r.released === true).length,
    beforeMiB: median(t.map((r) => r.beforeBytes / 2 ** 20)),
    afterMiB: median(t.map((r) => r.afterBytes / 2 ** 20)),
  };
}

const scenarios = {};
try {
  const plan = [];
  if (SCENARIOS.includes('idle')) plan.push(['idle', undefined, false]);
  if (availableParallelism() >= 2) {
    if (SCENARIOS.includes('busy')) plan.push(['busy', availableParallelism() - 1, false]);
    if (SCENARIOS.includes('starved')) plan.push(['starved', availableParallelism() - 1, true]);
  }
  for (const [name, busyCpu, nice] of plan) {
    const trials = [];
    if (busyCpu !== undefined) execFileSync(helper, ['pin', String(process.pid), '0']);
    // ABBA ABBA ...: linear drift cancels out between the two sides
    for (let i = 0; i < TRIALS * 2; i++) {
      const withRelease = i % 4 === 1 || i % 4 === 2;
      const r = await trial(withRelease, busyCpu, nice);
      process.stderr.write(
        `  mrelease ${name}: ${withRelease ? `with release (${r.released})` : 'kill only'}: ` +
          `${(r.beforeBytes / 2 ** 20).toFixed(0)} MiB freed in ${(ms(r.freedNs) ?? NaN).toFixed(1)} ms\n`,
      );
      trials.push(r);
    }
    if (busyCpu !== undefined) execFileSync(helper, ['pin', String(process.pid), '-1']);
    scenarios[name] = {
      busyCpu: busyCpu ?? null,
      nice: nice ? 19 : 0,
      without: side(trials, false),
      with: side(trials, true),
      trials,
    };
  }
} finally {
  await removeCgroup(cg);
}
process.stdout.write(`${JSON.stringify({ mib: MIB, freedThreshold: FREED, spinners: SPINNERS, scenarios })}\n`);
