// Where no prebuild fits. The prebuilds are tagged glibc, so on musl (Alpine) node-gyp-build skips them and the
// install script compiles the addon; when no binary can be loaded at all, the error says what to install.
// node-gyp-build decides musl from LIBC (or /etc/alpine-release), which lets this glibc machine take musl's path.
import t, { type Test } from 'tap';
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureDist } from '../helpers/dist';
import { ROOT, ensurePrebuild, missingTool, which } from '../helpers/prebuilds';

const work = mkdtempSync(join(tmpdir(), 'pidfd-loader-'));
t.teardown(() => rmSync(work, { recursive: true, force: true }));

const stale = ensureDist();

// Prints the load error's code and message, or the mapped addon when it loaded.
const PROBE = `
try {
  const { PidFd } = require(process.argv[1]);
  const p = PidFd.open(process.pid);
  p.close();
  const mapped = require('node:fs').readFileSync('/proc/self/maps', 'utf8').split('\\n')
    .map((l) => l.slice(l.indexOf('/'))).filter((p) => p.endsWith('.node'));
  console.log(JSON.stringify({ loaded: [...new Set(mapped)] }));
} catch (err) {
  console.log(JSON.stringify({ code: err.code, message: err.message, cause: err.cause && err.cause.message }));
}
`;

interface Probe {
  loaded?: string[];
  code?: string;
  message?: string;
  cause?: string;
}

function probe(pkg: string, env: NodeJS.ProcessEnv = {}): Probe {
  const r = spawnSync(process.execPath, ['-e', PROBE, pkg], {
    encoding: 'utf8',
    env: { ...process.env, NODE_OPTIONS: '', LIBC: '', PREBUILDS_ONLY: '', ...env },
  });
  return JSON.parse(r.stdout.trim().split('\n').pop() || '{}') as Probe;
}

/** A copy of the package with dist/ and node-gyp-build, and no native binary unless added. */
function bare(name: string): string {
  const pkg = join(work, name);
  mkdirSync(pkg);
  cpSync(join(ROOT, 'package.json'), join(pkg, 'package.json'));
  cpSync(join(ROOT, 'dist'), join(pkg, 'dist'), { recursive: true });
  mkdirSync(join(pkg, 'node_modules'));
  symlinkSync(join(ROOT, 'node_modules', 'node-gyp-build'), join(pkg, 'node_modules', 'node-gyp-build'));
  return pkg;
}

function commonChecks(tt: Test, p: Probe): void {
  tt.equal(p.code, 'ERR_PIDFD_NATIVE_LOAD', 'ERR_PIDFD_NATIVE_LOAD');
  tt.match(p.message, /npm rebuild pidfd/, 'it says how to rebuild');
  tt.ok(p.cause && p.message?.includes(p.cause.trim()), "the loader's own error is kept (message and cause)");
}

t.test('musl (Alpine): the glibc prebuilds are not used, and the error says what to install', async (tt) => {
  if (stale) return tt.fail(stale);
  const why = ensurePrebuild('x64');
  if (why) return tt.fail(why);
  const pkg = bare('musl');
  cpSync(join(ROOT, 'prebuilds'), join(pkg, 'prebuilds'), { recursive: true });
  const glibc = probe(pkg);
  tt.same(glibc.loaded, [join(pkg, 'prebuilds', 'linux-x64', 'pidfd.glibc.node')], 'on glibc the prebuild loads');
  const musl = probe(pkg, { LIBC: 'musl' });
  commonChecks(tt, musl);
  tt.match(musl.message, /linux-x64 \(musl\)/, 'it names the target: linux-x64 (musl)');
  tt.match(musl.message, /prebuilt binaries are for glibc/, 'it says the prebuilds are for glibc');
  tt.match(musl.message, /apk add --no-cache g\+\+ make python3 linux-headers/, 'it gives the Alpine packages');
  tt.match(musl.cause, /No native build was found .*libc=musl/, 'node-gyp-build looked for a musl build');
});

t.test('no binary at all on glibc x64: the error says how to get one', async (tt) => {
  if (stale) return tt.fail(stale);
  const p = probe(bare('none'));
  commonChecks(tt, p);
  tt.match(p.message, /linux-x64 \(glibc\)/, 'it names the target');
  tt.match(p.message, /apt-get install g\+\+ make python3/, 'it gives the Debian/Ubuntu packages');
  tt.match(p.message, /dnf install gcc-c\+\+ make python3/, 'and the Fedora/RHEL ones');
});

t.test('a binary that cannot be loaded: the error says it and how to build from source', async (tt) => {
  if (stale) return tt.fail(stale);
  const pkg = bare('broken');
  mkdirSync(join(pkg, 'prebuilds', 'linux-x64'), { recursive: true });
  writeFileSync(join(pkg, 'prebuilds', 'linux-x64', 'pidfd.glibc.node'), 'not an ELF file\n');
  const p = probe(pkg);
  commonChecks(tt, p);
  tt.match(p.message, /found but could not be loaded/, 'it says the binary did not load');
  tt.match(p.message, /glibc 2\.17/, 'it names what the prebuilds need');
  tt.match(p.message, /--build-from-source/, 'it says how to build from source instead');
});

t.test('musl source-build fallback: installing the tarball compiles the addon and loads it', async (tt) => {
  if (stale) return tt.fail(stale);
  for (const tool of ['g++', 'make', 'python3']) {
    if (!which(tool)) return missingTool(tt, tool, 'apt-get install g++ make python3');
  }
  const why = ensurePrebuild('x64');
  if (why) return tt.fail(why);
  const dest = join(work, 'pack');
  mkdirSync(dest);
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!/^(npm_|tap|_tapjs|node_options$|ts_node)/i.test(k) || /^npm_config_(cache|registry|userconfig)$/i.test(k)) {
      env[k] = v;
    }
  }
  if (existsSync('/usr/include/node/node_api.h')) env.npm_config_nodedir = '/usr'; // offline headers
  const pack = spawnSync('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', dest], {
    cwd: ROOT,
    env,
    encoding: 'utf8',
  });
  if (!tt.equal(pack.status, 0, 'npm pack', { stderr: pack.stderr })) return;
  const tarball = join(dest, (JSON.parse(pack.stdout) as { filename: string }[])[0].filename);

  const project = join(work, 'alpine-like');
  mkdirSync(project);
  writeFileSync(join(project, 'package.json'), '{"name":"alpine-like","version":"1.0.0","private":true}\n');
  const install = spawnSync(
    'npm',
    ['install', '--no-audit', '--no-fund', '--prefer-offline', '--foreground-scripts', tarball],
    { cwd: project, env: { ...env, LIBC: 'musl', PREBUILDS_ONLY: '' }, encoding: 'utf8', timeout: 300_000 },
  );
  if (!tt.equal(install.status, 0, 'npm install with LIBC=musl succeeds', { out: install.stdout + install.stderr })) {
    return;
  }
  const pkg = join(project, 'node_modules', 'pidfd');
  const built = join(pkg, 'build', 'Release', 'pidfd.node');
  tt.ok(existsSync(built), 'the install script compiled the addon (no prebuild fits musl)');
  tt.match(install.stdout + install.stderr, /gyp info ok/, 'node-gyp ran');
  const p = probe(pkg, { LIBC: 'musl' });
  tt.same(p.loaded, [built], 'the compiled addon loads and works (PidFd.open)', { probe: p });
  tt.ok(readFileSync(built).subarray(0, 4).toString('latin1') === '\x7fELF', 'it is an ELF object');
});
