// Death-notification latency under Bun and Deno next to Node: bench/latency.mjs, unchanged, run under each runtime
// in turn (chunks interleaved node, bun, deno, ..., so drift of the machine hits all alike). Bun and Deno wait on
// the helper thread (src/thread.cc), Node on its libuv loop; the C floor is measured in every run.
//
//   node bench/runtimes.mjs [rounds]      a section for bench/RESULTS.md on stdout, spliced into it
//
// The runtimes come from BENCH_BUN / BENCH_DENO (paths to the binaries), else from their npm packages, installed
// into a temporary directory (as scripts/test-runtimes.sh does). A runtime that cannot be had is reported, not
// silently left out.
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { BENCH, summarize } from './lib.mjs';

const ROUNDS = Number(process.argv[2] ?? 300);
const CHUNKS = 3; // per runtime; each chunk is ROUNDS / CHUNKS rounds
const log = (s) => process.stderr.write(`${s}\n`);

let tmp;
function install(name, envVar) {
  if (process.env[envVar]) return process.env[envVar];
  tmp ??= mkdtempSync(join(tmpdir(), 'pidfd-bench-runtimes-'));
  const bin = join(tmp, name, 'node_modules', '.bin', name);
  try {
    execFileSync('npm', ['install', '--prefix', join(tmp, name), '--no-audit', '--no-fund', name], { stdio: 'ignore' });
  } catch (err) {
    log(`${name}: could not be installed from npm (${err.message.split('\n')[0]}): no rows for it`);
    return undefined;
  }
  return existsSync(bin) ? bin : undefined;
}

const runtimes = [{ name: 'Node', argv: [process.execPath], version: process.version }];
for (const [name, envVar, extra] of [
  ['bun', 'BENCH_BUN', []],
  ['deno', 'BENCH_DENO', ['run', '--allow-all']],
]) {
  const bin = install(name, envVar);
  if (!bin) continue;
  const version = execFileSync(bin, ['--version'], { encoding: 'utf8' })
    .split('\n')[0]
    .replace(/^deno (\S+).*/, '$1');
  runtimes.push({ name: name === 'bun' ? 'Bun' : 'Deno', argv: [bin, ...extra], version });
}

function latencyUnder(rt, rounds) {
  return new Promise((resolve, reject) => {
    const child = spawn(rt.argv[0], [...rt.argv.slice(1), join(BENCH, 'latency.mjs'), String(rounds)], {
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    let out = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (d) => (out += d));
    child.on('exit', (code, signal) => {
      if (code !== 0) return reject(new Error(`latency.mjs under ${rt.name} failed (${code ?? signal})`));
      resolve(JSON.parse(out));
    });
  });
}

const samples = new Map(runtimes.map((rt) => [rt.name, {}]));
const started = Date.now();
const loadBefore = loadavg()[0];
for (let c = 0; c < CHUNKS; c++) {
  for (const rt of runtimes) {
    const r = await latencyUnder(rt, Math.ceil(ROUNDS / CHUNKS));
    const into = samples.get(rt.name);
    for (const [k, v] of Object.entries(r.samplesNs)) (into[k] ??= []).push(...v);
    log(`  ${rt.name}: chunk ${c + 1}/${CHUNKS} (${((Date.now() - started) / 1000).toFixed(0)} s)`);
  }
}
if (tmp) rmSync(tmp, { recursive: true, force: true });

const fmt = (x) => x.toFixed(1);
const ROWS = [
  ['floor.child', 'own child: **floor**, C program, pidfd in epoll'],
  ['waitExit.child', 'own child: `waitExit()` resolves'],
  ['exit.child', "own child: child_process `'exit'` event"],
  ['floor.reaped', 'not a child: **floor**, pidfd EPOLLHUP (reaped)'],
  ['waitExit.nonchild', 'not a child: `PidFd.open(pid).waitExit()` resolves'],
];
const head = ['| mechanism', ...runtimes.map((rt) => `${rt.name} ${rt.version} p50 µs | p99 µs`)].join(' | ');
const lines = [
  '<!-- section:runtimes -->',
  '### The same rows under Bun and Deno',
  '',
  `\`node bench/runtimes.mjs ${ROUNDS}\`: bench/latency.mjs run under each runtime, ${ROUNDS} processes per row and ` +
    `runtime, in ${CHUNKS} chunks interleaved across the runtimes. Node waits on its libuv loop; Bun and Deno on ` +
    'the helper thread (epoll_wait, then a threadsafe function into JS). Each run measures its own C floor. ' +
    `Run ${new Date(started).toISOString()}, load average ${loadBefore.toFixed(1)} before and ` +
    `${loadavg()[0].toFixed(1)} after (compare within this table, not with the tables above).`,
  '',
  `${head} |`,
  `| --- |${runtimes.map(() => ' ---: | ---: |').join('')}`,
];
for (const [key, label] of ROWS) {
  const cells = runtimes.map((rt) => {
    const s = samples.get(rt.name)[key];
    if (!s) return 'n/a | n/a';
    const st = summarize(s);
    return `${fmt(st.p50)} | ${fmt(st.p99)}`;
  });
  lines.push(`| ${label} | ${cells.join(' | ')} |`);
}
lines.push('<!-- /section:runtimes -->');
process.stdout.write(`${lines.join('\n')}\n`);

if (!process.argv.includes('--no-write')) {
  const file = join(BENCH, 'RESULTS.md');
  let text = readFileSync(file, 'utf8');
  text = text.replace(/\n?<!-- section:runtimes -->[\s\S]*?<!-- \/section:runtimes -->\n?/, '');
  // After the non-child table of the latency section, before the next section.
  const at = text.search(/^## (?!Death notification)/m);
  text = at >= 0 ? `${text.slice(0, at)}${lines.join('\n')}\n\n${text.slice(at)}` : `${text}\n${lines.join('\n')}\n`;
  writeFileSync(file, text);
}
