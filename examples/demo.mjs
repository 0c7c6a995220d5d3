// `npm start`: a tour of the library on real processes, with the timings it saw.
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { once } from 'node:events';
import { PidFd, capabilities } from '../dist/index.js';

const ms = (t0) => `${(Number(process.hrtime.bigint() - t0) / 1e6).toFixed(3)} ms`;
const line = (s = '') => console.log(s);

function rssAnonKiB(pid) {
  try {
    const m = /RssAnon:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : 0; // a process whose memory is gone has no RssAnon line
  } catch {
    return 0;
  }
}

line('pidfd demo: Linux process file descriptors for Node.js');
line(`kernel ${readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim()}, node ${process.version}`);
line();
line('1. What this kernel supports (probed, not guessed from the version):');
for (const [name, ok] of Object.entries(capabilities())) line(`   ${ok ? 'yes' : 'NO '}  ${name}`);

line();
line('2. A child: open a pidfd, SIGTERM it, await its exit.');
{
  const child = spawn('sleep', ['60']);
  const p = PidFd.fromChild(child);
  const nodeExit = once(child, 'exit');
  const t0 = process.hrtime.bigint();
  p.kill('SIGTERM');
  const info = await p.waitExit();
  line(`   waitExit -> ${JSON.stringify(info)} after ${ms(t0)}`);
  const [code, signal] = await nodeExit;
  line(`   child_process still reports it too: 'exit' (${code}, ${signal}) after ${ms(t0)}`);
  line(`   kill() again -> ${p.kill()} (the process is gone; no signal can reach whoever gets pid ${p.pid} next)`);
  p.close();
}

line();
line('3. Not our child: a grandchild started by a shell, reaped by the shell, exit code 7.');
{
  const sh = spawn('sh', ['-c', 'sh -c "sleep 0.2; exit 7" & echo $!; wait'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const [data] = await once(sh.stdout, 'data');
  const p = PidFd.open(Number(String(data).trim()));
  const t0 = process.hrtime.bigint();
  const info = await p.waitExit();
  line(`   waitExit -> ${JSON.stringify(info)} (${ms(t0)} of waiting; kill(pid, 0) polling cannot tell you the code)`);
  p.close();
}

line();
line('4. A deadline: waitExit({ timeout }) and AbortSignal.');
{
  const child = spawn('sleep', ['60']);
  const p = PidFd.fromChild(child);
  const t0 = process.hrtime.bigint();
  await p.waitExit({ timeout: 50 }).catch((e) => line(`   timeout: rejected with ${e.code} after ${ms(t0)}`));
  const ac = new AbortController();
  setTimeout(() => ac.abort(), 20);
  await p.waitExit({ signal: ac.signal }).catch((e) => line(`   abort:   rejected with ${e.name} (${e.code})`));
  p.kill('SIGKILL');
  await p.waitExit();
  p.close();
}

line();
line('5. Memory back at once: SIGKILL + release() (process_mrelease) on a child holding 512 MiB.');
line('   Without release() the memory is freed by the victim itself while it exits; with it, by us, before the');
line('   call returns. (RSS in /proc reads 0 as soon as the dying process drops its mm, long before the pages are');
line('   freed, so it cannot tell the difference: `npm run bench` measures the memory cgroup instead.)');
for (const useRelease of [false, true]) {
  const child = spawn(
    process.execPath,
    [
      '-e',
      `
    const b = Buffer.alloc(512 * 1024 * 1024, 1); // touched: 512 MiB resident
    process.stdout.write('ready');
    setInterval(() => b[0]++, 1000);`,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  await once(child.stdout, 'data');
  const p = PidFd.fromChild(child);
  const before = rssAnonKiB(p.pid);
  const t0 = process.hrtime.bigint();
  p.kill('SIGKILL');
  if (useRelease) {
    const released = p.release();
    line(
      `   with release():    ${(before / 1024).toFixed(0)} MiB; ` +
        `release() returned ${released} ${ms(t0)} after the kill` +
        (released ? ' (memory freed by then)' : ' (the victim was already gone)'),
    );
  }
  await p.waitExit();
  line(`   ${useRelease ? 'with release():   ' : 'without release():'} process fully exited ${ms(t0)} after the kill`);
  p.close();
}

line();
line('6. Many at once: 200 processes, 1,000 waits, one native watcher, no timers.');
{
  const kids = Array.from({ length: 200 }, () => spawn('sleep', ['60'], { stdio: 'ignore' }));
  const fds = kids.map((c) => PidFd.fromChild(c));
  const waits = fds.flatMap((p) => Array.from({ length: 5 }, () => p.waitExit()));
  const t0 = process.hrtime.bigint();
  for (const p of fds) p.kill('SIGKILL');
  const infos = await Promise.all(waits);
  line(`   ${infos.length} waits resolved, all SIGKILL: ${infos.every((i) => i.signal === 'SIGKILL')}, in ${ms(t0)}`);
  for (const p of fds) p.close();
}
// The toolkit and the low-memory killer have demos of their own; they run here in turn, each as its own process
// (each starts and cleans up real processes, and the killer builds a memory cgroup of its own).
for (const [title, file] of [
  ['7. A supervisor: terminate, killTree, ExitWatcher, identity (examples/supervisor.mjs)', 'supervisor.mjs'],
  ['8. The low-memory killer under a memory budget, with and without release() (examples/lmk.mjs)', 'lmk.mjs'],
]) {
  line();
  line(`${title}`);
  line('-'.repeat(title.length));
  const r = spawnSync(process.execPath, [new URL(file, import.meta.url).pathname], { stdio: 'inherit' });
  if (r.status !== 0) line(`   (${file} ended with ${r.status ?? r.signal})`);
}
line();
line('Done. `npm test` runs the test suite; `npm run bench` measures latency against the kernel floor.');
