// The package as users get it: pack the tarball (both prebuilds, nothing outside the allow-list, publint and
// arethetypeswrong clean), install it into empty projects where no compiler can be found, and use it from
// CommonJS, ESM and TypeScript (.mts and .cts compiled against the packed types).
import t, { type Test } from 'tap';
import { execFileSync, spawnSync, SpawnSyncOptions } from 'node:child_process';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  realpathSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { RELEASE, ensurePrebuild, missingTool, prebuildPath, which as whichTool } from '../helpers/prebuilds';

const ROOT = join(__dirname, '..', '..');
const FIXTURES = join(__dirname, '..', 'fixtures');
const PREBUILD = prebuildPath('x64');
const PREBUILD_REL = 'prebuilds/linux-x64/pidfd.glibc.node';
const TSC = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');

const work = mkdtempSync(join(tmpdir(), 'pidfd-package-'));
t.teardown(() => rmSync(work, { recursive: true, force: true }));

/** First executable called `name` on the PATH this test was started with. */
function which(name: string): string {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    const candidate = join(dir || '.', name);
    try {
      if (statSync(candidate).isFile()) return candidate;
    } catch {
      /* not here */
    }
  }
  throw new Error(`${name} is not on PATH`);
}

// The environment for every command this test runs: the caller's, minus what npm and tap put there for their own
// children (NODE_OPTIONS with tap's loaders, npm_config_local_prefix pointing at this repository, ...). Settings
// that decide how the registry is reached stay.
const KEEP = new Set([
  'npm_config_cache',
  'npm_config_registry',
  'npm_config_userconfig',
  'npm_config_globalconfig',
  'npm_config_cafile',
  'npm_config_proxy',
  'npm_config_https_proxy',
  'npm_config_noproxy',
]);
const baseEnv: NodeJS.ProcessEnv = {};
for (const [key, value] of Object.entries(process.env)) {
  if (KEEP.has(key.toLowerCase())) baseEnv[key] = value;
  else if (!/^(npm_|tap|_tapjs|ts_node|node_options$|node_path$|node_v8_coverage$|init_cwd$)/i.test(key)) {
    baseEnv[key] = value;
  }
}

// A PATH with node, npm, sh (npm runs install scripts through it) and sleep (the consumers' child), and nothing
// that could compile an addon: if the prebuild did not load, node-gyp would have no python, make or g++.
const bin = join(work, 'bin');
mkdirSync(bin);
symlinkSync(realpathSync(process.execPath), join(bin, 'node'));
symlinkSync(realpathSync(which('npm')), join(bin, 'npm'));
symlinkSync(realpathSync(which('sh')), join(bin, 'sh'));
symlinkSync(realpathSync(which('sleep')), join(bin, 'sleep'));
const noCompilerEnv: NodeJS.ProcessEnv = { ...baseEnv, PATH: bin };

interface Run {
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

function run(cmd: string, args: string[], options: SpawnSyncOptions & { env: NodeJS.ProcessEnv }): Run {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 120_000, maxBuffer: 64 << 20, ...options });
  if (r.error) throw r.error;
  return { status: r.status, signal: r.signal, stdout: String(r.stdout), stderr: String(r.stderr) };
}

/** Asserts a command succeeded, showing its output when it did not. */
function ok(tt: Test, r: Run, what: string): boolean {
  return tt.equal(r.status, 0, what, r.status === 0 ? {} : { signal: r.signal, stdout: r.stdout, stderr: r.stderr });
}

/** An empty project with the tarball installed into it. */
function consumerProject(tt: Test, name: string, tarball: string, extraArgs: string[]): string | undefined {
  const dir = join(work, name);
  mkdirSync(dir);
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name, version: '1.0.0', private: true }, null, 2));
  const r = run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', ...extraArgs, tarball], {
    cwd: dir,
    env: noCompilerEnv,
  });
  if (!ok(tt, r, `npm install ${[...extraArgs, '<tarball>'].join(' ')} succeeds with no compiler on PATH`))
    return undefined;
  const installed = join(dir, 'node_modules', 'pidfd');
  tt.ok(existsSync(join(installed, ...PREBUILD_REL.split('/'))), 'the prebuild was installed');
  tt.notOk(existsSync(join(installed, 'build')), 'nothing was compiled: the package has no build/ directory');
  return dir;
}

interface ConsumerReport {
  kind: string;
  childPid: number;
  sent: boolean;
  exit: { pid: number; code: number | null; signal: string | null; source: string };
  capabilities: Record<string, boolean>;
  exports?: string[];
  pkgDir?: string;
  gypPath?: string;
  mapped: string[];
}

/** Runs a consumer script inside `project` and checks what it reports. */
function runConsumer(tt: Test, project: string, script: string, env = noCompilerEnv): ConsumerReport | undefined {
  const r = run(process.execPath, [script], { cwd: project, env, timeout: 30_000 });
  if (!ok(tt, r, `${script.slice(project.length + 1)} runs`)) return undefined;
  const report = JSON.parse(r.stdout.trim().split('\n').pop() as string) as ConsumerReport;
  const prebuild = realpathSync(join(project, 'node_modules', 'pidfd', ...PREBUILD_REL.split('/')));
  tt.same(report.mapped, [prebuild], 'the one addon mapped into the process is the installed prebuild');
  if (report.gypPath !== undefined) {
    tt.equal(realpathSync(report.gypPath), prebuild, 'node-gyp-build resolves the package to its prebuild');
  }
  tt.equal(report.sent, true, 'kill() reached the live child');
  tt.equal(report.exit.pid, report.childPid, 'ExitInfo names the child');
  tt.equal(report.exit.signal, 'SIGKILL', 'ExitInfo: killed by SIGKILL');
  tt.equal(report.exit.code, null, 'ExitInfo: no exit code');
  tt.ok(['waitid', 'pidfd-info'].includes(report.exit.source), `ExitInfo source is known (${report.exit.source})`);
  tt.equal(report.capabilities.pidfdOpen, true, 'capabilities() probed the kernel');
  return report;
}

let tarball = '';
const packed = new Set<string>();

t.test('the prebuilds exist for linux-x64 and linux-arm64', async (tt) => {
  for (const arch of ['x64', 'arm64'] as const) {
    if (!existsSync(prebuildPath(arch)) && arch !== process.arch && !whichTool('aarch64-linux-gnu-g++')) {
      missingTool(tt, 'the arm64 cross compiler', 'apt-get install g++-aarch64-linux-gnu');
      continue;
    }
    const why = ensurePrebuild(arch);
    if (why) {
      tt.fail(why);
      continue;
    }
    const elf = readFileSync(prebuildPath(arch));
    tt.equal(elf.subarray(0, 4).toString('latin1'), '\x7fELF', `prebuilds/linux-${arch}/pidfd.glibc.node is ELF`);
    // e_machine: 62 x86-64, 183 AArch64.
    tt.equal(elf.readUInt16LE(18), arch === 'x64' ? 62 : 183, `it is built for ${arch}`);
  }
});

t.test('npm pack', async (tt) => {
  const dest = join(work, 'pack');
  mkdirSync(dest);
  // `prepare` runs first, so dist/ and types/ are compiled from the current lib/.
  const r = run('npm', ['pack', '--json', '--pack-destination', dest], { cwd: ROOT, env: baseEnv });
  if (!ok(tt, r, 'npm pack succeeds')) return;
  const [info] = JSON.parse(r.stdout) as [{ filename: string; files: { path: string }[] }];
  tarball = join(dest, info.filename);
  tt.ok(existsSync(tarball), `wrote ${info.filename}`);
  for (const f of info.files) packed.add(f.path);

  const must = ['package.json', 'binding.gyp', 'scripts/install.js', 'dist/index.js', 'types/index.d.ts', PREBUILD_REL];
  for (const f of must) tt.ok(packed.has(f), `the tarball contains ${f}`);
  // The arm64 prebuild ships from a machine with the cross compiler; a release run must have it.
  const ARM64_REL = 'prebuilds/linux-arm64/pidfd.glibc.node';
  if (RELEASE || existsSync(prebuildPath('arm64'))) tt.ok(packed.has(ARM64_REL), `the tarball contains ${ARM64_REL}`);
  else missingTool(tt, `${ARM64_REL} (not built: no arm64 cross compiler)`, 'apt-get install g++-aarch64-linux-gnu');
  // The source-build fallback (no prebuild for this system) needs every native source.
  const native = readdirSync(join(ROOT, 'src')).filter((f) => /\.(cc|h)$/.test(f));
  tt.ok(
    native.some((f) => f.endsWith('.cc')),
    'src/ has C++ sources',
  );
  for (const f of native) tt.ok(packed.has(`src/${f}`), `the tarball contains src/${f}`);
  // Every compiled module comes with its declarations.
  for (const f of packed) {
    const m = /^dist\/(.+)\.js$/.exec(f);
    if (m) tt.ok(packed.has(`types/${m[1]}.d.ts`), `types/${m[1]}.d.ts accompanies ${f}`);
  }
  const forbidden = [...packed].filter(
    (f) =>
      /^(test|bench|build|node_modules|\.tap|\.ci|\.git)\//.test(f) || /^lib\/.*\.ts$/.test(f) || f.endsWith('.tgz'),
  );
  tt.same(forbidden, [], 'no tests, benchmarks, build output, TypeScript sources or node_modules in the tarball');
  const shipped = execFileSync('tar', ['-xOzf', tarball, `package/${PREBUILD_REL}`], { env: baseEnv });
  tt.ok(shipped.equals(readFileSync(PREBUILD)), 'the shipped prebuild is the one in prebuilds/');
});

t.test('the tarball passes the package checks (allow-list, publint, arethetypeswrong)', async (tt) => {
  if (!tarball) return tt.fail('no tarball');
  const r = run(process.execPath, [join(ROOT, 'scripts', 'check-package.mjs'), tarball], { cwd: ROOT, env: baseEnv });
  ok(tt, r, 'scripts/check-package.mjs passes');
  const size = /\d+ files, [\d.]+ KiB packed, [\d.]+ KiB unpacked/.exec(r.stdout);
  tt.ok(size, `size reported: ${size?.[0]}`);
  tt.match(r.stdout, /No problems found/, 'arethetypeswrong found no problems');
});

t.test('install with no compiler on PATH, use from CJS, ESM, .mts and .cts', async (tt) => {
  if (!tarball) return tt.fail('no tarball');
  const probe = run('sh', ['-c', 'for c in cc gcc g++ c++ clang make python3 python; do command -v $c; done; true'], {
    env: noCompilerEnv,
  });
  tt.equal(probe.stdout, '', 'no compiler, make or python can be found on the install PATH');

  const project = consumerProject(tt, 'consumer', tarball, []);
  if (!project) return;
  for (const f of ['pkg-cjs.cjs', 'pkg-esm.mjs']) copyFileSync(join(FIXTURES, f), join(project, f));
  const cjs = runConsumer(tt, project, join(project, 'pkg-cjs.cjs'));
  const esm = runConsumer(tt, project, join(project, 'pkg-esm.mjs'));
  if (cjs && esm) {
    tt.ok(cjs.exports!.includes('PidFd') && cjs.exports!.includes('capabilities'), 'CJS exports PidFd, capabilities');
    // Node 23+ also puts the whole CommonJS module.exports object in the namespace, under the name 'module.exports'.
    const named = esm.exports!.filter((n) => n !== 'module.exports');
    tt.same(named, cjs.exports, 'ESM sees every name CommonJS exports');
  }

  // TypeScript consumers, type-checked (library files included) against the packed declarations.
  mkdirSync(join(project, 'src'));
  for (const f of ['pkg-ts.mts', 'pkg-ts.cts']) copyFileSync(join(FIXTURES, f), join(project, 'src', f));
  writeFileSync(
    join(project, 'tsconfig.json'),
    JSON.stringify(
      {
        compilerOptions: {
          module: 'node16',
          moduleResolution: 'node16',
          target: 'ES2022',
          strict: true,
          skipLibCheck: false,
          noEmitOnError: true,
          rootDir: 'src',
          outDir: 'out',
          types: ['node'],
          typeRoots: [join(ROOT, 'node_modules', '@types')],
        },
        files: ['src/pkg-ts.mts', 'src/pkg-ts.cts'],
      },
      null,
      2,
    ),
  );
  const tsc = run(process.execPath, [TSC, '-p', 'tsconfig.json'], { cwd: project, env: noCompilerEnv });
  if (!ok(tt, tsc, 'the .mts and .cts consumers compile against the packed types')) return;
  const mts = runConsumer(tt, project, join(project, 'out', 'pkg-ts.mjs'));
  const cts = runConsumer(tt, project, join(project, 'out', 'pkg-ts.cjs'));
  tt.ok(mts && cts, 'both compiled consumers ran');
});

t.test('npm install --ignore-scripts still loads the prebuild', async (tt) => {
  if (!tarball) return tt.fail('no tarball');
  const project = consumerProject(tt, 'consumer-ignore-scripts', tarball, ['--ignore-scripts']);
  if (!project) return;
  copyFileSync(join(FIXTURES, 'pkg-cjs.cjs'), join(project, 'pkg-cjs.cjs'));
  runConsumer(tt, project, join(project, 'pkg-cjs.cjs'));
});
