// Shared pieces of the benchmarks: building the C helpers, talking to them, statistics.
import { execFileSync, spawn } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmdirSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const BENCH = dirname(fileURLToPath(import.meta.url));
export const ROOT = join(BENCH, '..');
const OUT = join(ROOT, 'build', 'bench');

/** The package as users get it (dist/ + the built addon). */
export const require = createRequire(import.meta.url);
export function loadPackage() {
  if (!existsSync(join(ROOT, 'dist', 'index.js'))) {
    throw new Error('dist/ is missing: build the package first (npm run build, or npx tsc -p tsconfig.json)');
  }
  return require('..');
}

/** Compiles bench/<name>.c into build/bench/<name> (again when the source is newer) and returns the path. */
export function compile(name) {
  const src = join(BENCH, `${name}.c`);
  const bin = join(OUT, name);
  // The helpers include bench/*.h: a newer header rebuilds too.
  const newest = Math.max(
    statSync(src).mtimeMs,
    ...readdirSync(BENCH)
      .filter((f) => f.endsWith('.h'))
      .map((f) => statSync(join(BENCH, f)).mtimeMs),
  );
  if (!existsSync(bin) || statSync(bin).mtimeMs < newest) {
    mkdirSync(OUT, { recursive: true });
    const tmp = `${bin}.${process.pid}.tmp`;
    execFileSync('cc', ['-O2', '-Wall', '-o', tmp, src], { stdio: 'inherit' });
    renameSync(tmp, bin);
  }
  return bin;
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Removes an emptied cgroup directory, retrying while the kernel still counts its last (dying) member. */
export async function removeCgroup(dir) {
  for (let i = 0; i < 50; i++) {
    try {
      rmdirSync(dir);
      return;
    } catch {
      await sleep(100);
    }
  }
}
export const now = () => process.hrtime.bigint();

/** Line-at-a-time request/answer over a child's stdin/stdout. */
export class LineProc {
  constructor(file, args, options = {}) {
    this.child = spawn(file, args, { stdio: ['pipe', 'pipe', 'inherit'], ...options });
    this.buf = '';
    this.lines = [];
    this.waiting = [];
    this.child.stdout.setEncoding('utf8');
    this.child.stdout.on('data', (d) => {
      this.buf += d;
      let i;
      while ((i = this.buf.indexOf('\n')) >= 0) {
        const line = this.buf.slice(0, i);
        this.buf = this.buf.slice(i + 1);
        const w = this.waiting.shift();
        if (w) w.resolve(line);
        else this.lines.push(line);
      }
    });
    this.child.on('exit', (code, signal) => {
      for (const w of this.waiting.splice(0)) w.reject(new Error(`${file} exited (${code ?? signal})`));
    });
  }

  /** Sends one command and resolves with the answer line. */
  ask(command) {
    this.child.stdin.write(`${command}\n`);
    return this.next();
  }

  next() {
    if (this.lines.length > 0) return Promise.resolve(this.lines.shift());
    return new Promise((resolve, reject) => this.waiting.push({ resolve, reject }));
  }

  /** Ends input (the helpers then clean up and exit) and waits for the exit. */
  async end() {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const gone = new Promise((resolve) => this.child.once('exit', resolve));
    this.child.stdin.end();
    const t = setTimeout(() => this.child.kill('SIGKILL'), 10_000);
    await gone;
    clearTimeout(t);
  }
}

/** Median of the numbers in `values` (null, undefined and NaN left out); null when there are none. */
export function median(values) {
  const s = values.filter((x) => typeof x === 'number' && !Number.isNaN(x)).sort((a, b) => a - b);
  if (s.length === 0) return null;
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

/** A number for a results table, with `digits` decimals; 'n/a' for a value that was not measured. */
export function fmt(x, digits = 1) {
  return x === null || x === undefined || Number.isNaN(x) ? 'n/a' : x.toFixed(digits);
}

/** Nearest-rank percentile of a sorted array. */
export function percentile(sorted, p) {
  if (sorted.length === 0) return NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1];
}

/** Summary of samples in nanoseconds, reported in microseconds. */
export function summarize(samplesNs) {
  const s = Float64Array.from(samplesNs).sort();
  const us = (x) => x / 1000;
  const mean = s.reduce((a, b) => a + b, 0) / s.length;
  return {
    n: s.length,
    p50: us(percentile(s, 50)),
    p90: us(percentile(s, 90)),
    p99: us(percentile(s, 99)),
    min: us(s[0]),
    max: us(s[s.length - 1]),
    mean: us(mean),
  };
}

/** Fisher–Yates, in place. */
export function shuffle(a) {
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a;
}

/** Runs a bench script as its own Node process; it prints progress on stderr and one JSON document on stdout. */
export function runScript(script, args = [], options = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...(options.nodeArgs ?? []), join(BENCH, script), ...args], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (d) => (out += d));
    child.on('exit', (code, signal) => {
      if (code !== 0) return reject(new Error(`${script} failed (${code ?? signal})`));
      try {
        resolve(JSON.parse(out));
      } catch (err) {
        reject(new Error(`${script} printed no JSON: ${err.message}`));
      }
    });
  });
}

/**
 * Replaces the marked sections `names` of RESULTS.md (`<!-- section:<name> -->` to `<!-- /section:<name> -->`)
 * with `lines`, where the first of them stood; new sections go before the closing '## Verdict' (not a section's
 * own '### Verdict'), or at the end.
 */
export function spliceSections(names, lines) {
  const file = join(BENCH, 'RESULTS.md');
  let text = readFileSync(file, 'utf8');
  let at = -1;
  for (const name of names) {
    const re = new RegExp(`<!-- section:${name} -->[\\s\\S]*?<!-- /section:${name} -->\\n*`);
    const m = re.exec(text);
    if (!m) continue;
    if (at < 0 || m.index < at) at = m.index;
    text = text.slice(0, m.index) + text.slice(m.index + m[0].length);
  }
  if (at < 0) at = text.search(/^## Verdict$/m);
  const block = lines.join('\n');
  text = at >= 0 ? `${text.slice(0, at)}${block}\n\n${text.slice(at)}` : `${text}\n${block}\n`;
  writeFileSync(file, text);
}
