#!/usr/bin/env node
// npm run prebuildify: the prebuilds shipped in the npm tarball, prebuilds/linux-x64/pidfd.glibc.node and
// prebuilds/linux-arm64/pidfd.glibc.node, each N-API (one binary for every Node version) and stripped, then the
// glibc floor check on both (scripts/check-glibc-floor.mjs; a binary above the floor fails the build).
// The `glibc` tag in the name keeps node-gyp-build from loading them on musl (Alpine), where the package builds
// from source instead.
//
// The architecture that is not the host's is cross-compiled with Debian's cross toolchain:
//   apt-get install g++-aarch64-linux-gnu      (on an x64 host; g++-x86-64-linux-gnu on an arm64 host)
// Without it that target is skipped, and said so. A release build (--release, or PIDFD_RELEASE=1, as .ci/run and
// `npm run test:release` set) fails instead: a tarball without every prebuild must not ship. A target named with
// --arch is never skipped. Each build runs in a scratch copy of the native sources, so build/Release (which the
// tests load) is not touched.
//
//   node scripts/prebuildify.mjs [--arch x64,arm64] [--release]
import { spawnSync } from 'node:child_process';
import {
  copyFileSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  renameSync,
  rmSync,
  symlinkSync,
} from 'node:fs';
import { arch as hostArch, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const TRIPLES = { x64: 'x86_64-linux-gnu', arm64: 'aarch64-linux-gnu' };
const APT = { x64: 'g++-x86-64-linux-gnu', arm64: 'g++-aarch64-linux-gnu' };

const { values } = parseArgs({ options: { arch: { type: 'string' }, release: { type: 'boolean', default: false } } });
const release = values.release || process.env.PIDFD_RELEASE === '1';
const strict = release || values.arch !== undefined;
const targets = (values.arch ?? 'x64,arm64').split(',').filter(Boolean);
const skipped = [];

function onPath(cmd) {
  return spawnSync('sh', ['-c', `command -v "${cmd}"`], { stdio: 'ignore' }).status === 0;
}

const env = { ...process.env };
// node-gyp finds the installed Node's headers here instead of downloading them (N-API headers are the same for
// every architecture).
if (!env.npm_config_nodedir && existsSync('/usr/include/node/node_api.h')) env.npm_config_nodedir = '/usr';

const stage = mkdtempSync(join(tmpdir(), 'pidfd-prebuildify-'));
let status = 0;
try {
  for (const target of targets) {
    const triple = TRIPLES[target];
    if (!triple) throw new Error(`unknown architecture ${target} (known: ${Object.keys(TRIPLES).join(', ')})`);
    const buildEnv = { ...env };
    if (target !== hostArch()) {
      const cxx = `${triple}-g++`;
      if (!onPath(cxx)) {
        const why = `${cxx} not found (cross-compiling for ${target} needs: apt-get install ${APT[target]})`;
        if (strict) {
          console.error(`prebuildify: linux-${target}: ${why}${release ? '; a release build needs every target' : ''}`);
          status = 1;
        } else {
          console.log(`prebuildify: skipped linux-${target}: ${why}`);
          skipped.push(`linux-${target}`);
        }
        continue;
      }
      Object.assign(buildEnv, {
        CC: `${triple}-gcc`,
        CXX: cxx,
        LINK: cxx,
        AR: `${triple}-ar`,
        PREBUILD_STRIP_BIN: `${triple}-strip`,
      });
    }
    const dir = join(stage, target);
    mkdirSync(dir);
    copyFileSync(join(ROOT, 'package.json'), join(dir, 'package.json'));
    copyFileSync(join(ROOT, 'binding.gyp'), join(dir, 'binding.gyp'));
    cpSync(join(ROOT, 'src'), join(dir, 'src'), { recursive: true });
    symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'));
    console.log(`prebuildify: linux-${target}${buildEnv.CXX ? ` with ${buildEnv.CXX}` : ''}`);
    const r = spawnSync(
      process.execPath,
      [join(ROOT, 'node_modules', 'prebuildify', 'bin.js'), '--napi', '--strip', '--tag-libc', '--arch', target],
      { cwd: dir, env: buildEnv, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] },
    );
    if (r.status !== 0) {
      process.stderr.write(r.stdout + r.stderr);
      console.error(`prebuildify: linux-${target} failed (exit ${r.status ?? r.signal})`);
      status = 1;
      continue;
    }
    const built = join(dir, 'prebuilds', `linux-${target}`);
    const out = join(ROOT, 'prebuilds', `linux-${target}`);
    mkdirSync(out, { recursive: true });
    const names = readdirSync(built);
    for (const f of names) {
      // Copy, then rename: a test loading the old binary meanwhile never sees half a file.
      copyFileSync(join(built, f), join(out, `.${f}.${process.pid}.tmp`));
      renameSync(join(out, `.${f}.${process.pid}.tmp`), join(out, f));
      console.log(`prebuildify: wrote prebuilds/linux-${target}/${f}`);
    }
    // No stale binary (e.g. one under an older name) stays beside the new one.
    for (const f of readdirSync(out)) if (!names.includes(f) && !f.endsWith('.tmp')) rmSync(join(out, f));
  }
} finally {
  rmSync(stage, { recursive: true, force: true });
}

const files = targets
  .map((t) => join(ROOT, 'prebuilds', `linux-${t}`))
  .filter((d) => existsSync(d))
  .flatMap((d) =>
    readdirSync(d)
      .filter((f) => f.endsWith('.node'))
      .map((f) => join(d, f)),
  );
const check = spawnSync(process.execPath, [join(ROOT, 'scripts', 'check-glibc-floor.mjs'), ...files], {
  stdio: 'inherit',
});
if (skipped.length > 0) {
  console.log(
    `prebuildify: skipped ${skipped.join(', ')}; a release build (--release or PIDFD_RELEASE=1) fails ` +
      'without them',
  );
}
process.exitCode = status || check.status || 0;
