#!/usr/bin/env node
// The oldest Linux a prebuild loads on is decided by the newest symbol versions it needs from glibc and from the
// C++ runtime. This script prints, for each binary, the newest version it needs from each library (and one symbol
// that needs it), and exits 1 if any is newer than the floor below, or if the binary links a library outside it.
//
// The floor is the manylinux2014 baseline (PEP 599): glibc 2.17 and the libstdc++ of GCC 4.8 (RHEL/CentOS 7,
// Ubuntu 14.04), so the prebuilds load on every glibc distribution still maintained. src/compat.cc and the flags
// in binding.gyp are what keep a current GCC within it.
//
//   node scripts/check-glibc-floor.mjs [file.node ...]    (default: every prebuilds/linux-*/*.node)
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');

/** Highest version allowed per version family. */
export const FLOOR = {
  GLIBC: '2.17',
  GLIBCXX: '3.4.19',
  CXXABI: '1.3.7',
  GCC: '4.8.0', // libgcc_s (unwinder)
};

/** Libraries a prebuild may link: glibc's own, the C++ runtime and libgcc_s. */
const ALLOWED_NEEDED = /^(libc|libm|libdl|libpthread|librt|libstdc\+\+|libgcc_s)\.so\.\d+$|^ld-linux[-\w.]*\.so\.\d+$/;

function compare(a, b) {
  const x = a.split('.').map(Number);
  const y = b.split('.').map(Number);
  for (let i = 0; i < Math.max(x.length, y.length); i++) {
    const d = (x[i] ?? 0) - (y[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

/** objdump from binutils reads any ELF; a cross objdump is the fallback for a host whose binutils do not. */
function objdump(args, file) {
  const candidates = ['objdump', 'aarch64-linux-gnu-objdump', 'x86_64-linux-gnu-objdump'];
  let lastError;
  for (const cmd of candidates) {
    try {
      return execFileSync(cmd, [...args, file], {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'pipe'],
        maxBuffer: 1 << 28,
      });
    } catch (err) {
      lastError = err;
    }
  }
  throw new Error(`objdump ${args.join(' ')} ${file} failed (install binutils): ${lastError?.message}`);
}

/**
 * What one binary needs: per version family the newest version and a symbol that needs it, and its DT_NEEDED
 * libraries. Exported for the tests.
 */
export function inspect(file) {
  const newest = {};
  // Dynamic symbol lines look like `0000000000000000      DF *UND*  0000000000000000 (GLIBC_2.14) memcpy`
  // (older binutils print the version without parentheses).
  for (const line of objdump(['-T', '-C'], file).split('\n')) {
    const m = /\*UND\*\s+\S+\s+\(?([A-Z]+)_([0-9][0-9.]*)\)?\s+(.+)$/.exec(line);
    if (!m) continue;
    const [, family, version] = m;
    const symbol = m[3].trim();
    if (!newest[family] || compare(version, newest[family].version) > 0) newest[family] = { version, symbol };
  }
  const needed = [];
  for (const line of objdump(['-p'], file).split('\n')) {
    const m = /^\s*NEEDED\s+(\S+)/.exec(line);
    if (m) needed.push(m[1]);
  }
  const problems = [];
  for (const [family, { version, symbol }] of Object.entries(newest)) {
    const limit = FLOOR[family];
    if (limit === undefined) problems.push(`${family}_${version} (${symbol}): no floor is known for ${family}`);
    else if (compare(version, limit) > 0) {
      problems.push(`${family}_${version} (${symbol}) is newer than ${family}_${limit}`);
    }
  }
  for (const lib of needed) {
    if (!ALLOWED_NEEDED.test(lib)) problems.push(`links ${lib}, which is not part of glibc or the C++ runtime`);
  }
  return { newest, needed, problems };
}

function defaultFiles() {
  const dir = join(ROOT, 'prebuilds');
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((d) => d.startsWith('linux-'))
    .flatMap((d) =>
      readdirSync(join(dir, d))
        .filter((f) => f.endsWith('.node'))
        .map((f) => join(dir, d, f)),
    );
}

function main(argv) {
  const files = argv.length ? argv : defaultFiles();
  if (files.length === 0) {
    console.error('check-glibc-floor: no prebuilds found (run `npm run prebuildify` first)');
    return 1;
  }
  const floor = Object.entries(FLOOR)
    .map(([k, v]) => `${k}_${v}`)
    .join(', ');
  console.log(`glibc floor: nothing newer than ${floor}`);
  let failed = 0;
  for (const file of files) {
    const name = relative(process.cwd(), file) || file;
    const { newest, needed, problems } = inspect(file);
    const needs = Object.entries(newest)
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([family, { version, symbol }]) => `${family}_${version} (${symbol})`)
      .join(', ');
    console.log(
      `${problems.length ? 'FAIL' : 'ok  '} ${name}: ` +
        `needs ${needs || 'no versioned symbols'}; links ${needed.join(' ')}`,
    );
    for (const p of problems) console.log(`     ${p}`);
    if (problems.length) failed++;
  }
  if (failed) {
    console.log(`check-glibc-floor: ${failed} of ${files.length} binaries need a newer system than the floor`);
    return 1;
  }
  return 0;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1])
  process.exitCode = main(process.argv.slice(2));
