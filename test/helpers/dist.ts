// Worker scripts and child-process fixtures load the compiled package (dist/, what `require('pidfd')` gives),
// while tap runs lib/ directly. A dist/ older than lib/ would test old code: rebuild it first (as `npm run
// build:ts` does), one test process at a time.
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { buildOnce } from './build-lock';
import { join } from 'node:path';

const ROOT = join(__dirname, '..', '..');
const LOCK = join(ROOT, 'build', '.dist-build-lock');

/** undefined if every lib/*.ts has a dist/*.js at least as new, else what is stale. */
export function staleDist(dir = ''): string | undefined {
  const lib = join(ROOT, 'lib', dir);
  for (const entry of readdirSync(lib, { withFileTypes: true })) {
    const f = join(dir, entry.name);
    if (entry.isDirectory()) {
      const stale = staleDist(f);
      if (stale !== undefined) return stale;
      continue;
    }
    if (!f.endsWith('.ts') || f.endsWith('.d.ts')) continue;
    const js = join(ROOT, 'dist', f.replace(/\.ts$/, '.js'));
    if (!existsSync(js)) return `dist/${f.replace(/\.ts$/, '.js')} is missing`;
    if (statSync(js).mtimeMs < statSync(join(ROOT, 'lib', f)).mtimeMs) return `dist/ is older than lib/${f}`;
  }
  return undefined;
}

/** Makes dist/ current (compiling lib/ with tsc if it is stale); returns undefined, or why it could not. */
export function ensureDist(): string | undefined {
  return buildOnce(
    LOCK,
    () => staleDist() === undefined,
    60_000,
    () => {
      try {
        execFileSync(
          process.execPath,
          [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(ROOT, 'tsconfig.json')],
          { cwd: ROOT, stdio: 'pipe' },
        );
        return staleDist();
      } catch (err) {
        const e = err as { stdout?: Buffer; message: string };
        return `tsc failed: ${e.stdout?.toString() || e.message}`;
      }
    },
  );
}
