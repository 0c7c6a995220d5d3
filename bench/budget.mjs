// The killer's per-sample cost of measuring its budget: readHeadroom() (fresh reads) and the killer's own reader
// (descriptors kept open, read again from offset 0), with and without the kernel's OOM-kill counter, for the
// system budget and for cgroup v1 groups; a bare readFileSync of /proc/meminfo is the baseline. Only reads: the
// groups made here hold no process.
//
//   node bench/budget.mjs [rounds]      prints a Markdown table on stdout
//
// Each round runs every mode for a batch of calls, in a shuffled order; a mode's figure is the median over rounds
// of the batch's mean µs per call. cgroup v2 is not measured here: the machine's memory controller is on v1.
import { mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fmt, loadPackage, median, now, require, shuffle } from './lib.mjs';

const ROUNDS = Number(process.argv[2] ?? 30);
const BATCH = 2000;
const { readHeadroom, readOomKills } = loadPackage();
const { Budget } = require('../dist/lmk/budget.js');

function memoryV1Root() {
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const [left, right] = line.split(' - ');
    if (right?.startsWith('cgroup ') && right.split(' ')[2]?.split(',').includes('memory')) return left.split(' ')[4];
  }
  return undefined;
}

function ownV1Dir(root) {
  for (const line of readFileSync('/proc/self/cgroup', 'utf8').split('\n')) {
    const [, controllers, path] = line.split(':');
    if (controllers?.split(',').includes('memory')) return join(root, path);
  }
  return root;
}

const budgets = [{ name: 'system', dir: undefined }];
const made = [];
const v1 = memoryV1Root();
if (v1 !== undefined) {
  const own = join(ownV1Dir(v1), `pidfd-bench-budget-${process.pid}`);
  mkdirSync(own);
  made.push(own);
  writeFileSync(join(own, 'memory.limit_in_bytes'), String(256 * 2 ** 20));
  const child = join(own, 'child');
  mkdirSync(child);
  made.unshift(child);
  budgets.push({ name: 'v1 group, own limit', dir: own }, { name: 'v1 group, limit on its parent', dir: child });
}

const modes = [{ budget: 'system', mode: 'readFileSync(/proc/meminfo)', fn: () => readFileSync('/proc/meminfo') }];
const kept = [];
for (const b of budgets) {
  const r = new Budget(b.dir);
  r.open();
  kept.push(r);
  const m = () => r.headroom();
  modes.push(
    { budget: b.name, mode: 'readHeadroom()', fn: () => readHeadroom(b.dir) },
    { budget: b.name, mode: 'readHeadroom() + readOomKills()', fn: () => (readHeadroom(b.dir), readOomKills(b.dir)) },
    { budget: b.name, mode: "killer's reader: headroom", fn: m },
    { budget: b.name, mode: "killer's reader: headroom + OOM count", fn: () => r.kernelOom(m(), 0, false) },
  );
}

const results = new Map(modes.map((x) => [x, []]));
for (const x of modes) for (let i = 0; i < 200; i++) x.fn(); // warm up
for (let round = 0; round < ROUNDS; round++) {
  for (const x of shuffle([...modes])) {
    const t0 = now();
    for (let i = 0; i < BATCH; i++) x.fn();
    results.get(x).push(Number(now() - t0) / BATCH / 1000);
  }
}
for (const r of kept) r.close();
for (const dir of made) rmdirSync(dir);

const lines = [
  `Budget reads per sample, µs per call (median of ${ROUNDS} rounds × ${BATCH} calls; ${v1 ? 'cgroup v1 at ' + v1 : 'no cgroup v1 memory controller'})`,
  '',
  '| budget | reader | µs per call | CPU at 100 samples/s |',
  '| --- | --- | --- | --- |',
];
for (const x of modes) {
  const us = median(results.get(x));
  lines.push(`| ${x.budget} | ${x.mode} | ${fmt(us)} | ${fmt(us / 100, 2)} % |`);
}
process.stdout.write(`${lines.join('\n')}\n`);
