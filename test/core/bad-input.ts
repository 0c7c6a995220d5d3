// Bad input: every public function and constructor, called with wrong types, NaN, negatives,
// fractions, huge numbers, closed PidFds, exited children and (at the native layer) fds that are not pidfds, ends
// in a TypeError/RangeError or a system error with a `code`; never a crash. The table lives in
// test/fixtures/bad-input-table.js and runs twice: here, against lib/, and in a child process against the package
// as it is compiled and loaded by a consumer (first, so that a crash fails an assertion instead of killing this
// runner).
import t, { Test } from 'tap';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as api from '../../lib/index';
import { native } from '../../lib/binding';
import { track } from '../helpers/procs';

interface Result {
  name: string;
  expect: Record<string, unknown>;
  actual: Record<string, unknown>;
  pass: boolean;
}
// eslint-disable-next-line @typescript-eslint/no-require-imports
const table = require('../fixtures/bad-input-table.js') as {
  runTable(a: typeof api, n: typeof native): Promise<Result[]>;
  judge(expect: Record<string, unknown>, actual: Record<string, unknown>): boolean;
};

const ROOT = join(__dirname, '..', '..');
const SCRIPT = join(__dirname, '..', 'fixtures', 'bad-input-table.js');

function check(t: Test, results: Result[]): void {
  t.ok(results.length > 300, `the table has ${results.length} rows`);
  const names = new Set(results.map((r) => r.name));
  t.equal(names.size, results.length, 'row names are unique');
  for (const r of results) {
    // Judged here, not trusted from the run: every expected field matches, and errors carry a message.
    t.ok(table.judge(r.expect, r.actual), r.name, { expected: r.expect, found: r.actual });
  }
  const kinds = results.map((r) => r.actual);
  t.ok(
    kinds.some((a) => a.throws === 'TypeError'),
    'some rows throw TypeError',
  );
  t.ok(
    kinds.some((a) => a.throws === 'RangeError'),
    'some rows throw RangeError',
  );
  t.ok(
    kinds.some((a) => typeof a.errno === 'number'),
    'some rows throw system errors',
  );
  t.ok(
    kinds.some((a) => a.rejects !== undefined),
    'some rows reject',
  );
}

let childResults: Result[] = [];
let childCrashed = false;

t.test('the table, in a child process (the compiled package root)', async (t) => {
  // Compile lib/ the way `npm run build:ts` does, into a scratch package root (dist/ in the repository may be
  // stale or being rebuilt by someone else); build/ and node_modules/ are the repository's own.
  const pkg = mkdtempSync(join(tmpdir(), 'pidfd-pkg-'));
  t.teardown(() => rmSync(pkg, { recursive: true, force: true }));
  for (const name of ['build', 'node_modules', 'package.json']) symlinkSync(join(ROOT, name), join(pkg, name));
  const tsc = spawnSync(
    process.execPath,
    [
      require.resolve('typescript/bin/tsc'),
      '-p',
      join(ROOT, 'tsconfig.json'),
      '--outDir',
      join(pkg, 'dist'),
      '--declarationDir',
      join(pkg, 'types'),
    ],
    { encoding: 'utf8' },
  );
  t.ok(existsSync(join(pkg, 'dist', 'index.js')), 'compiled', { output: tsc.stdout + tsc.stderr });

  // Its own process group, so that whatever it spawned is gone afterwards even if it crashed. A small heap turns
  // a runaway allocation into a quick abort instead of a long wait.
  const child = track(
    spawn(process.execPath, ['--max-old-space-size=512', SCRIPT, pkg], {
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
    }),
  );
  let out = '';
  let err = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) => {
    child.once('close', (c, s) => resolve([c, s]));
  });
  try {
    process.kill(-child.pid!, 'SIGKILL');
  } catch {
    /* the group is empty: nothing was left behind */
  }
  childCrashed = signal !== null || code !== 0;
  t.equal(signal, null, 'the child was not killed by a signal (no crash, no abort)', { stderr: err.slice(-3000) });
  t.equal(code, 0, 'the child exited normally', { stderr: err.slice(-3000) });
  t.match(err, /^\d+ passed, \d+ failed\n$/m, 'it printed its summary');
  try {
    childResults = JSON.parse(out) as Result[];
  } catch (e) {
    t.fail(`no JSON on stdout: ${(e as Error).message}`, { stdout: out.slice(0, 2000), stderr: err.slice(-3000) });
  }
  check(t, childResults);
});

t.test('the table, in this process (lib/)', async (t) => {
  // What crashed the child would crash this runner: that failure is already reported above.
  if (childCrashed) return t.plan(0, 'skipped: the child process crashed on the table');
  const results = await table.runTable(api, native);
  check(t, results);
  t.same(
    results.map((r) => r.name),
    childResults.map((r) => r.name),
    'the same rows as in the child',
  );
});
