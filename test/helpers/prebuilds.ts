// The prebuilds the tarball ships, built on demand for tests (by scripts/prebuildify.mjs, one test process at a
// time) when they are missing or older than the native sources. Tools the tests need but the project cannot
// install itself (a cross compiler, qemu, an arm64 Node) are reported by `missingTool`: in a release run
// (PIDFD_RELEASE=1: .ci/run, `npm run test:release`) a missing tool is a failure, elsewhere the test is skipped with
// the command that installs it.
import type { Test } from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { buildOnce } from './build-lock';
import { join } from 'node:path';

export const ROOT = join(__dirname, '..', '..');
const LOCK = join(ROOT, 'build', '.prebuildify-lock');

export type Arch = 'x64' | 'arm64';

export function prebuildPath(arch: Arch): string {
  return join(ROOT, 'prebuilds', `linux-${arch}`, 'pidfd.glibc.node');
}

function newestSource(): number {
  const files = [join(ROOT, 'binding.gyp'), ...readdirSync(join(ROOT, 'src')).map((f) => join(ROOT, 'src', f))];
  return Math.max(...files.map((f) => statSync(f).mtimeMs));
}

function fresh(arch: Arch): boolean {
  const p = prebuildPath(arch);
  return existsSync(p) && statSync(p).mtimeMs >= newestSource();
}

/** Makes the prebuild for `arch` current; returns undefined, or why it could not (with the build's output). */
export function ensurePrebuild(arch: Arch): string | undefined {
  return buildOnce(
    LOCK,
    () => fresh(arch),
    300_000,
    () => {
      const r = spawnSync(process.execPath, [join(ROOT, 'scripts', 'prebuildify.mjs'), '--arch', arch], {
        cwd: ROOT,
        encoding: 'utf8',
        timeout: 300_000,
      });
      if (r.status !== 0 || !existsSync(prebuildPath(arch))) {
        return `npm run prebuildify -- --arch ${arch} failed (${r.status ?? r.signal}):\n${r.stdout}${r.stderr}`;
      }
      return undefined;
    },
  );
}

/** First executable called `name` on PATH, or undefined. */
export function which(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(':')) {
    const candidate = join(dir || '.', name);
    try {
      if (statSync(candidate).isFile()) return candidate;
    } catch {
      /* not here */
    }
  }
  return undefined;
}

/** A release run: every target and every release check is mandatory (.ci/run and `npm run test:release` set it). */
export const RELEASE = process.env.PIDFD_RELEASE === '1';

/**
 * A tool the test needs is missing: a failure in a release run (whose setup installs it), elsewhere a skip that
 * says what was not run and what installs it. Returns nothing; the caller returns right after.
 */
export function missingTool(tt: Test, what: string, fix: string): void {
  if (RELEASE) tt.fail(`${what} is missing in a release run (PIDFD_RELEASE=1): ${fix}`);
  else tt.skip(`not run: ${what} is missing (${fix}; npm run test:release requires it)`, () => {});
}
