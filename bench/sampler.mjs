// CPU cost of sampling /proc/meminfo every 10 ms for a whole window, one fresh process per mechanism, interleaved
// over several trials:
//   idle       an idle Node process, for reference
//   sampler    one native threshold sampler (lib/sampler.ts) at minMs = maxMs = 10 ms whose bound never holds:
//              the helper thread samples, JS never wakes
//   interval   a bare setInterval(fn, 10) (fn does nothing): the floor of any JS-timer sampler
//   jsread     setInterval + readFileSync('/proc/meminfo') each tick: a JS sampler
//   floor      a C loop of pread + nanosleep(10 ms), as many samples as the window holds
// Each Node process measures its own process.cpuUsage() (every thread) over the window, after loading.
//
//   node bench/sampler.mjs [seconds] [trials]      (default 10 s, 5 trials): a table on stderr, JSON on stdout
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { compile, fmt, loadPackage, median, require } from './lib.mjs';

const MODES = ['idle', 'sampler', 'interval', 'jsread', 'floor'];

/** The measured process: argv `measure <mode> <seconds>`; prints the CPU ms of the window. */
function measure(mode, seconds) {
  if (mode === 'sampler') {
    loadPackage(); // fails with a hint if dist/ is missing
    const { ThresholdSampler } = require('../dist/sampler.js');
    new ThresholdSampler({
      path: '/proc/meminfo',
      key: 'MemAvailable:',
      scale: 1024,
      op: 'below',
      bound: 0,
      minMs: 10,
      maxMs: 10,
    }).start();
  } else if (mode === 'interval') {
    setInterval(() => {}, 10);
  } else if (mode === 'jsread') {
    setInterval(() => readFileSync('/proc/meminfo', 'latin1'), 10);
  }
  const start = process.cpuUsage();
  setTimeout(() => {
    const u = process.cpuUsage(start);
    process.stdout.write(`${(u.user + u.system) / 1000}\n`);
    process.exit(0);
  }, seconds * 1000);
}

function run(mode, seconds) {
  return new Promise((resolve, reject) => {
    const args =
      mode === 'floor'
        ? [compile('sampler-floor'), [String(Math.round((seconds * 1000) / 10))]]
        : [process.execPath, [fileURLToPath(import.meta.url), 'measure', mode, String(seconds)]];
    const child = spawn(args[0], args[1], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.on('exit', (code) => (code === 0 ? resolve(Number(out.trim())) : reject(new Error(`${mode}: exit ${code}`))));
  });
}

if (process.argv[2] === 'measure') {
  measure(process.argv[3], Number(process.argv[4]));
} else {
  const seconds = Number(process.argv[2] ?? 10);
  const trials = Number(process.argv[3] ?? 5);
  loadPackage();
  const cpu = Object.fromEntries(MODES.map((m) => [m, []]));
  for (let i = 0; i < trials; i++) {
    for (const mode of MODES) {
      cpu[mode].push(await run(mode, seconds));
      process.stderr.write(`trial ${i + 1}/${trials} ${mode}: ${fmt(cpu[mode].at(-1))} ms\n`);
    }
  }
  process.stderr.write(`\nCPU over ${seconds} s at a 10 ms sampling period (median of ${trials}, min-max):\n`);
  for (const mode of MODES) {
    const v = cpu[mode];
    const pct = (median(v) / (seconds * 1000)) * 100;
    process.stderr.write(
      `  ${mode.padEnd(9)} ${fmt(median(v)).padStart(7)} ms  (${fmt(Math.min(...v))}-${fmt(Math.max(...v))})  ` +
        `${fmt(pct, 2)} % of a core\n`,
    );
  }
  process.stdout.write(`${JSON.stringify({ seconds, trials, cpu })}\n`);
}
