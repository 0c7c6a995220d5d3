// The API reference: `npm run docs` (TypeDoc, warnings are errors) builds it from the doc comments, and every export
// of lib/index.ts, value or type, has a doc comment with an @example (scripts/check-doc-examples.mjs, driven by the
// entry module, so a new export is checked as soon as it is exported). The check also fails when it should.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT } from '../helpers/prebuilds';

const CHECK = join(ROOT, 'scripts', 'check-doc-examples.mjs');
const work = mkdtempSync(join(tmpdir(), 'pidfd-docs-'));
t.teardown(() => rmSync(work, { recursive: true, force: true }));

function check(...args: string[]) {
  const r = spawnSync(process.execPath, [CHECK, ...args], { cwd: ROOT, encoding: 'utf8' });
  return { status: r.status, out: r.stdout + r.stderr };
}

t.test('every export of lib/index.ts, value or type, is documented with an @example', async (tt) => {
  const r = check();
  tt.equal(r.status, 0, 'check-doc-examples passes', { output: r.out });
  tt.match(r.out, /lib\/index\.ts exports \d+ values and \d+ types/, 'it read the exports of lib/index.ts');
});

t.test('the check rejects what it should', async (tt) => {
  const r = check(join(ROOT, 'test', 'fixtures', 'docs-missing', 'index.ts'));
  tt.equal(r.status, 1, 'it fails');
  tt.match(r.out, /noExample \(.*\): no @example/, 'a function without @example');
  tt.match(r.out, /undocumented \(.*\): no doc comment/, 'a constant without a doc comment');
  tt.match(r.out, /Widget\.stop \(.*\): no doc comment/, 'an undocumented public method');
  tt.match(r.out, /Shape \(.*\): no @example/, 'a type without @example');
  tt.notMatch(r.out, /\bdocumented \(|Widget \(|Widget\.run|\bExample \(/, 'nothing fully documented is reported');
  tt.match(r.out, /4 problem\(s\)/, 'exactly four problems');
});

t.test('TypeDoc builds the reference with no warnings', async (tt) => {
  const out = join(work, 'api');
  const r = spawnSync(process.execPath, [join(ROOT, 'node_modules', 'typedoc', 'bin', 'typedoc'), '--out', out], {
    cwd: ROOT,
    encoding: 'utf8',
    timeout: 120_000,
  });
  tt.equal(r.status, 0, 'typedoc exits 0 (typedoc.json treats warnings as errors)', { output: r.stdout + r.stderr });
  tt.notMatch(r.stdout + r.stderr, /\[warning\]|\[error\]/, 'it printed no warning or error');
  tt.ok(existsSync(join(out, 'index.html')), 'index.html was written');
  tt.ok(existsSync(join(out, 'classes', 'PidFd.html')), 'PidFd has its page');
});
