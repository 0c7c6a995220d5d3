// The status socket over real unix sockets: one JSON document per connection, the socket file's mode, a stale
// socket (its server SIGKILLed in a child process) replaced, a live one or a plain file never, the file removed on
// close; the client's errors as Node system errors.
import t from 'tap';
import { spawn } from 'node:child_process';
import { existsSync, lstatSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { queryStatus, serveStatus } from '../../lib/service/status';
import { Lines } from '../helpers/lines';
import { exited, track } from '../helpers/procs';

const dir = mkdtempSync(join(tmpdir(), 'pidfd-status-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
const sockPath = (): string => join(dir, `s${++n}.sock`);

t.test('one document per connection, mode 0600, removed on close', async (t) => {
  const path = sockPath();
  let asked = 0;
  const server = await serveStatus(path, async () => ({ asked: ++asked, pid: process.pid }));
  const st = lstatSync(path);
  t.ok(st.isSocket(), 'a socket file');
  t.equal(st.mode & 0o777, 0o600, 'mode 0600');
  t.same(await queryStatus(path, 5000), { asked: 1, pid: process.pid });
  t.same(await queryStatus(path), { asked: 2, pid: process.pid }, 'the provider is asked again for each');
  await new Promise((r) => server.close(r));
  t.notOk(existsSync(path), 'the socket file is gone after close');
  await t.rejects(queryStatus(path), {
    code: 'ENOENT',
    syscall: 'connect',
    message: new RegExp(`ENOENT: .*connect \\(no status socket at ${path}`),
  });
});

t.test('mode 0660 on request; a plain object provider', async (t) => {
  const path = sockPath();
  const server = await serveStatus(path, () => ({ ok: true }), { mode: 0o660 });
  t.teardown(() => void server.close());
  t.equal(lstatSync(path).mode & 0o777, 0o660);
  t.same(await queryStatus(path), { ok: true });
});

t.test('a provider that fails: the client rejects with its message', async (t) => {
  const path = sockPath();
  const server = await serveStatus(path, () => {
    throw Object.assign(new Error('candidates unreadable'), { code: 'EACCES' });
  });
  t.teardown(() => void server.close());
  await t.rejects(queryStatus(path), {
    code: 'ERR_PIDFD_STATUS',
    message: `the status server at ${path} failed: candidates unreadable (EACCES)`,
  });
  const bad = sockPath();
  const s2 = await serveStatus(bad, () => 42 as unknown as object);
  t.teardown(() => void s2.close());
  await t.rejects(queryStatus(bad), { code: 'ERR_PIDFD_STATUS', message: /must return an object/ });
});

t.test('a server in a child process; SIGKILLed, its stale socket is refused, then replaced', async (t) => {
  const path = sockPath();
  const mod = JSON.stringify(join(__dirname, '..', '..', 'lib', 'service', 'status.ts'));
  const loader = process.execArgv.filter((a) => a.includes('@tapjs/typescript'));
  const script = `
    require(${mod}).serveStatus(process.argv[1], () => ({ server: process.pid, config: { 'kill-mode': 'tree' } }))
      .then(() => console.log('listening'), (e) => { console.error(e); process.exit(1); });`;
  const child = track(
    spawn(process.execPath, [...loader, '-e', script, path], { stdio: ['ignore', 'pipe', 'inherit'] }),
  );
  await new Lines(child.stdout!).waitFor((l) => l === 'listening', 'the child serving');
  t.same(await queryStatus(path), { server: child.pid, config: { 'kill-mode': 'tree' } }, 'the child answers');
  await t.rejects(
    serveStatus(path, () => ({})),
    { code: 'EADDRINUSE' },
    'a live server is not replaced',
  );
  child.kill('SIGKILL');
  t.same(await exited(child), [null, 'SIGKILL']);
  t.ok(lstatSync(path).isSocket(), 'its socket file is left behind');
  await t.rejects(queryStatus(path), {
    code: 'ECONNREFUSED',
    errno: -111,
    syscall: 'connect',
    address: path,
    message: /nothing listens on/,
  });
  const server = await serveStatus(path, () => ({ server: process.pid }));
  t.teardown(() => void server.close());
  t.same(await queryStatus(path), { server: process.pid }, 'the stale socket was replaced');
});

t.test('a path that is not a socket is left alone', async (t) => {
  const path = sockPath();
  writeFileSync(path, 'keep me');
  await t.rejects(
    serveStatus(path, () => ({})),
    { code: 'EEXIST', message: /is not a socket: it is left alone/ },
  );
  t.equal(readFileSync(path, 'utf8'), 'keep me');
  await t.rejects(queryStatus(path), { code: 'ECONNREFUSED' });
});

t.test('a server that never answers: ETIMEDOUT', async (t) => {
  const path = sockPath();
  const mute = createServer(() => {});
  await new Promise<void>((r) => mute.listen(path, r));
  t.teardown(() => void mute.close());
  await t.rejects(queryStatus(path, 200), {
    code: 'ETIMEDOUT',
    message: new RegExp(`no status from ${path} within 200 ms`),
  });
});

t.test('bad input', async (t) => {
  t.throws(() => void queryStatus(''), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' });
  t.throws(() => void queryStatus(sockPath(), 0), { name: 'RangeError', code: 'ERR_OUT_OF_RANGE' });
  await t.rejects(serveStatus(sockPath(), 'x' as never), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' });
  await t.rejects(
    serveStatus(sockPath(), () => ({}), { mode: 0o644 as never }),
    {
      name: 'TypeError',
      code: 'ERR_INVALID_ARG_VALUE',
      message: /'options.mode' must be 0o600 or 0o660/,
    },
  );
});
