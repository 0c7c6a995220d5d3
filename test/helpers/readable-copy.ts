// A copy of the package that another user (uid 65534 under setpriv) can load: the checkout may not be readable to
// others (a clone under /root, a mktemp -d directory), nor the Node running the tests.
import {
  chmodSync,
  copyFileSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  realpathSync,
  statSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

const ROOT = join(__dirname, '..', '..');

/** Whether a user who is neither owner nor group can reach and execute `file`. */
function othersCanRun(file: string): boolean {
  const real = realpathSync(file);
  for (let dir = dirname(real); ; dir = dirname(dir)) {
    if ((statSync(dir).mode & 0o001) === 0) return false;
    if (dir === '/') break;
  }
  return (statSync(real).mode & 0o001) !== 0;
}

/**
 * The package as a fixture requires it (`../..` from test/fixtures/): dist/, the addon node-gyp-build picks
 * (build/Release first, then prebuilds/), the loader and bin/pidfd.js with what the CLI loads, plus `fixtures` (paths relative to the
 * checkout, e.g. test/fixtures/x.js), copied to a new directory under the temporary directory, with a Node
 * executable others can run. Returns the Node and the directory (the caller removes it).
 */
export function readableCopy(fixtures: string[]): { node: string; dir: string } {
  const dir = mkdtempSync(join(tmpdir(), 'pidfd-readable-'));
  copyFileSync(join(ROOT, 'package.json'), join(dir, 'package.json'));
  const parts = [
    'dist',
    'bin',
    join('build', 'Release', 'pidfd.node'),
    'prebuilds',
    join('node_modules', 'node-gyp-build'),
    join('node_modules', 'smol-toml'), // what the `pidfd` command loads (prom-client only with --metrics)
  ];
  for (const p of parts) {
    if (existsSync(join(ROOT, p))) cpSync(join(ROOT, p), join(dir, p), { recursive: true });
  }
  for (const f of fixtures) {
    mkdirSync(join(dir, dirname(f)), { recursive: true });
    copyFileSync(join(ROOT, f), join(dir, f));
  }
  let node = process.execPath;
  if (!othersCanRun(node)) {
    node = join(dir, 'node');
    copyFileSync(process.execPath, node);
  }
  // Readable (and the Node executable) by everyone, whatever the umask left on the sources.
  const open = (p: string): void => {
    const st = statSync(p);
    chmodSync(p, st.isDirectory() || p === node ? 0o755 : 0o644);
    if (st.isDirectory()) for (const e of readdirSync(p)) open(join(p, e));
  };
  open(dir);
  return { node, dir };
}
