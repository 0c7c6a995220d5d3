// A small supervisor built on the process-manager toolkit: it starts three workers (one exits cleanly on
// SIGTERM, one ignores SIGTERM, one forks a tree of processes), watches them all with one ExitWatcher, records
// their identities in a pid file, stops them with terminate() and killTree(), and prints what happened and how
// long each step took.
//
//   node examples/supervisor.mjs        (after `npm run build`; `npm start` runs it as part of the demo)
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ExitWatcher, PidFd, killTree, terminate } from '../dist/index.js';

const ms = (x) => `${x.toFixed(1)} ms`;
const since = (t0) => ms(performance.now() - t0);
const how = (exit) =>
  exit.signal
    ? `killed by ${exit.signal}`
    : exit.code !== null
      ? `exited with code ${exit.code}`
      : 'exited (status unknown until whoever adopted it reaps it)';
const say = (s = '') => console.log(s);

// Each worker prints "ready" once its signal handling is set up.
const workers = {
  polite: [
    process.execPath,
    [
      '-e',
      "process.on('SIGTERM', () => { console.log('  [polite] SIGTERM: cleaning up, exit 0'); process.exit(0); }); " +
        "console.log('ready'); setInterval(() => {}, 1000)",
    ],
  ],
  stubborn: [
    process.execPath,
    [
      '-e',
      "process.on('SIGTERM', () => console.log('  [stubborn] SIGTERM? no.')); " +
        "console.log('ready'); setInterval(() => {}, 1000)",
    ],
  ],
  forker: ['sh', ['-c', 'sleep 1000 & sh -c "sleep 1000 & sleep 1000 & wait" & echo ready; wait']],
};

say('supervisor: the pidfd process-manager toolkit on real processes');
say();
const watcher = new ExitWatcher();
watcher.on('exit', (info) => say(`  (watcher) ${info.pid} ${how(info)}`));

say('1. Start three workers, take a pidfd for each, watch them all on one native watcher.');
const started = {};
for (const [name, [cmd, args]] of Object.entries(workers)) {
  const t0 = performance.now();
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  const p = PidFd.fromChild(child); // race-free: Node has not reaped it yet
  watcher.add(p);
  started[name] = { child, p };
  await new Promise((resolve) => {
    child.stdout.setEncoding('utf8').on('data', (d) => {
      for (const line of d.split('\n')) {
        if (line === 'ready') resolve();
        else if (line !== '') say(line);
      }
    });
  });
  say(`   ${name.padEnd(8)} pid ${child.pid}, id ${p.id}, ready after ${since(t0)}`);
}
await new Promise((r) => setTimeout(r, 50)); // the forker's grandchildren

say();
say('2. Write a pid file that survives a supervisor restart, then adopt from it.');
const dir = mkdtempSync(join(tmpdir(), 'pidfd-supervisor-'));
const pidFile = join(dir, 'polite.pid');
writeFileSync(pidFile, `${started.polite.p.identity()}\n`);
say(`   ${pidFile}: ${readFileSync(pidFile, 'utf8').trim()}`);
{
  const t0 = performance.now();
  const again = PidFd.adopt(readFileSync(pidFile, 'utf8'));
  say(`   PidFd.adopt -> pid ${again.pid}, same process: ${again.id === started.polite.p.id} (${since(t0)})`);
  again.close();
}

say();
say('3. terminate() the polite worker: SIGTERM, and it exits on its own.');
{
  const r = await terminate(started.polite.p, { timeout: 2000 });
  say(`   signals ${r.signals.join(', ')} -> ${how(r.exit)}, escalated: ${r.escalated}, in ${ms(r.elapsedMs)}`);
}

say();
say('4. terminate() the stubborn worker with a 500 ms grace: SIGKILL after the grace, then process_mrelease.');
{
  const r = await terminate(started.stubborn.p, { timeout: 500 });
  say(
    `   signals ${r.signals.join(', ')} -> ${how(r.exit)}, ` +
      `escalated: ${r.escalated}, released: ${r.released}, in ${ms(r.elapsedMs)}`,
  );
}

say();
say('5. killTree() the forking worker: stop the tree, walk it, SIGTERM all, wait.');
{
  const r = await killTree(started.forker.p, { timeout: 2000 });
  for (const m of r.processes) {
    say(
      `   ${String(m.pid).padStart(7)} ${m.parent === null ? 'root     ' : `under ${m.parent}`}  ` +
        `${m.signals.join(',').padEnd(24)} ${how(m.exit)}`,
    );
  }
  say(`   ${r.processes.length} processes gone in ${ms(r.elapsedMs)}`);
}

say();
say('6. The pid file after the worker is gone: adopt refuses, it never hands back a stranger.');
try {
  PidFd.adopt(readFileSync(pidFile, 'utf8')).close();
  say('   adopted?! (this should not happen)');
} catch (err) {
  say(`   PidFd.adopt threw ${err.code}: ${err.message}`);
}

await new Promise((r) => setImmediate(r));
say();
say(`watcher: ${watcher.size} still watched`);
watcher.close();
for (const { p } of Object.values(started)) p.close();
rmSync(dir, { recursive: true, force: true });
