// The low-memory killer against earlyoom and nohang, head to head: the same workloads, the same thresholds, the
// same outside measurement for all.
//
//   node bench/peers.mjs [--quick] [--trials N] [--write]
//     one JSON document on stdout (every trial); --write also replaces its section of bench/RESULTS.md.
//     --quick: 1 trial per workload and killer, 5 s of idle (default: 5 trials, 30 s). Needs root.
//     --killers earlyoom,nohang,pidfd,pidfd-fast and --workloads fast,slow,victim,leader,budget: a subset;
//     --idle S: seconds of idle measurement (0: none); --real-meminfo: see below.
//   node bench/peers.mjs --render   re-renders the section from bench/results-peers.json (the last --write)
//
// Each trial is one workload under one killer, in a fresh cgroup v1 memory group with a hard cap (the kernel's
// memcg OOM killer is the backstop; its kills are counted). Each killer runs with the workload inside one private
// pid namespace (bench/peers.c launch is its init and reaps every death at once), so it can see and kill only the
// benchmark's processes. System-wide killers get a MemAvailable threshold computed at the start of the trial,
// MemAvailable - cap + 10 % of cap, so that every killer should act when the group's usage reaches 90 % of its cap.
// Measured from outside, alike for all: a sampler (bench/peers.c sample) reads the group's usage every 1 ms; the
// bench holds a pidfd on every workload process (PidFd.open + waitExit).
//
// The machine's memory view. On a shared machine the real MemAvailable moves with everyone's work: measured here
// during single trials it ended up to 1.8 GiB away from "start value minus the group's usage", so a system-wide
// threshold is met early, late, or never, whatever the killer does. By default each namespace therefore gets its
// own /proc/meminfo (bind-mounted over it inside the namespace's mount namespace): the real file as it was at the
// start of the trial, MemFree and MemAvailable rewritten by the sampler after every 1 ms sample as start value
// minus the group's usage. Everything a system-wide killer reads then moves with the workload alone.
// --real-meminfo leaves the namespaces on the real /proc/meminfo.
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BENCH, compile, fmt, loadPackage, median, removeCgroup, ROOT, sleep, spliceSections } from './lib.mjs';

const MiB = 2 ** 20;
const GiB = 2 ** 30;
const PIDFD_BIN = join(ROOT, 'bin', 'pidfd.js');
const NOHANG = '/usr/sbin/nohang';

/**
 * The command line of each killer for one trial: the one place to change when their flags change.
 * `threshold`: MemAvailable bytes for the system-wide mode; `budget`: the memory cgroup pidfd lmk watches as a
 * budget (the peers have no such mode and get `threshold`). Candidates for pidfd lmk: the children of the
 * namespace's init (the workload), or the budget cgroup's members.
 */
function killerCommand(killer, { threshold, budget, dir }) {
  const system = ['--children-of', '1', '--min-available', String(Math.round(threshold))];
  switch (killer) {
    case 'earlyoom': {
      const kib = Math.round(threshold / 1024);
      return ['earlyoom', '-M', `${kib},${kib}`]; // SIGTERM and SIGKILL at the same point: SIGKILL
    }
    case 'nohang': {
      const conf = join(dir, 'nohang.conf');
      const mib = `${Math.round(threshold / MiB)} M`;
      writeFileSync(
        conf,
        readFileSync('/etc/nohang/nohang.conf', 'utf8')
          .replace(/^soft_threshold_min_mem\s*=.*$/m, `soft_threshold_min_mem = ${mib}`)
          .replace(/^hard_threshold_min_mem\s*=.*$/m, `hard_threshold_min_mem = ${mib}`),
      );
      return ['/usr/bin/python3', join(scratch, 'nohang'), '--monitor', '-c', conf];
    }
    case 'pidfd':
      return [process.execPath, PIDFD_BIN, 'lmk', ...(budget ? ['--cgroup', budget] : system)];
    case 'pidfd-fast':
      return [
        process.execPath,
        PIDFD_BIN,
        'lmk',
        ...(budget ? ['--cgroup', budget] : system),
        '--interval',
        '10ms',
        '--no-reclaim',
      ];
  }
  throw new Error(`unknown killer ${killer}`);
}

/** What each killer prints once it watches (the trial starts after that). */
const READY = {
  earlyoom: /SIGKILL when mem/,
  nohang: /Monitoring has started/,
  pidfd: /watching /,
  'pidfd-fast': /watching /,
};

const KILLERS = ['earlyoom', 'nohang', 'pidfd', 'pidfd-fast'];

// A spec is one process of the workload (see bench/peers.c): kind:oom_score_adj:MiB[:MiB/s]. The intended victim
// is the last one.
const WORKLOADS = {
  fast: { label: 'fast hog', cap: 4 * GiB, specs: ['grow:0:0:0'] },
  slow: { label: 'slow leak, 200 MiB/s', cap: 2 * GiB, specs: ['grow:0:0:200'] },
  victim: {
    label: 'victim choice in a 6 GiB budget: 10 × 100 MiB at adj 300 + one growing to 4.5 GiB at adj 0',
    cap: 6 * GiB,
    specs: [...Array(10).fill('fill:300:100'), 'grow:0:4608:0'],
    budget: true, // the budget the kernel's memcg OOM killer weighs adj against; the peers see only the system
  },
  leader: { label: 'thread-leader-exited hog', cap: 4 * GiB, specs: ['leader:0:0:0'] },
  budget: { label: 'cgroup budget (fast hog)', cap: 4 * GiB, specs: ['grow:0:0:0'], budget: true },
};

const MARGIN = 0.1; // of the cap: where every killer should act
const LOW = 0.5; // usage below this share of the cap after the crossing: memory back
const RATE_FROM = 0.25; // the allocation rate is measured from this share of the cap to the crossing
const AFTER_CROSS_MS = 10_000; // a trial whose intended victim still lives this long after the crossing ends
const TRIAL_LIMIT_MS = 60_000;
const SPARE = 2 * GiB; // MemAvailable a trial needs beyond its cap

const log = (s) => process.stderr.write(`${s}\n`);
const nowNs = () => Number(process.hrtime.bigint());
let scratch;
let realMeminfo = false;

// ---- the kernel's files ----
const meminfo = (key) =>
  Number(new RegExp(`^${key}:\\s+(\\d+)`, 'm').exec(readFileSync('/proc/meminfo', 'utf8'))[1]) * 1024;
const vmstatOomKills = () => Number(/^oom_kill (\d+)/m.exec(readFileSync('/proc/vmstat', 'utf8'))?.[1] ?? NaN);
const groupOomKills = (dir) =>
  Number(/^oom_kill (\d+)/m.exec(readFileSync(join(dir, 'memory.oom_control'), 'utf8'))?.[1] ?? NaN);
const procsOf = (dir) => readFileSync(join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number);
const childrenOf = (pid) => {
  try {
    return readdirSync(`/proc/${pid}/task`).flatMap((t) =>
      readFileSync(`/proc/${pid}/task/${t}/children`, 'utf8').split(' ').filter(Boolean).map(Number),
    );
  } catch {
    return [];
  }
};
const nsPid = (pid) => Number(/^NSpid:.*\s(\d+)\s*$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]);
/** utime + stime in ms (clock ticks of 10 ms), and the run time of every live thread in ns (schedstat). */
function cpuOf(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  let runNs = 0;
  for (const t of readdirSync(`/proc/${pid}/task`)) {
    try {
      runNs += Number(readFileSync(`/proc/${pid}/task/${t}/schedstat`, 'utf8').split(' ')[0]);
    } catch {
      /* the thread exited */
    }
  }
  return { ticksMs: (Number(f[11]) + Number(f[12])) * 10, runNs };
}
const rssOf = (pid) => {
  const s = readFileSync(`/proc/${pid}/status`, 'utf8');
  return { rss: Number(/^VmRSS:\s+(\d+)/m.exec(s)[1]) * 1024, hwm: Number(/^VmHWM:\s+(\d+)/m.exec(s)[1]) * 1024 };
};

function memoryRoot() {
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const [left, right] = line.split(' - ');
    if (right?.startsWith('cgroup ') && right.split(' ')[2]?.split(',').includes('memory')) return left.split(' ')[4];
  }
  return undefined;
}
function ownMemoryGroup(root) {
  for (const line of readFileSync('/proc/self/cgroup', 'utf8').split('\n')) {
    const [, controllers, path] = line.split(':');
    if (controllers?.split(',').includes('memory') && existsSync(join(root, path))) return join(root, path);
  }
  return root;
}

// ---- cleanup: every group and namespace this run made goes, also on failure and SIGINT ----
const groups = new Set();
const launchers = new Set();
let groupSeq = 0;
let memParent;

function makeGroup(cap) {
  const dir = join(memParent, `pidfd-bench-peers-${process.pid}-${groupSeq++}`);
  mkdirSync(dir);
  groups.add(dir);
  writeFileSync(join(dir, 'memory.limit_in_bytes'), String(cap));
  return dir;
}
async function dropGroup(dir) {
  for (let i = 0; i < 50 && existsSync(dir); i++) {
    const left = procsOf(dir);
    for (const pid of left) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    if (left.length === 0) break;
    await sleep(20);
  }
  await removeCgroup(dir);
  groups.delete(dir);
}
async function cleanup() {
  for (const l of launchers) l.child.kill('SIGKILL'); // unshare --kill-child: the namespace's init goes with it
  for (const dir of [...groups]) await dropGroup(dir);
  if (scratch) rmSync(scratch, { recursive: true, force: true });
}

/** A child process read line by line: every line goes to `onLine`; `waitFor(re)` resolves with a matching line. */
class Lines {
  constructor(file, args, options = {}) {
    this.child = spawn(file, args, { stdio: ['pipe', 'pipe', 'inherit'], ...options });
    this.lines = [];
    this.waiters = [];
    this.exited = new Promise((r) => this.child.once('exit', r));
    let buf = '';
    this.child.stdout.setEncoding('utf8');
    this.child.stdout.on('data', (d) => {
      buf += d;
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        this.lines.push(line);
        this.onLine?.(line);
        for (const w of [...this.waiters]) {
          if (w.re.test(line)) {
            this.waiters.splice(this.waiters.indexOf(w), 1);
            w.resolve(line);
          }
        }
      }
    });
    this.child.once('exit', () => {
      for (const w of this.waiters.splice(0)) w.reject(new Error(`${file} exited`));
    });
  }

  waitFor(re, ms = 20_000) {
    const seen = this.lines.find((l) => re.test(l));
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const w = { re, resolve, reject };
      this.waiters.push(w);
      setTimeout(() => {
        const i = this.waiters.indexOf(w);
        if (i >= 0) (this.waiters.splice(i, 1), reject(new Error(`timed out waiting for ${re}`)));
      }, ms).unref();
    });
  }
}

const readLog = (file) => {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return ''; // not created yet
  }
};

/**
 * Starts `killer` with the workload `specs` in a fresh namespace; resolves once the killer watches. Returns the
 * launcher, the workload's processes (outer pids, in spec order) and the killer's outer pid.
 */
async function launch(killer, { specs, dir, threshold, budget, tag, meminfoFile }) {
  const logFile = join(scratch, `${tag}.log`);
  const argv = killerCommand(killer, { threshold, budget: budget ? dir : undefined, dir: scratch });
  const view = meminfoFile ? [`meminfo=${meminfoFile}`] : [];
  const l = new Lines(
    'unshare',
    [
      '--pid',
      '--fork',
      '--mount-proc',
      '--kill-child',
      PEERS,
      'launch',
      dir,
      logFile,
      ...view,
      ...specs,
      '--',
      ...argv,
    ],
    { env: { ...process.env, PYTHONUNBUFFERED: '1' } },
  );
  launchers.add(l);
  l.exited.then(() => launchers.delete(l));
  l.logFile = logFile;
  const ready = await l.waitFor(/^ready /);
  const [work, k] = ready.slice(6).split(' -- ');
  const order = work.split(' ').map(Number);
  const byNs = new Map(procsOf(dir).map((pid) => [nsPid(pid), pid]));
  const procs = order.map((ns) => ({ ns, pid: byNs.get(ns) }));
  if (procs.some((p) => p.pid === undefined)) throw new Error('a workload process is not in its cgroup');
  const init = childrenOf(l.child.pid)[0];
  const killerPid = childrenOf(init).find((pid) => !byNs.has(nsPid(pid)));
  const deadline = Date.now() + 20_000;
  while (!READY[killer].test(readLog(logFile))) {
    if (l.lines.some((line) => line.startsWith(`exit ${k} `)) || Date.now() > deadline) {
      throw new Error(`${killer} did not start:\n${readLog(logFile).slice(-2000)}`);
    }
    await sleep(20);
  }
  return { l, procs, killerNs: Number(k), killerPid };
}

async function stopLauncher(l) {
  l.child.stdin.end();
  const t = setTimeout(() => l.child.kill('SIGKILL'), 10_000);
  await l.exited;
  clearTimeout(t);
}

async function waitForMemory(cap) {
  for (let i = 0; i < 120; i++) {
    if (meminfo('MemAvailable') >= cap + SPARE) return true;
    if (i === 0) log(`  waiting for ${((cap + SPARE) / GiB).toFixed(1)} GiB to be available ...`);
    await sleep(500);
  }
  return false;
}

// ---- one trial ----
async function trial(name, killer, seq) {
  const w = WORKLOADS[name];
  const { cap } = w;
  if (!(await waitForMemory(cap))) return { workload: name, killer, skipped: 'not enough memory available' };
  const dir = makeGroup(cap);
  const vm0 = vmstatOomKills();
  const snapshot = readFileSync('/proc/meminfo', 'utf8');
  const ma0 = Number(/^MemAvailable:\s+(\d+)/m.exec(snapshot)[1]) * 1024;
  const threshold = ma0 - cap + MARGIN * cap;
  const cross = (1 - MARGIN) * cap;
  const { PidFd } = loadPackage();
  let launched;
  let sampler;
  const handles = [];
  try {
    const meminfoFile = realMeminfo ? undefined : join(scratch, `meminfo-${seq}`);
    if (meminfoFile) writeFileSync(meminfoFile, snapshot);
    const ev = {};
    sampler = new Lines(PEERS, [
      'sample',
      join(dir, 'memory.usage_in_bytes'),
      String(cross),
      String(LOW * cap),
      String(RATE_FROM * cap),
      String(threshold),
      ...(meminfoFile ? [meminfoFile] : []),
    ]);
    sampler.onLine = (line) => {
      const [k, v] = line.split(' ');
      if (k !== 'stats' && k !== 'started') ev[k] ??= Number(v);
    };
    await sampler.waitFor(/^started/);
    const tag = `${name}-${killer}-${seq}`;
    launched = await launch(killer, { specs: w.specs, dir, threshold, budget: w.budget, tag, meminfoFile });
    const { l, procs, killerNs } = launched;
    for (const [i, p] of procs.entries()) {
      const h = { ...p, role: i === procs.length - 1 ? 'victim' : 'other', pidfd: PidFd.open(p.pid) };
      h.pidfd.waitExit().then(
        (info) => ((h.tDead = nowNs()), (h.signal = info.signal ?? null), (h.code = info.code ?? null)),
        () => {},
      );
      handles.push(h);
    }
    await sleep(500); // the killer's first checks
    const tGo = nowNs();
    l.child.stdin.write('go\n');
    const victim = handles[handles.length - 1];
    for (;;) {
      await sleep(20);
      const t = nowNs();
      if (victim.tDead !== undefined) {
        const back = ev.low ?? victim.tDead + 3e9;
        if (t - Math.max(victim.tDead, back) > 1e9) break;
      } else if (ev.cross !== undefined && t - ev.cross > AFTER_CROSS_MS * 1e6) break;
      if (t - tGo > TRIAL_LIMIT_MS * 1e6) break;
    }
    const tEnd = nowNs();
    sampler.child.stdin.write('end\n');
    const [, samples, maxGap, peakS, , maAtCross] = (await sampler.waitFor(/^stats /)).split(' ').map(Number);
    const killerExited = l.lines.some((line) => line.startsWith(`exit ${killerNs} `));
    const logTail = readLog(l.logFile).slice(-1500);
    await stopLauncher(l);
    const leftovers = procsOf(dir).length;
    if (leftovers > 0) log(`  ${leftovers} process(es) left in ${dir} after the trial: killing them`);
    const peak = Number(readFileSync(join(dir, 'memory.max_usage_in_bytes'), 'utf8'));
    const kernelOomKills = groupOomKills(dir);
    const dead = handles.filter((h) => h.tDead !== undefined && h.tDead <= tEnd);
    const ms = (t) => (t === undefined || ev.cross === undefined ? null : (t - ev.cross) / 1e6);
    const r = {
      workload: name,
      killer,
      cap,
      threshold,
      memAvailableStart: ma0,
      // The machine's real MemAvailable at the crossing, minus the threshold (> 0: the real one had not reached it).
      realMemAvailableOverThresholdAtCross: maAtCross >= 0 ? maAtCross - threshold : null,
      crossed: ev.cross !== undefined,
      goToCrossMs: ev.cross === undefined ? null : (ev.cross - tGo) / 1e6,
      rateMiBps:
        ev.cross === undefined || ev.from === undefined || ev.cross <= ev.from
          ? null
          : ((1 - MARGIN - RATE_FROM) * cap) / MiB / ((ev.cross - ev.from) / 1e9),
      crossToDeadMs: ms(victim.tDead <= tEnd ? victim.tDead : undefined),
      crossToMemoryBackMs: ms(ev.low),
      crossToRealMemAvailableAtThresholdMs: ms(ev.ma),
      victimKilled: victim.tDead !== undefined && victim.tDead <= tEnd,
      // The memcg OOM killer picks the largest badness: the victim (the workers' adj 300 is worth less than its size).
      victimKilledBy: victim.tDead === undefined || victim.tDead > tEnd ? null : kernelOomKills > 0 ? 'kernel' : killer,
      victimSignal: victim.tDead !== undefined && victim.tDead <= tEnd ? victim.signal : null,
      wrongKills: dead.filter((h) => h.role !== 'victim').length,
      deaths: dead.map((h) => ({ role: h.role, ms: ms(h.tDead), signal: h.signal })),
      kernelOomKills,
      vmstatOomKills: vmstatOomKills() - vm0,
      peakBytes: peak,
      samplerPeakBytes: peakS,
      lowestHeadroomBytes: cap - peak,
      samples,
      samplerMaxGapMs: maxGap / 1e6,
      killerExited,
      leftovers,
    };
    if (r.victimKilledBy !== killer || killerExited) r.killerLogTail = logTail;
    return r;
  } finally {
    if (sampler?.child.exitCode === null) sampler.child.kill('SIGKILL');
    for (const h of handles) h.pidfd.close();
    if (launched && launchers.has(launched.l)) await stopLauncher(launched.l);
    await dropGroup(dir);
  }
}

// ---- idle cost: every killer at once, each with its threshold and nothing allocating ----
async function idle(killers, seconds) {
  const runs = [];
  try {
    for (const killer of killers) {
      const cap = 4 * GiB;
      const dir = makeGroup(cap);
      const threshold = meminfo('MemAvailable') - cap + MARGIN * cap;
      runs.push({
        killer,
        dir,
        ...(await launch(killer, { specs: ['fill:0:1'], dir, threshold, tag: `idle-${killer}` })),
      });
    }
    await sleep(2000);
    for (const r of runs) r.c0 = cpuOf(r.killerPid);
    const t0 = nowNs();
    await sleep(seconds * 1000);
    const wallMs = (nowNs() - t0) / 1e6;
    return runs.map((r) => {
      const c = cpuOf(r.killerPid);
      return {
        killer: r.killer,
        seconds,
        wallMs,
        cpuMs: c.ticksMs - r.c0.ticksMs,
        runMs: (c.runNs - r.c0.runNs) / 1e6,
        ...rssOf(r.killerPid),
      };
    });
  } finally {
    for (const r of runs) {
      await stopLauncher(r.l);
      await dropGroup(r.dir);
    }
  }
}

// ---- the peers themselves ----
const version = (pkg) => {
  try {
    return execFileSync('dpkg-query', ['-W', '-f', '${Version}', pkg], { encoding: 'utf8' }).trim() || undefined;
  } catch {
    return undefined;
  }
};
function havePeer(name) {
  return name === 'earlyoom' ? existsSync('/usr/bin/earlyoom') : existsSync(NOHANG);
}
function preparePeers() {
  const missing = ['earlyoom', 'nohang'].filter((p) => !havePeer(p));
  if (missing.length > 0 && process.getuid() === 0) {
    log(`peers: installing ${missing.join(' and ')} (apt-get install -y ${missing.join(' ')}) ...`);
    try {
      execFileSync('apt-get', ['install', '-y', ...missing], {
        stdio: ['ignore', 'ignore', 'inherit'],
        env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
      });
    } catch (err) {
      log(`peers: apt-get failed (${err.message.split('\n')[0]})`);
    }
  }
  const absent = {};
  for (const p of ['earlyoom', 'nohang']) if (!havePeer(p)) absent[p] = 'not installed';
  if (!absent.nohang) {
    // nohang refuses a memory threshold above 50 % of MemTotal; the thresholds here are MemAvailable minus one cap,
    // far above that on a large machine. A copy with that one check removed runs; nothing else in it changes.
    const src = readFileSync(NOHANG, 'utf8');
    const check = 'if mem_min_kb > mem_total * 0.5 or mem_min_kb < 0:';
    if (src.split(check).length === 2) writeFileSync(join(scratch, 'nohang'), src.replace(check, 'if mem_min_kb < 0:'));
    else absent.nohang = 'its 50 % threshold check is not where nohang 0.2 has it: cannot lift it';
  }
  for (const [p, why] of Object.entries(absent)) log(`peers: ${p} is missing (${why}): running the rest without it`);
  return absent;
}

let PEERS;

async function main() {
  const quick = process.argv.includes('--quick');
  realMeminfo = process.argv.includes('--real-meminfo');
  const ti = process.argv.indexOf('--trials');
  const trials = ti > 0 ? Number(process.argv[ti + 1]) : quick ? 1 : 5;
  const ii = process.argv.indexOf('--idle');
  const idleSeconds = ii > 0 ? Number(process.argv[ii + 1]) : quick ? 5 : 30;
  const started = new Date();
  if (process.getuid?.() !== 0) return { skipped: 'needs root (memory cgroups, pid namespaces)' };
  const root = memoryRoot();
  if (!root || !existsSync(join(root, 'memory.usage_in_bytes'))) return { skipped: 'no cgroup v1 memory controller' };
  memParent = ownMemoryGroup(root);
  PEERS = compile('peers');
  loadPackage();
  scratch = mkdtempSync(join(tmpdir(), 'pidfd-bench-peers-'));
  const absent = preparePeers();
  const pick = (flag, all) => {
    const i = process.argv.indexOf(flag);
    return i > 0 ? process.argv[i + 1].split(',').filter((x) => all.includes(x)) : all;
  };
  const killers = pick('--killers', KILLERS).filter((k) => !absent[k]);
  const workloads = pick('--workloads', Object.keys(WORKLOADS));
  const results = [];
  let seq = 0;
  for (let round = 0; round < trials; round++) {
    for (const name of workloads) {
      const order = round % 2 === 0 ? killers : [...killers].reverse();
      for (const killer of order) {
        // A trial that fails (a killer that does not start, say) is reported and the run goes on.
        const r = await trial(name, killer, seq++).catch((err) => ({
          workload: name,
          killer,
          skipped: `failed: ${err.message.split('\n')[0]}`,
          error: err.message,
        }));
        results.push(r);
        log(
          `  ${name} / ${killer}: ` +
            (r.skipped
              ? `skipped (${r.skipped})`
              : `crossing -> dead ${fmt(r.crossToDeadMs)} ms, memory back ${fmt(r.crossToMemoryBackMs)} ms, ` +
                `lowest headroom ${fmt(r.lowestHeadroomBytes / MiB, 0)} MiB, kernel OOM kills ${r.kernelOomKills}, ` +
                `wrong kills ${r.wrongKills}, ${fmt(r.rateMiBps, 0)} MiB/s`),
        );
      }
    }
  }
  log(`  idle: every killer for ${idleSeconds} s, nothing allocating ...`);
  const idleRows =
    idleSeconds > 0
      ? await idle(killers, idleSeconds).catch((err) => {
          log(`  idle: failed (${err.message})`);
          return [];
        })
      : [];
  for (const r of idleRows) log(`  idle ${r.killer}: ${fmt(r.cpuMs, 0)} ms CPU, RSS ${fmt(r.rss / MiB)} MiB`);
  return {
    date: started.toISOString(),
    seconds: (Date.now() - started) / 1000,
    quick,
    meminfo: realMeminfo ? 'real' : 'the group alone',
    trialsPerCell: trials,
    machine: {
      cores: cpus().length,
      memBytes: totalmem(),
      kernel: execFileSync('uname', ['-r'], { encoding: 'utf8' }).trim(),
    },
    versions: { earlyoom: version('earlyoom'), nohang: version('nohang'), node: process.version },
    absent,
    workloads: Object.fromEntries(Object.entries(WORKLOADS).map(([k, w]) => [k, { ...w }])),
    margin: MARGIN,
    trials: results,
    idle: idleRows,
  };
}

// ---- the RESULTS.md section ----
const LABELS = {
  earlyoom: 'earlyoom',
  nohang: 'nohang',
  pidfd: '`pidfd lmk` (defaults)',
  'pidfd-fast': '`pidfd lmk --interval 10ms --no-reclaim`',
};

/** Its section of RESULTS.md. */
export function peersSection(data) {
  const out = ['<!-- section:peers -->', '## Low-memory killers head to head: `pidfd lmk`, earlyoom and nohang', ''];
  if (data.skipped) {
    out.push(`(skipped: ${data.skipped})`, '<!-- /section:peers -->');
    return out;
  }
  const v = data.versions;
  const killers = KILLERS.filter((k) => !data.absent[k]);
  out.push(
    `\`node bench/peers.mjs${data.quick ? ' --quick' : ''}\`, ${data.date.slice(0, 16)}Z, ${data.trialsPerCell} ` +
      `trial(s) per workload and killer, interleaved ABCD/DCBA (${(data.seconds / 60).toFixed(0)} min). ` +
      `earlyoom ${v.earlyoom ?? 'absent'}, nohang ${v.nohang ?? 'absent'}. Every workload in its own memory cgroup ` +
      `(v1, hard cap as given); every killer should act when the group's usage reaches ${100 - data.margin * 100} % ` +
      'of its cap. Times from that crossing (1 ms sampling of the usage); "memory back": usage below ' +
      `${LOW * 100} % of the cap. Medians, min-max in brackets; counts are totals over the trials. Times are of the ` +
      "killer's own kills only: a trial where the kernel's OOM killer killed the victim at the cap counts in " +
      '"by the kernel".',
  );
  for (const [p, why] of Object.entries(data.absent)) out.push('', `**${p} was not run: ${why}.**`);
  out.push(
    '',
    '| workload | cap | killer | trials | MiB/s | crossing → dead ms | crossing → memory back ms ' +
      '| lowest headroom MiB | peak MiB | victim killed: by the killer / by the kernel | wrong kills ' +
      '| kernel OOM kills |',
    '| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  );
  const cell = (xs, d = 0) => {
    const s = xs.filter((x) => typeof x === 'number' && !Number.isNaN(x));
    if (s.length === 0) return 'n/a';
    const m = fmt(median(s), d);
    if (s.length === 1) return m;
    return `${m} (${fmt(Math.min(...s), d)}–${fmt(Math.max(...s), d)})`;
  };
  const sum = (xs) => xs.reduce((a, b) => a + b, 0);
  const table = {};
  for (const [name, w] of Object.entries(data.workloads)) {
    let first = true;
    for (const k of killers) {
      const ts = data.trials.filter((t) => t.workload === name && t.killer === k && !t.skipped);
      if (ts.length === 0) continue;
      // Times of the killer's own kills: a kernel OOM kill at the cap says nothing about the killer's speed.
      const dead = ts.filter((t) => t.victimKilled && t.victimKilledBy !== 'kernel');
      const byKernel = ts.filter((t) => t.victimKilledBy === 'kernel').length;
      table[`${name}/${k}`] = { dead: median(dead.map((t) => t.crossToDeadMs)), own: dead.length, byKernel, ts };
      out.push(
        `| ${first ? w.label : ''} | ${first ? `${w.cap / GiB} GiB` : ''} | ${LABELS[k]} | ${ts.length} | ` +
          `${cell(ts.map((t) => t.rateMiBps))} | ${cell(dead.map((t) => t.crossToDeadMs))} | ` +
          `${cell(dead.map((t) => t.crossToMemoryBackMs))} | ${cell(ts.map((t) => t.lowestHeadroomBytes / MiB))} | ` +
          `${cell(ts.map((t) => t.peakBytes / MiB))} | ${dead.length} / ${byKernel} of ${ts.length} | ` +
          `${sum(ts.map((t) => t.wrongKills))} | ${sum(ts.map((t) => t.kernelOomKills))} |`,
      );
      first = false;
    }
  }
  const missed = data.trials.filter((t) => t.skipped);
  if (missed.length > 0) {
    const why = [...new Set(missed.map((t) => t.skipped))].join('; ');
    out.push('', `${missed.length} trial(s) did not run and are left out: ${why}.`);
  }
  out.push('');
  if (data.idle.length === 0) out.push('### Idle cost', '', '(not measured in this run)');
  else {
    out.push(
      `### Idle cost: ${data.idle[0].seconds} s with the same thresholds, nothing allocating (all killers at once)`,
      '',
      '| killer | CPU ms (utime+stime) | run time ms (schedstat) | % of one core | RSS MiB | peak RSS MiB |',
      '| --- | ---: | ---: | ---: | ---: | ---: |',
      ...data.idle.map(
        (r) =>
          `| ${LABELS[r.killer]} | ${fmt(r.cpuMs, 0)} | ${fmt(r.runMs)} | ${fmt((100 * r.runMs) / r.wallMs, 2)} | ` +
          `${fmt(r.rss / MiB)} | ${fmt(r.hwm / MiB)} |`,
      ),
    );
  }
  out.push('', '### Verdict', '');
  for (const [name, w] of Object.entries(data.workloads)) {
    const rows = killers.map((k) => [k, table[`${name}/${k}`]]).filter(([, r]) => r);
    if (rows.length === 0) continue;
    const parts = rows.map(([k, r]) => {
      const wrong = sum(r.ts.map((t) => t.wrongKills));
      const n = r.ts.length;
      const own = r.own === 0 ? `killed it in none of ${n}` : `${fmt(r.dead, 0)} ms (killed it in ${r.own} of ${n})`;
      return (
        `${LABELS[k]} ${own}${r.byKernel ? `, the kernel's OOM killer at the cap in ${r.byKernel}` : ''}` +
        `${wrong ? `, ${wrong} wrong kill(s)` : ''}`
      );
    });
    out.push(`- ${w.label}: ${parts.join('; ')}.`);
  }
  out.push(
    '',
    '### How it is measured',
    '',
    '- `bench/peers.mjs` with `bench/peers.c`. Each trial: a fresh cgroup v1 memory group with a hard cap; ' +
      '`unshare --pid --fork --mount-proc` runs `peers launch` as the init of a private pid namespace; it starts ' +
      'the workload processes (each joins the group and sets its oom_score_adj before touching memory), then the ' +
      'killer, and reaps every death at once. earlyoom and nohang see only the namespace; `pidfd lmk` runs in one ' +
      'too, with `--children-of 1` (the workload) for the system-wide rows and `--cgroup DIR` for the budget row.',
    '- Thresholds: at the start of each trial, MemAvailable − cap + 10 % of cap (earlyoom `-M K,K`: SIGTERM and ' +
      'SIGKILL at the same point; nohang soft = hard threshold; `pidfd lmk --min-available BYTES`). In the budget ' +
      'row `pidfd lmk --cgroup DIR` uses its defaults (10 % of the cap); the peers cannot watch a cgroup and keep ' +
      'the system threshold. nohang 0.2 refuses thresholds above 50 % of MemTotal: it runs as a copy of ' +
      '/usr/sbin/nohang with that one check removed, with the distribution config and both thresholds set.',
    data.meminfo === 'real'
      ? '- Memory view: the real /proc/meminfo (`--real-meminfo`): other work on the machine moves MemAvailable too.'
      : '- Memory view: this machine is shared, and its real MemAvailable drifted by up to ±1.8 GiB from "start ' +
          'minus the group\'s usage" within one trial. So each namespace sees its own /proc/meminfo (bind-mounted ' +
          'inside it): the real file at the start of the trial, with MemFree and MemAvailable rewritten in place ' +
          "after every 1 ms sample as start value minus the group's usage. The system-wide killers read memory that " +
          'moves with the workload alone, at most one sample late.',
    '- Workloads (bench/peers.c): one byte written per page, 2 MiB at a time; "MiB/s" is the rate actually got, ' +
      `from ${RATE_FROM * 100} % of the cap to the crossing. The thread-leader hog's main thread calls pthread_exit ` +
      'while a second thread allocates. In the victim row the right kill is the 4.5 GiB process; every other death ' +
      'is a wrong kill.',
    '- From outside, alike for all: `peers sample` reads memory.usage_in_bytes (and MemAvailable) every 1 ms; the ' +
      "bench holds a pidfd (`PidFd.open` + `waitExit`) on every workload process; peak usage is the group's " +
      'memory.max_usage_in_bytes, lowest headroom = cap − peak; kernel OOM kills are the oom_kill count of the ' +
      'group\'s memory.oom_control (a victim death with one counted there is the kernel\'s). "Dead" is when the ' +
      'pidfd reports the exit, which comes after the victim has unmapped its memory (hence "memory back" first). ' +
      `A trial ends 1 s after the victim died and its memory came back, or ${AFTER_CROSS_MS / 1000} s after the ` +
      'crossing with the victim alive.',
    '- Idle: each killer in its own namespace with one sleeping 1 MiB process, thresholds as above, all at once; ' +
      'utime+stime (10 ms ticks) and the summed schedstat run time of its threads over the window, RSS at its end.',
    '<!-- /section:peers -->',
  );
  return out;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const stop = async (sig) => {
    log(`peers: ${sig}: cleaning up`);
    await cleanup();
    process.exit(130);
  };
  process.once('SIGINT', () => stop('SIGINT'));
  process.once('SIGTERM', () => stop('SIGTERM'));
  let data;
  if (process.argv.includes('--render')) {
    data = JSON.parse(readFileSync(join(BENCH, 'results-peers.json'), 'utf8'));
  } else {
    try {
      data = await main();
    } finally {
      await cleanup();
    }
  }
  if (process.argv.includes('--render')) {
    spliceSections(['peers'], peersSection(data));
    process.exit(0);
  }
  if (process.argv.includes('--write') && !data.quick && !data.skipped) {
    spliceSections(['peers'], peersSection(data));
    writeFileSync(join(BENCH, 'results-peers.json'), `${JSON.stringify(data, null, 1)}\n`);
  }
  process.stdout.write(`${JSON.stringify(data)}\n`);
}
