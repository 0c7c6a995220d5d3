// The helper-thread watcher (src/thread.cc), the one every runtime but Node uses, run under Node: the core of the
// suite (test/runtimes/core.mjs, also what Bun and Deno run) with PIDFD_WATCHER=thread, in a child process so an
// abort fails assertions instead of the runner; and the thread really is the path taken.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { ensureDist } from '../helpers/dist';
import { parsePoints } from '../helpers/tap-points';

const CORE = join(__dirname, '..', 'runtimes', 'core.mjs');
const env = { ...process.env, PIDFD_WATCHER: 'thread' };

t.test('the core subset over the helper thread on Node', async (t) => {
  t.equal(ensureDist(), undefined, 'the compiled package (dist/) is up to date with lib/');
  const r = spawnSync(process.execPath, [CORE], { env, encoding: 'utf8', timeout: 240_000 });
  const { points, summary } = parsePoints(r.stdout);
  t.ok(points.length >= 45, `the core script ran its points (${points.length})`);
  for (const p of points) {
    if (p.skip) t.skip(p.name, () => {});
    else t.ok(p.ok, p.name, p.ok ? {} : { diag: p.diag });
  }
  t.match(summary, /fail: 0\b/, 'its summary counts no failure');
  t.equal(r.status, 0, `it exits 0 (signal ${r.signal}) ${r.stderr.slice(-500)}`);
});

t.test("PIDFD_WATCHER=thread starts one helper thread per environment, and exits cleanly with waits unref'd", (t) => {
  const script = `
    const { readdirSync } = require('node:fs');
    const { spawn } = require('node:child_process');
    const { PidFd } = require(${JSON.stringify(join(__dirname, '..', '..', 'dist', 'index.js'))});
    const tasks = () => readdirSync('/proc/self/task').length;
    const before = tasks();
    const c = spawn('sleep', ['30'], { stdio: 'ignore' });
    const p = PidFd.fromChild(c);
    const q = PidFd.open(c.pid);
    p.waitExit();
    q.waitExit({ ref: false });
    const during = tasks();
    p.kill('SIGKILL');
    p.waitExit().then((info) => {
      console.log(JSON.stringify({ before, during, signal: info.signal }));
      q.waitExit({ ref: false }); // must not keep the process alive
    });
  `;
  const r = spawnSync(process.execPath, ['-e', script], { env, encoding: 'utf8', timeout: 30_000 });
  t.equal(r.status, 0, `exits 0 on its own (signal ${r.signal}) ${r.stderr}`);
  const out = JSON.parse(r.stdout.trim() || '{}') as { before?: number; during?: number; signal?: string };
  t.equal(out.during, (out.before ?? NaN) + 1, 'one more thread once the watcher runs');
  t.equal(out.signal, 'SIGKILL', 'and the wait settles through it');
  t.end();
});
