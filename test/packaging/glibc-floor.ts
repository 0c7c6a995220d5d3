// The prebuilds load on every maintained glibc distribution: no symbol newer than GLIBC_2.17, and nothing from the
// C++ runtime newer than GCC 4.8's (GLIBCXX_3.4.19, CXXABI_1.3.7), as scripts/check-glibc-floor.mjs checks after
// every `npm run prebuildify`. And the script really fails a binary that needs more.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Arch, ROOT, ensurePrebuild, missingTool, prebuildPath, which } from '../helpers/prebuilds';

const SCRIPT = join(ROOT, 'scripts', 'check-glibc-floor.mjs');
const work = mkdtempSync(join(tmpdir(), 'pidfd-floor-'));
t.teardown(() => rmSync(work, { recursive: true, force: true }));

function floor(...files: string[]) {
  const r = spawnSync(process.execPath, [SCRIPT, ...files], { encoding: 'utf8' });
  return { status: r.status, out: r.stdout + r.stderr };
}

/** Highest version per family from the script's line for one file: `GLIBC_2.14 (memcpy)` -> { GLIBC: '2.14' }. */
function needs(out: string): Record<string, string> {
  const found: Record<string, string> = {};
  for (const m of out.matchAll(/\b([A-Z]+)_(\d[\d.]*) \(/g)) found[m[1]] = m[2];
  return found;
}

function atMost(version: string, limit: string): boolean {
  const a = version.split('.').map(Number);
  const b = limit.split('.').map(Number);
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    if ((a[i] ?? 0) !== (b[i] ?? 0)) return (a[i] ?? 0) < (b[i] ?? 0);
  }
  return true;
}

for (const arch of ['x64', 'arm64'] as Arch[]) {
  t.test(`prebuilds/linux-${arch}: within the glibc floor`, async (tt) => {
    if (arch !== process.arch && !which('aarch64-linux-gnu-g++') && ensurePrebuild(arch) !== undefined) {
      return missingTool(tt, 'the arm64 cross compiler', 'apt-get install g++-aarch64-linux-gnu');
    }
    const why = ensurePrebuild(arch);
    if (why) return tt.fail(why);
    const r = floor(prebuildPath(arch));
    tt.equal(r.status, 0, 'check-glibc-floor passes', { output: r.out });
    const line = r.out.split('\n').find((l) => l.includes(`linux-${arch}`)) ?? '';
    tt.comment(line.trim());
    const n = needs(line);
    tt.ok(n.GLIBC && atMost(n.GLIBC, '2.17'), `needs glibc ${n.GLIBC} <= 2.17`);
    tt.ok(!n.GLIBCXX || atMost(n.GLIBCXX, '3.4.19'), `needs GLIBCXX ${n.GLIBCXX ?? 'none'} <= 3.4.19 (GCC 4.8)`);
    tt.ok(!n.CXXABI || atMost(n.CXXABI, '1.3.7'), `needs CXXABI ${n.CXXABI ?? 'none'} <= 1.3.7 (GCC 4.8)`);
    tt.match(line, /links libstdc\+\+\.so\.6 libgcc_s\.so\.1 libc\.so\.6$/, 'links only libc and the C++ runtime');
    const described = spawnSync('file', ['-b', prebuildPath(arch)], { encoding: 'utf8' }).stdout;
    if (described) {
      tt.match(described, arch === 'x64' ? /x86-64/ : /aarch64/, `it is a ${arch} binary`);
      tt.match(described, /(?<!not )stripped/, 'it is stripped');
    }
  });
}

t.test('the floor script fails binaries that need a newer system', async (tt) => {
  if (!which('gcc') || !which('g++')) return missingTool(tt, 'gcc/g++', 'apt-get install g++');
  // arc4random: GLIBC_2.36.
  writeFileSync(join(work, 'new-glibc.c'), '#include <stdlib.h>\nunsigned f(void) { return arc4random(); }\n');
  // std::allocator<int>::allocate(n) with GCC 11+ (every std container): std::__throw_bad_array_new_length,
  // GLIBCXX_3.4.29, what the prebuild needed before src/compat.cc.
  writeFileSync(
    join(work, 'new-cxx.cc'),
    '#include <memory>\nint* f(unsigned long n) { return std::allocator<int>().allocate(n); }\n',
  );
  const c = spawnSync('gcc', ['-shared', '-fPIC', '-O2', '-o', join(work, 'new-glibc.so'), join(work, 'new-glibc.c')], {
    encoding: 'utf8',
  });
  tt.equal(c.status, 0, 'built a library that calls arc4random', { stderr: c.stderr });
  const cxx = spawnSync('g++', ['-shared', '-fPIC', '-O2', '-o', join(work, 'new-cxx.so'), join(work, 'new-cxx.cc')], {
    encoding: 'utf8',
  });
  tt.equal(cxx.status, 0, 'built a library that uses std::allocator', { stderr: cxx.stderr });

  const g = floor(join(work, 'new-glibc.so'));
  tt.equal(g.status, 1, 'arc4random fails the check');
  tt.match(g.out, /FAIL .*new-glibc\.so/, 'the failing binary is named');
  tt.match(g.out, /GLIBC_2\.36 \(arc4random\) is newer than GLIBC_2\.17/, 'the symbol and its version are named');

  const x = floor(join(work, 'new-cxx.so'));
  tt.equal(x.status, 1, 'a GCC 11+ std::allocator fails the check');
  tt.match(
    x.out,
    /GLIBCXX_3\.4\.(29|3\d) \(.*__throw_bad_array_new_length.*\) is newer than GLIBCXX_3\.4\.19/,
    'the libstdc++ symbol and its version are named',
  );

  const both = floor(prebuildPath('x64'), join(work, 'new-glibc.so'));
  tt.equal(both.status, 1, 'one bad binary among good ones fails the check');
  tt.match(both.out, /ok +\S*linux-x64/, 'the good one is still reported as ok');
});
