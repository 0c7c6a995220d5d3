// One N-API build serves every Node version: the shipped linux-x64 prebuild, built once, is loaded by the Node that
// runs this test (CI runs the suite on Node 20, 22, 24 and 26) and drives a real child to its end. CI passes the
// prebuild's sha256 from its one prebuildify step in PIDFD_PREBUILD_SHA256, so every version's run proves it used
// the very same file.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ensureDist } from '../helpers/dist';
import { RELEASE, ROOT, ensurePrebuild, prebuildPath } from '../helpers/prebuilds';

// A consumer in a child process, with node-gyp-build limited to prebuilds/ (PREBUILDS_ONLY: build/Release, the
// addon compiled for this checkout, is ignored).
const SCRIPT = `
const { spawn } = require('node:child_process');
const { readFileSync } = require('node:fs');
const { PidFd, capabilities } = require(${JSON.stringify(join(ROOT, 'dist', 'index.js'))});
const mapped = [...new Set(readFileSync('/proc/self/maps', 'utf8').split('\\n')
  .map((l) => l.slice(l.indexOf('/'))).filter((p) => p.startsWith('/') && p.endsWith('.node')))];
const child = spawn('sleep', ['1000'], { stdio: 'ignore' });
child.once('spawn', async () => {
  const p = PidFd.fromChild(child);
  const sent = p.kill('SIGKILL');
  const exit = await p.waitExit({ timeout: 20000 });
  p.close();
  console.log(JSON.stringify({ version: process.version, napi: process.versions.napi, modules: process.versions.modules,
    mapped, sent, exit, caps: capabilities() }));
});
`;

t.test(`the linux-x64 prebuild runs on Node ${process.version}`, async (tt) => {
  const stale = ensureDist();
  if (stale) return tt.fail(stale);
  const why = ensurePrebuild('x64');
  if (why) return tt.fail(why);
  const prebuild = prebuildPath('x64');
  const sha256 = createHash('sha256').update(readFileSync(prebuild)).digest('hex');
  const expected = process.env.PIDFD_PREBUILD_SHA256;
  if (expected) tt.equal(sha256, expected, `the prebuild is the one CI built once (sha256 ${sha256.slice(0, 16)}...)`);
  else tt.comment(`prebuild sha256 ${sha256} (CI compares it across Node versions)`);

  const r = spawnSync(process.execPath, ['-e', SCRIPT], {
    encoding: 'utf8',
    timeout: 60_000,
    env: { ...process.env, PREBUILDS_ONLY: '1', NODE_OPTIONS: '' },
  });
  if (!tt.equal(r.status, 0, 'the consumer ran', { stderr: r.stderr })) return;
  const report = JSON.parse(r.stdout.trim().split('\n').pop() as string);
  tt.equal(
    report.version,
    process.version,
    `it ran on Node ${report.version} (ABI ${report.modules}, N-API ${report.napi})`,
  );
  tt.ok(Number(report.napi) >= 8, 'this Node offers N-API 8, the version the addon is built for');
  tt.same(report.mapped, [prebuild], 'the one addon mapped is prebuilds/linux-x64/pidfd.glibc.node');
  tt.equal(report.sent, true, 'kill() reached the live child');
  tt.equal(report.exit.signal, 'SIGKILL', 'waitExit() saw it die of SIGKILL');
  tt.equal(report.exit.source, 'waitid', 'the status came from waitid on the pidfd');
  tt.equal(report.caps.pidfdOpen, true, 'capabilities() probed the kernel');
});

// The other versions are other runs of the whole suite, which only a release run makes.
if (!RELEASE) {
  t.skip(
    'not run: the same prebuild on the other supported Node versions (.ci/run runs the whole suite on Node 20, ' +
      '22, 24 and 26, fetched from the npm registry)',
    () => {},
  );
}
