#!/usr/bin/env node
// npm run check:package: what `npm pack` would publish, checked as users get it.
//   1. every file in the tarball matches the allow-list below (no tests, benchmarks, build output, TypeScript
//      sources, docs sources or editor leftovers), and what must be there is there: the host's prebuild, the
//      native sources for the source-build fallback, every file that main/types/exports/bin point to; the other
//      architecture's prebuild too in a release check (--release or PIDFD_RELEASE=1, as .ci/run sets), else its
//      absence is reported as not checked;
//   2. its size, packed and unpacked, is printed;
//   3. publint (package.json against the files; warnings count as errors) and @arethetypeswrong/cli (types resolve
//      for require and import under node10, node16 and bundler resolution) pass on the tarball itself.
// Exits 1 when any check fails.
//
//   node scripts/check-package.mjs [--release] [package.tgz]     (default: npm pack into a temporary directory)
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { arch } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const BIN = join(ROOT, 'node_modules', '.bin');

/** Every path the tarball may contain (paths relative to the package root). */
const ALLOWED = [
  /^package\.json$/,
  /^README\.md$/,
  /^LICENSE$/,
  /^binding\.gyp$/, // the source-build fallback
  /^src\/[\w-]+\.(cc|h)$/,
  /^scripts\/install\.js$/, // the install script (builds from source only where no prebuild fits)
  /^bin\/pidfd\.js$/, // the `pidfd` command (package.json bin)
  /^config\/lmk\.(toml|schema\.json)$/, // `pidfd lmk --config`: the example with every key, and its JSON Schema
  /^dist\/[\w/-]+\.js$/,
  /^types\/[\w/-]+\.d\.ts$/,
  /^prebuilds\/linux-(x64|arm64)\/pidfd\.glibc\.node$/,
  /^systemd\/pidfd-lmk\.service$/, // the unit `pidfd lmk --print-unit` renders (lib/service/unit.ts reads it)
];
const REQUIRED = [
  'package.json',
  'README.md',
  'LICENSE',
  'binding.gyp',
  'scripts/install.js',
  'systemd/pidfd-lmk.service',
];
const PREBUILDS = ['x64', 'arm64'].map((a) => ({ arch: a, path: `prebuilds/linux-${a}/pidfd.glibc.node` }));

const { values, positionals } = parseArgs({
  options: { release: { type: 'boolean', default: false } },
  allowPositionals: true,
});
const release = values.release || process.env.PIDFD_RELEASE === '1';

let failures = 0;
function fail(message) {
  console.log(`  FAIL ${message}`);
  failures++;
}

function run(cmd, args, options = {}) {
  return spawnSync(cmd, args, { cwd: ROOT, encoding: 'utf8', maxBuffer: 64 << 20, ...options });
}

const scratch = mkdtempSync(join(tmpdir(), 'pidfd-check-package-'));
try {
  let tarball = positionals[0];
  if (!tarball) {
    // `prepare` runs first, so dist/ and types/ are compiled from the current lib/.
    const r = run('npm', ['pack', '--json', '--pack-destination', scratch]);
    if (r.status !== 0) {
      process.stdout.write(r.stdout + r.stderr);
      throw new Error('npm pack failed');
    }
    tarball = join(scratch, JSON.parse(r.stdout)[0].filename);
  }
  const list = run('tar', ['-tzvf', tarball]);
  if (list.status !== 0) throw new Error(`cannot read ${tarball}: ${list.stderr}`);
  const files = new Map(); // path -> size
  for (const line of list.stdout.trim().split('\n')) {
    // -rw-r--r-- 0/0    1234 1985-10-26 08:15 package/dist/index.js
    const m = /^\S+\s+\S+\s+(\d+)\s+\S+\s+\S+\s+package\/(.+)$/.exec(line);
    if (m) files.set(m[2], Number(m[1]));
  }
  const packed = statSync(tarball).size;
  const unpacked = [...files.values()].reduce((a, b) => a + b, 0);
  console.log(
    `package: ${tarball.startsWith(scratch) ? 'npm pack' : tarball}: ${files.size} files, ` +
      `${(packed / 1024).toFixed(1)} KiB packed, ${(unpacked / 1024).toFixed(1)} KiB unpacked`,
  );

  console.log('allow-list:');
  for (const [path, size] of [...files].sort()) {
    const ok = ALLOWED.some((re) => re.test(path));
    console.log(`  ${ok ? 'ok  ' : 'FAIL'} ${String(size).padStart(8)}  ${path}`);
    if (!ok) failures++;
  }
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'));
  const targets = new Set(REQUIRED);
  const collect = (v) => {
    if (typeof v === 'string') targets.add(v.replace(/^\.\//, ''));
    else if (v && typeof v === 'object') Object.values(v).forEach(collect);
  };
  collect(pkg.main);
  collect(pkg.types);
  collect(pkg.exports);
  collect(pkg.bin);
  for (const f of readdirNative()) targets.add(f);
  for (const t of targets) if (!files.has(t)) fail(`missing ${t}`);
  // The host's prebuild is always built; the other one needs a cross compiler, which only a release must have.
  for (const p of PREBUILDS) {
    if (files.has(p.path)) continue;
    if (release || p.arch === arch()) fail(`missing ${p.path}${release ? ' (a release ships every prebuild)' : ''}`);
    else {
      console.log(
        `  skip ${p.path} is not in the tarball (this machine did not build it: npm run prebuildify ` +
          'says why); a release check (--release or PIDFD_RELEASE=1) requires it',
      );
    }
  }
  // A bin must run as a command: it needs its shebang (npm links it as is).
  const bins = typeof pkg.bin === 'string' ? [pkg.bin] : Object.values(pkg.bin ?? {});
  for (const bin of bins.map((b) => b.replace(/^\.\//, ''))) {
    if (!files.has(bin)) continue;
    const head = run('tar', ['-xOzf', tarball, `package/${bin}`]).stdout.split('\n')[0];
    if (head !== '#!/usr/bin/env node') fail(`bin ${bin} does not start with #!/usr/bin/env node (found: ${head})`);
    else console.log(`  ok   bin ${bin} starts with #!/usr/bin/env node`);
  }
  for (const [path] of files) {
    const m = /^dist\/(.+)\.js$/.exec(path);
    if (m && !files.has(`types/${m[1]}.d.ts`)) fail(`${path} has no types/${m[1]}.d.ts`);
  }

  console.log('publint:');
  const publint = run(join(BIN, 'publint'), ['run', tarball, '--strict'], { env: { ...process.env, NO_COLOR: '1' } });
  process.stdout.write(indent(publint.stdout + publint.stderr));
  if (publint.status !== 0) fail(`publint exited with ${publint.status}`);

  console.log('arethetypeswrong:');
  const attw = run(join(BIN, 'attw'), [tarball, '--format', 'table-flipped', '--no-color', '--no-emoji']);
  process.stdout.write(indent(attw.stdout + attw.stderr));
  if (attw.status !== 0) fail(`attw exited with ${attw.status}`);
} catch (err) {
  fail(err.message);
} finally {
  rmSync(scratch, { recursive: true, force: true });
}

console.log(failures ? `check-package: ${failures} problem(s)` : 'check-package: ok');
process.exitCode = failures ? 1 : 0;

function readdirNative() {
  const r = run('git', ['ls-files', 'src']);
  return r.status === 0 ? r.stdout.split('\n').filter((f) => /\.(cc|h)$/.test(f)) : [];
}

function indent(text) {
  return text.trim()
    ? text
        .trim()
        .split('\n')
        .map((l) => `  ${l}`)
        .join('\n') + '\n'
    : '';
}
