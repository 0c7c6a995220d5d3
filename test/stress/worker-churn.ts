// Worker threads under churn: 8 workers open, wait on and close PidFds in a loop while the main thread keeps
// terminating and replacing them. No crash, no error, no fd left behind. Runs in a child process, so an abort
// there fails these assertions instead of killing the runner.
import t from 'tap';
import { join } from 'node:path';
import { ensureDist } from '../helpers/dist';
import { runNode, sleeper } from '../helpers/procs';

const SECONDS = 8;

t.test(`8 workers churned for ${SECONDS} s`, async (t) => {
  t.equal(ensureDist(), undefined);
  const target = sleeper();
  t.teardown(() => target.kill('SIGKILL'));
  // Plain Node: the test runner's hooks load files in every worker, and a worker terminated while Node reads one
  // leaves that fd open (Node's behaviour, not this package's).
  const r = await runNode([join(__dirname, '..', 'fixtures', 'worker-churn.js'), String(SECONDS), String(target.pid)]);
  t.equal(r.signal, null, `no crash (${r.stderr.slice(-2000)})`);
  t.equal(r.code, 0, 'the process exits by itself with status 0');
  const report = JSON.parse(r.stdout);
  t.same(report.errors, [], 'no worker reported an error');
  t.ok(report.terminated >= 20, `${report.terminated} workers terminated mid-work`);
  t.ok(report.cycles > 0, `${report.cycles} open/wait/close cycles completed in workers`);
  const kinds = (list: string[]) => list.reduce<Record<string, number>>((m, k) => ((m[k] = (m[k] ?? 0) + 1), m), {});
  const before = kinds(report.before);
  const after = kinds(report.after);
  t.equal(after['anon_inode:[pidfd]'] ?? 0, 0, 'no pidfd left open');
  t.equal(after['anon_inode:[eventpoll]'], before['anon_inode:[eventpoll]'], "every worker's watcher epoll set closed");
  t.same(after, before, `fd table unchanged: ${JSON.stringify(before)} -> ${JSON.stringify(after)}`);
  t.comment(
    `worker churn: ${report.started} workers started, ${report.terminated} terminated, ${report.cycles} cycles, ` +
      `fds ${report.before.length} -> ${report.after.length}`,
  );
});
