// Where waitExit's time goes: a timeline of each wake-up, from kill(2) to the resolved promise, taken by wrapping
// the native functions the package calls (the package itself is unchanged; each wrapper adds a fraction of a µs).
// Not part of `npm run bench`; run it when changing the hot path:
//
//   node bench/profile.mjs [samples]
//
// For comparison it also times Node's own path for a child: its internal onexit callback, then the 'exit' event.
import { spawn } from 'node:child_process';
import { constants as osConstants } from 'node:os';
import { compile, LineProc, loadPackage, now, require, sleep } from './lib.mjs';

const N = Number(process.argv[2] ?? 300);
const SIGKILL = osConstants.signals.SIGKILL;

// Wrap before the package starts its watcher.
const { native } = require('../dist/binding.js');
let marks = null;
const mark = (label) => marks?.push([label, now()]);
const wrap = (name, label = name) => {
  const fn = native[name];
  native[name] = function (...args) {
    mark(`${label} →`);
    const r = fn.apply(this, args);
    mark(`${label} ←`);
    return r;
  };
};
const start = native.watcherStart;
native.watcherStart = (onReady) =>
  start((count) => {
    mark('watcher callback (first JS)');
    onReady(count);
    mark('watcher callback returns');
  });
wrap('waitid', 'native.waitid');
wrap('exitStatus', 'native.exitStatus');
wrap('watcherRef', 'native.watcherRef');

const { PidFd } = loadPackage();
const helper = compile('helper');
const reaper = new LineProc(helper, ['reaper']);

async function victim() {
  const child = spawn(helper, ['victim'], { stdio: 'ignore' });
  await new Promise((resolve) => child.once('spawn', resolve));
  return child;
}

async function sampleWaitExit(kind) {
  let child;
  let pid;
  let p;
  if (kind === 'child') {
    child = await victim();
    pid = child.pid;
    p = PidFd.fromChild(child);
  } else {
    pid = Number(await reaper.ask('s'));
    p = PidFd.open(pid);
  }
  const gone = child && new Promise((resolve) => child.once('exit', resolve));
  const done = p.waitExit().then(() => mark('promise reaction (then)'));
  await sleep(2);
  marks = [];
  const t0 = now();
  process.kill(pid, SIGKILL);
  mark('kill returns');
  await done;
  const m = marks;
  marks = null;
  await gone;
  p.close();
  return m.map(([label, t]) => [label, t - t0]);
}

async function sampleExitEvent() {
  const child = await victim();
  let t0;
  const m = [];
  const onexit = child._handle.onexit;
  child._handle.onexit = function (...args) {
    m.push(["Node's onexit (first JS)", now() - t0]);
    return onexit.apply(this, args);
  };
  const gone = new Promise((resolve) => child.once('exit', () => resolve(m.push(["'exit' listener", now() - t0]))));
  await sleep(2);
  t0 = now();
  process.kill(child.pid, SIGKILL);
  m.unshift(['kill returns', now() - t0]);
  await gone;
  return m;
}

function report(title, samples) {
  // Steps are numbered by wake-up: the non-child path wakes twice (exited, then reaped by its parent).
  const series = new Map();
  for (const s of samples) {
    let wake = 0;
    for (const [label, ns] of s) {
      if (label.startsWith('watcher callback (')) wake++;
      const key = wake > 1 ? `${label} [wake-up ${wake}]` : label;
      if (!series.has(key)) series.set(key, []);
      series.get(key).push(Number(ns) / 1000);
    }
  }
  const rows = [...series].map(([key, v]) => {
    v.sort((a, b) => a - b);
    return [key, v[v.length >> 1], v.length];
  });
  rows.sort((a, b) => a[1] - b[1]);
  console.log(
    `\n${title} (${samples.length} samples; p50 µs since just before kill, and the step from the line above)`,
  );
  let prev = 0;
  for (const [key, p50, n] of rows) {
    const partial = n < samples.length ? `   (in ${n} of them)` : '';
    console.log(`  ${key.padEnd(46)} ${p50.toFixed(1).padStart(8)}   +${(p50 - prev).toFixed(1)}${partial}`);
    prev = p50;
  }
}

const runs = { child: [], nonchild: [], exit: [] };
for (let i = -10; i < N; i++) {
  const c = await sampleWaitExit('child');
  const n = await sampleWaitExit('nonchild');
  const e = await sampleExitEvent();
  if (i < 0) continue;
  runs.child.push(c);
  runs.nonchild.push(n);
  runs.exit.push(e);
}
await reaper.end();
report('waitExit, own child', runs.child);
report("Node's 'exit' event, own child", runs.exit);
// The non-child path resolves at its first wake-up when the parent has already reaped by the time JS looks, else at
// the second (EPOLLHUP, the reap): report the two cases apart.
const wakes = (s) => s.filter(([label]) => label.startsWith('watcher callback (')).length;
for (const n of [1, 2, 3]) {
  const group = runs.nonchild.filter((s) => wakes(s) === n);
  if (group.length > 0) report(`waitExit, not a child, resolved at wake-up ${n}`, group);
}
