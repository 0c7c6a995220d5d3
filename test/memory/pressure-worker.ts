// PSI triggers in worker threads: each trigger fd has its own libuv poll on the worker's loop, closed by an env
// cleanup hook when the worker is terminated with the trigger armed (a handle closed after the environment is gone
// crashes the process). Runs in a child process so that a crash fails an assertion.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { ensureDist } from '../helpers/dist';

t.test('terminating workers with armed PSI triggers, 20 rounds', async (t) => {
  t.equal(ensureDist(), undefined, 'dist/ is current');
  const r = spawnSync(process.execPath, [join(__dirname, '..', 'fixtures', 'psi-worker-terminate.js'), '20'], {
    encoding: 'utf8',
    env: { ...process.env, NODE_OPTIONS: '' },
    timeout: 60_000,
  });
  t.equal(r.signal, null, `no crash (stderr: ${r.stderr})`);
  t.equal(r.status, 0);
  t.equal(r.stdout.trim(), 'ok 20');
});

t.test("a worker's exit closes none of the main thread's fds after it used a PSI trigger", async (t) => {
  for (const watcher of ['default', 'thread']) {
    const env: NodeJS.ProcessEnv = { ...process.env, NODE_OPTIONS: '' };
    if (watcher === 'thread') env.PIDFD_WATCHER = 'thread';
    const r = spawnSync(process.execPath, [join(__dirname, '..', 'fixtures', 'psi-worker-fds.js')], {
      encoding: 'utf8',
      env,
      timeout: 60_000,
    });
    t.equal(r.status, 0, `${watcher}: exit status 0 (stderr: ${r.stderr})`);
    const out = JSON.parse(r.stdout) as { mode: string; fds: number[]; closed: number[] };
    t.equal(out.mode, 'trigger', `${watcher}: the worker armed a kernel trigger`);
    t.same(out.closed, [], `${watcher}: the main thread's fds ${out.fds.join(', ')} are all still open`);
  }
});
