// The low-memory killer at work: a handful of memory-hungry workers of different importance grow inside a memory
// budget of this demo's own (a memory cgroup with a limit), the killer answers the pressure, and every kill is
// printed with the memory regained and how long it took. Two rounds: with process_mrelease (release()) after each
// SIGKILL, and without.
//
//   node examples/lmk.mjs [budget-MiB]     (default 768 MiB, never more than a quarter of what is available)
//
// Needs a memory cgroup it can create: cgroup v1 (/sys/fs/cgroup/memory) or v2 with the memory controller, which
// usually means root. Everything it starts dies with it.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { LowMemoryKiller, readHeadroom } from '../dist/index.js';

const MiB = 2 ** 20;
const say = (s = '') => console.log(s);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const mib = (b) => `${(b / MiB).toFixed(0)} MiB`;

// The workers: name, oom_score_adj (higher dies first), MiB added per step. "db" is protected.
const WORKERS = [
  ['db', 0, 2],
  ['api', 100, 3],
  ['cache', 500, 6],
  ['batch', 700, 5],
  ['prefetch', 900, 4],
];
// A worker: Node, growing by <step> MiB of touched memory every 100 ms, up to <max> MiB.
const WORKER_JS = `
  const [step, max] = process.argv.slice(1).map(Number);
  const keep = [];
  setInterval(() => { if (keep.length * step < max) keep.push(Buffer.alloc(step << 20, 1)); }, 100);
`;

function mountOf(type, controller) {
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const [left, right] = line.split(' - ');
    if (!right) continue;
    const [fs, , opts] = right.split(' ');
    if (fs === type && (controller === undefined || opts.split(',').includes(controller))) return left.split(' ')[4];
  }
  return undefined;
}

function makeBudget(bytes) {
  const v1 = mountOf('cgroup', 'memory');
  if (v1) {
    const dir = join(v1, `pidfd-demo-${process.pid}`);
    mkdirSync(dir);
    writeFileSync(join(dir, 'memory.limit_in_bytes'), String(bytes));
    return dir;
  }
  const v2 = mountOf('cgroup2');
  if (v2 && readFileSync(join(v2, 'cgroup.controllers'), 'utf8').includes('memory')) {
    const dir = join(v2, `pidfd-demo-${process.pid}`);
    mkdirSync(dir);
    writeFileSync(join(dir, 'memory.max'), String(bytes));
    return dir;
  }
  return undefined;
}

async function removeBudget(dir) {
  for (let i = 0; i < 50 && existsSync(dir); i++) {
    try {
      rmdirSync(dir);
    } catch {
      await sleep(100);
    }
  }
}

/** The kernel's own OOM kills in the group (v1 memory.oom_control, v2 memory.events). */
function kernelOomKills(dir) {
  for (const f of ['memory.oom_control', 'memory.events']) {
    try {
      const m = /^oom_kill (\d+)$/m.exec(readFileSync(join(dir, f), 'utf8'));
      if (m) return Number(m[1]);
    } catch {
      /* not this version */
    }
  }
  return 'unknown';
}

async function round(dir, release) {
  say(`\n--- round: SIGKILL ${release ? 'then release() (process_mrelease)' : 'only, no release()'} ---`);
  const procs = [];
  for (const [name, adj, step] of WORKERS) {
    const c = spawn(process.execPath, ['-e', WORKER_JS, String(step), '400'], { stdio: 'ignore', argv0: name });
    await new Promise((r) => c.once('spawn', r));
    writeFileSync(join(dir, 'cgroup.procs'), String(c.pid));
    writeFileSync(`/proc/${c.pid}/oom_score_adj`, String(adj));
    procs.push({ name, adj, child: c });
  }
  const byPid = new Map(procs.map((p) => [p.child.pid, p]));
  const db = procs.find((p) => p.name === 'db');
  const lmk = new LowMemoryKiller({
    candidates: { cgroup: dir },
    memory: { cgroup: dir },
    minAvailable: '25%',
    protect: [db.child.pid],
    interval: 100,
    reclaim: { count: 2 }, // the two lowest-priority workers: their page cache would go first
    release,
  });
  const kills = [];
  lmk.on('pressure', (e) => say(`  episode ${e.episode}: ${e.reason}`));
  lmk.on('reclaim', (e) => {
    if (e.advised > 0)
      say(
        `    reclaim ${byPid.get(e.pid)?.name ?? e.pid}: advised ${mib(e.advised)}, ` +
          `RSS ${mib(e.rssBefore)} -> ${mib(e.rssAfter)} (no swap: anonymous memory stays)`,
      );
  });
  lmk.on('kill', (e) => {
    const w = byPid.get(e.pid);
    kills.push({ ...e, name: w?.name });
    say(
      `    killed ${w?.name ?? e.pid} (oom_score_adj ${e.oomScoreAdj}, PSS ${mib(e.pss)}): ` +
        `dead after ${e.deathMs.toFixed(1)} ms, ` +
        `${mib(e.bytesFreed)} back after ${e.memoryMs.toFixed(1)} ms` +
        `${e.released === undefined ? '' : ` (release() returned ${e.released})`}`,
    );
  });
  lmk.on('error', (err) => say(`    (${err.message})`));
  lmk.start();
  // Let pressure build until three workers have been killed, or 20 s.
  const t0 = Date.now();
  while (kills.length < 3 && Date.now() - t0 < 20_000) await sleep(100);
  await lmk.stop();
  for (const p of procs) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
  await Promise.all(
    procs.map((p) =>
      p.child.exitCode === null && p.child.signalCode === null ? new Promise((r) => p.child.once('exit', r)) : null,
    ),
  );
  say(`  kernel OOM kills in the budget so far: ${kernelOomKills(dir)} (the killer acts before the kernel has to)`);
  say(
    `  survivors: ${procs
      .filter((p) => !kills.some((k) => k.pid === p.child.pid))
      .map((p) => p.name)
      .join(', ')} (db is protected)`,
  );
  return kills;
}

const avail = readHeadroom().available;
const budget = Math.min(Number(process.argv[2] ?? 768) * MiB, Math.floor(avail / 4));
say('pidfd low-memory killer demo');
say(`budget ${mib(budget)} (a memory cgroup of its own); the killer acts below 25% of it; workers, by importance:`);
for (const [name, adj, step] of WORKERS)
  say(
    `  ${name.padEnd(9)} oom_score_adj ${String(adj).padStart(3)}, grows ${step} MiB every 100 ms` +
      `${name === 'db' ? ' (protected)' : ''}`,
  );
let dir;
try {
  dir = makeBudget(budget);
} catch (err) {
  say(
    `\ncannot create a memory cgroup here (${err.code ?? err.message}): ` +
      'run as root on a machine with cgroup v1 memory or cgroup v2 with the memory controller.',
  );
  process.exit(0);
}
if (!dir) {
  say('\nno memory cgroup controller found: this demo needs one for its budget.');
  process.exit(0);
}
// Ctrl-C: the workers get the SIGINT too (same process group); remove the budget's cgroup once they are gone.
process.once('SIGINT', async () => {
  await sleep(300);
  await removeBudget(dir);
  process.exit(130);
});
try {
  const withRelease = await round(dir, true);
  const without = await round(dir, false);
  say("\n--- summary: SIGKILL -> memory back (the budget's headroom grew by 80% of the victim's PSS) ---");
  say('  victim     PSS        with release()         without');
  for (let i = 0; i < Math.max(withRelease.length, without.length); i++) {
    const a = withRelease[i];
    const b = without[i];
    const cell = (k) =>
      k ? `${k.name.padEnd(9)} ${mib(k.pss).padStart(8)} ${k.memoryMs.toFixed(1).padStart(7)} ms` : '';
    say(`  ${cell(a).padEnd(34)} ${b ? `${b.name.padEnd(9)} ${b.memoryMs.toFixed(1).padStart(7)} ms` : ''}`);
  }
  say(
    '\nOn an idle machine a killed process frees its memory about as fast as release() can; release() matters when the',
  );
  say('victim cannot run (a busy, starved machine): see the "starved" rows of bench/RESULTS.md (npm run bench).');
} finally {
  await removeBudget(dir);
}
