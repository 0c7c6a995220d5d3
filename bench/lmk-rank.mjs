// The low-memory killer's decision path with 50 candidates: listing + ranking (LowMemoryKiller.candidates()), and
// decision → SIGKILL, against the reads the killer made before (smaps_rollup, oom_score_adj and comm of each
// candidate, then a sort), side by side in one run.
//
//   node bench/lmk-rank.mjs [rounds]      prints one JSON document on stdout, a table on stderr
//
// 50 `sleep` children of this process are the candidates. Each round runs every row once, in a fresh random order.
// The SIGKILL row: 49 sleepers and a victim at oom_score_adj 1000 (respawned after each round, outside the timing);
// the time runs from candidates() to pidfd.kill() returning.
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { loadPackage, now, shuffle, sleep, summarize } from './lib.mjs';

const ROUNDS = Number(process.argv[2] ?? 200);
const N = 50;
const { LowMemoryKiller, PidFd } = loadPackage();

const start = () => {
  const c = spawn('sleep', ['1000'], { stdio: 'ignore' });
  return c;
};
const sleepers = Array.from({ length: N }, start);
await sleep(300); // let each exec
const handles = sleepers.map((c) => PidFd.fromChild(c));
let victim;
let victimFd;
function newVictim() {
  victim = start();
  victimFd = PidFd.fromChild(victim);
  writeFileSync(`/proc/${victim.pid}/oom_score_adj`, '1000');
}
newVictim();

const lmk = (candidates, extra = {}) => new LowMemoryKiller({ candidates, minAvailable: 0, ref: false, ...extra });
const fromFds = lmk(() => handles);
const children = lmk({ childrenOf: process.pid });
const tree = lmk({ childrenOf: process.pid }, { killMode: 'tree' });
const withVictim = lmk(() => [...handles.slice(1), victimFd]);
// The whole episode as the killer runs it, with its defaults: measure, rules, list, rank, the reclaim check, kill.
const KILLER_ROW = 'the killer: measurement → SIGKILL (KillEvent.decisionMs, defaults, 50 candidates)';
const killer = new LowMemoryKiller({
  candidates: () => [...handles.slice(1), victimFd],
  minAvailable: Number.MAX_SAFE_INTEGER,
  ref: false,
});
let decided;
killer.on('kill', (e) => (decided = e.decisionMs * 1e6)); // ns, as the other rows

// What the killer read per candidate before: smaps_rollup (pidfd.memory()), oom_score_adj, comm; then a sort.
function baseline() {
  const out = [];
  for (const p of handles) {
    const memory = p.memory();
    const adj = Number(readFileSync(`/proc/${p.pid}/oom_score_adj`, 'latin1'));
    const comm = readFileSync(`/proc/${p.pid}/comm`, 'latin1').trim();
    if (!p.exited) out.push({ memory, adj, comm });
  }
  return out.sort((a, b) => b.adj - a.adj || b.memory.pss - a.memory.pss);
}

const rows = {
  'candidates(): function source of 50 PidFds': async () => (await fromFds.candidates()).length,
  'candidates(): { childrenOf } (50 children)': async () => (await children.candidates()).length,
  "candidates(): { childrenOf }, killMode 'tree'": async () => (await tree.candidates()).length,
  'baseline: smaps_rollup + oom_score_adj + comm each, sorted': async () => baseline().length,
};
const samples = Object.fromEntries(
  [...Object.keys(rows), 'decision → SIGKILL (50 candidates)', KILLER_ROW].map((k) => [k, []]),
);

for (const fn of Object.values(rows)) for (let i = 0; i < 20; i++) await fn(); // warm up
for (let r = 0; r < ROUNDS; r++) {
  for (const [name, fn] of shuffle(Object.entries(rows))) {
    const t0 = now();
    const n = await fn();
    samples[name].push(Number(now() - t0));
    if (n < N) throw new Error(`${name}: ${n} candidates`);
  }
  const t0 = now();
  const ranked = await withVictim.candidates();
  ranked[0].pidfd.kill('SIGKILL');
  samples['decision → SIGKILL (50 candidates)'].push(Number(now() - t0));
  if (ranked[0].pid !== victim.pid) throw new Error('the victim was not ranked first');
  victimFd.close();
  // Reaped before the next round (the rows above never yield to the event loop), so no zombie is listed.
  await new Promise((resolve) => victim.once('exit', resolve));
  newVictim();
  decided = undefined;
  await killer.check();
  if (decided === undefined) throw new Error('the killer made no kill');
  samples[KILLER_ROW].push(decided);
  await new Promise((resolve) => victim.once('exit', resolve));
  newVictim();
}

const result = Object.fromEntries(Object.entries(samples).map(([k, v]) => [k, summarize(v)]));
for (const c of [...sleepers, victim]) c.kill('SIGKILL');
for (const l of [fromFds, children, tree, withVictim, killer]) await l.stop();
process.stderr.write(`| row (${ROUNDS} rounds) | p50 µs | p90 µs | p99 µs |\n| --- | ---: | ---: | ---: |\n`);
for (const [k, s] of Object.entries(result))
  process.stderr.write(`| ${k} | ${s.p50.toFixed(0)} | ${s.p90.toFixed(0)} | ${s.p99.toFixed(0)} |\n`);
process.stdout.write(`${JSON.stringify({ rounds: ROUNDS, candidates: N, result })}\n`);
process.exit(0);
