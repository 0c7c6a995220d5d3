// PIDFD_GET_INFO, pidfd_getfd and signals with a value: info() on ourselves, a child and a reaped
// process (with its exit status), a working close-on-exec copy of a child's fd, and si_value as the target sees it.
import t from 'tap';
import { ChildProcess, spawn } from 'node:child_process';
import {
  closeSync,
  fstatSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readSync,
  rmSync,
  statSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { capabilities, PidFd } from '../../lib/index';
import { exited, fixture, sleeper, track } from '../helpers/procs';

const dir = mkdtempSync(join(tmpdir(), 'pidfd-info-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

/** Lines of a stream, one at a time. */
function lineReader(stream: Readable): () => Promise<string> {
  let buf = '';
  const lines: string[] = [];
  const waiting: ((line: string) => void)[] = [];
  stream.setEncoding('utf8');
  stream.on('data', (d: string) => {
    buf += d;
    let i: number;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      const w = waiting.shift();
      if (w) w(line);
      else lines.push(line);
    }
  });
  return () => {
    const line = lines.shift();
    return line !== undefined ? Promise.resolve(line) : new Promise((resolve) => waiting.push(resolve));
  };
}

/** Pid, PPid, Tgid and the four uids and gids from /proc/<pid>/status. */
function status(pid: number | 'self'): Record<string, number> {
  const text = readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (name: string): number[] =>
    new RegExp(`^${name}:\\s+(.*)$`, 'm').exec(text)![1].trim().split(/\s+/).map(Number);
  const [ruid, euid, suid, fsuid] = field('Uid');
  const [rgid, egid, sgid, fsgid] = field('Gid');
  return {
    pid: field('Pid')[0],
    tgid: field('Tgid')[0],
    ppid: field('PPid')[0],
    ruid,
    euid,
    suid,
    fsuid,
    rgid,
    egid,
    sgid,
    fsgid,
  };
}

/** The inode number of the process's cgroup v2 directory (which is its cgroup id), if cgroup2 is mounted. */
function cgroupInode(pid: number | 'self'): bigint | undefined {
  const line = readFileSync(`/proc/${pid}/cgroup`, 'utf8')
    .split('\n')
    .find((l) => l.startsWith('0::'));
  const mount = readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .find((l) => / - cgroup2 /.test(l));
  if (line === undefined || mount === undefined) return undefined;
  return statSync(join(mount.split(' ')[4], line.slice(3)), { bigint: true }).ino;
}

const ID_FIELDS = ['pid', 'tgid', 'ppid', 'ruid', 'euid', 'suid', 'fsuid', 'rgid', 'egid', 'sgid', 'fsgid'];

t.test('info() on this process matches /proc/self/status', async (t) => {
  const p = PidFd.open(process.pid);
  const info = p.info();
  const want = status('self');
  for (const f of ID_FIELDS) t.equal(info[f as keyof typeof info], want[f], f);
  t.equal(info.pid, process.pid);
  t.equal(info.ppid, process.ppid);
  t.equal(typeof info.cgroupId, 'bigint', 'cgroupId is a bigint');
  const ino = cgroupInode('self');
  if (ino !== undefined) t.equal(info.cgroupId, ino, 'cgroupId is the inode of our cgroup v2 directory');
  t.equal(info.exit, undefined, 'no exit status while running');
  p.close();
  t.throws(() => p.info(), { code: 'ERR_PIDFD_CLOSED' }, 'closed');
});

t.test('info() on a child running under other ids', async (t) => {
  const child = sleeper(1000, { uid: 65534, gid: 65534 });
  const p = PidFd.fromChild(child);
  const info = p.info();
  const want = status(child.pid!);
  for (const f of ID_FIELDS) t.equal(info[f as keyof typeof info], want[f], f);
  t.equal(info.ppid, process.pid, 'we are its parent');
  t.equal(info.euid, 65534, 'its own uid, not ours');
  t.equal(info.egid, 65534);
  t.equal(typeof info.cgroupId, 'bigint');
  t.equal(info.exit, undefined);
  p.close();
  child.kill('SIGKILL');
  await exited(child);
});

t.test('info() on reaped children: the exit status', async (t) => {
  const supported = capabilities().pidfdInfoExit;
  const cases: [string, () => ChildProcess, (c: ChildProcess) => void, object][] = [
    [
      'exit code 7',
      () => spawn('sh', ['-c', 'read x; exit 7'], { stdio: ['pipe', 'ignore', 'ignore'] }),
      (c) => c.stdin!.end('go\n'),
      { code: 7, signal: null },
    ],
    [
      'exit code 0',
      () => spawn('sh', ['-c', 'read x; exit 0'], { stdio: ['pipe', 'ignore', 'ignore'] }),
      (c) => c.stdin!.end('go\n'),
      { code: 0, signal: null },
    ],
    ['killed by SIGKILL', () => sleeper(), (c) => c.kill('SIGKILL'), { code: null, signal: 'SIGKILL' }],
    ['killed by SIGTERM', () => sleeper(), (c) => c.kill('SIGTERM'), { code: null, signal: 'SIGTERM' }],
  ];
  for (const [name, make, end, want] of cases) {
    const child = track(make());
    const p = PidFd.fromChild(child);
    t.equal(p.info().exit, undefined, `${name}: none while it runs`);
    end(child);
    await exited(child); // Node has reaped it
    const info = p.info();
    t.equal(info.pid, child.pid, `${name}: pid`);
    if (supported) {
      t.same(info.exit, want, `${name}: exit status from the kernel`);
      t.equal(info.ppid, undefined, `${name}: a reaped process has no ids`);
      t.equal(info.euid, undefined);
    } else {
      t.equal(info.exit, undefined, `${name}: this kernel keeps no exit status (PIDFD_INFO_EXIT)`);
    }
    p.close();
  }
});

t.test('info() on a non-child: running, zombie (no status yet), reaped by its parent', async (t) => {
  const parent = track(spawn(fixture('info-reaper'), [], { stdio: ['pipe', 'pipe', 'inherit'] }));
  const next = lineReader(parent.stdout!);
  const gpid = Number(/^child (\d+)$/.exec(await next())![1]);
  const p = PidFd.open(gpid);
  const running = p.info();
  t.equal(running.pid, gpid);
  t.equal(running.ppid, parent.pid, 'its parent is the fixture, not us');
  t.same(running.ppid, status(gpid).ppid);
  t.equal(running.exit, undefined);

  parent.stdin!.write('exit 9\n');
  const waited = await p.waitExit(); // a zombie of another parent: exited, status not known yet
  t.equal(waited.source, 'none', 'not our child and not reaped: the kernel cannot tell yet');
  t.equal(p.exited, true);
  const zombie = p.info();
  t.equal(zombie.ppid, parent.pid, 'a zombie still has its ids');
  t.equal(zombie.exit, undefined, 'but no exit status until it is reaped');

  parent.stdin!.write('reap\n');
  t.equal(await next(), `reaped ${9 << 8}`, 'the fixture reaped it: exit code 9');
  const reaped = p.info();
  if (capabilities().pidfdInfoExit) {
    t.same(reaped.exit, { code: 9, signal: null }, 'exit status of a process we never parented');
    t.same(await p.waitExit(), { pid: gpid, code: 9, signal: null, source: 'pidfd-info' });
  } else {
    t.equal(reaped.exit, undefined);
  }
  p.close();
  parent.stdin!.end();
  await exited(parent);
});

t.test('getfd returns a working, close-on-exec copy of a child fd', async (t) => {
  const file = join(dir, 'shared');
  const fd = openSync(file, 'w+');
  const child = sleeper(1000, { stdio: ['ignore', 'pipe', 'ignore', fd] }); // the file is the child's fd 3
  closeSync(fd); // now only the child has it open
  const p = PidFd.fromChild(child);

  const copy = p.getfd(3);
  t.ok(Number.isInteger(copy) && copy >= 0, 'an fd number');
  const a = fstatSync(copy);
  const b = statSync(file);
  t.equal(a.ino, b.ino, 'same inode as the file');
  t.equal(a.dev, b.dev, 'same device');
  t.equal(writeSync(copy, 'hello'), 5, 'writable through the copy');
  t.equal(readFileSync(file, 'utf8'), 'hello', 'the write reached the file');
  t.match(
    readFileSync(`/proc/${child.pid}/fdinfo/3`, 'utf8'),
    /^pos:\s+5$/m,
    "one open file description: the child's file offset moved with our write",
  );
  const flags = parseInt(/^flags:\s+([0-7]+)$/m.exec(readFileSync(`/proc/self/fdinfo/${copy}`, 'utf8'))![1], 8);
  t.ok(flags & 0o2000000, 'O_CLOEXEC is set on the copy');
  const buf = Buffer.alloc(5);
  t.equal(readSync(copy, buf, 0, 5, 0), 5);
  t.equal(buf.toString(), 'hello', 'readable through the copy');
  closeSync(copy);
  t.ok(statSync(`/proc/${child.pid}/fd/3`).isFile(), "closing our copy leaves the child's fd open");

  // The child's stdout is a socket to child.stdout here: writing into the copy of its fd 1 comes out there.
  const out = p.getfd(1);
  const got = new Promise<string>((resolve) => child.stdout!.once('data', (d: Buffer) => resolve(d.toString())));
  writeSync(out, 'through the copy');
  t.equal(await got, 'through the copy', "a write through the copy of the child's stdout arrives on child.stdout");
  closeSync(out);

  t.throws(
    () => p.getfd(999),
    { code: 'EBADF', errno: -9, syscall: 'pidfd_getfd', message: /^EBADF: / },
    'an fd the child does not have',
  );
  child.kill('SIGKILL');
  await exited(child);
  t.throws(() => p.getfd(3), { code: 'ESRCH', syscall: 'pidfd_getfd' }, 'the child is gone');
  p.close();
  t.throws(() => p.getfd(3), { code: 'ERR_PIDFD_CLOSED' }, 'closed');
});

t.test('kill(sig, { value }) delivers the value: the target reads it from si_value', async (t) => {
  const SI_USER = 0;
  const SI_QUEUE = -1;
  const child = track(spawn(fixture('info-sigwait'), [], { stdio: ['ignore', 'pipe', 'inherit'] }));
  const next = lineReader(child.stdout!);
  t.equal(await next(), 'ready');
  const p = PidFd.fromChild(child);
  const report = async (): Promise<{ signo: number; code: number; value: number; pid: number; uid: number }> => {
    const [signo, code, value, pid, uid] = (await next()).split(' ').map(Number);
    return { signo, code, value, pid, uid };
  };
  const uid = process.getuid!();

  for (const value of [42, 0, -1, -123456, 2 ** 31 - 1, -(2 ** 31)]) {
    t.equal(p.kill('SIGUSR1', { value }), true);
    t.same(await report(), { signo: 10, code: SI_QUEUE, value, pid: process.pid, uid }, `SIGUSR1 with value ${value}`);
  }
  t.equal(p.kill(12, { value: 7 }), true, 'a signal number');
  t.same(await report(), { signo: 12, code: SI_QUEUE, value: 7, pid: process.pid, uid }, 'SIGUSR2 by number');

  // Real-time signals queue: every value arrives, in order.
  for (const value of [1, 2, 3]) t.equal(p.kill(40, { value }), true);
  for (const value of [1, 2, 3]) {
    t.same(
      await report(),
      { signo: 40, code: SI_QUEUE, value, pid: process.pid, uid },
      `real-time signal, value ${value}`,
    );
  }

  t.equal(p.kill('SIGUSR2'), true);
  const plain = await report();
  t.same(
    { signo: plain.signo, code: plain.code, pid: plain.pid },
    { signo: 12, code: SI_USER, pid: process.pid },
    'without a value: an ordinary kill (SI_USER) from us',
  );

  t.equal(p.kill('SIGKILL'), true);
  t.same(await p.waitExit(), { pid: child.pid, code: null, signal: 'SIGKILL', source: 'waitid' });
  t.equal(p.kill('SIGUSR1', { value: 1 }), false, 'exited: false, nothing sent');
  await exited(child);
  t.equal(p.kill('SIGUSR1', { value: 1 }), false, 'reaped: false');
  p.close();
});
