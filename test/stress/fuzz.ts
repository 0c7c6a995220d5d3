// Property-based fuzzing of the public surface (test/fixtures/fuzz.js): generated sequences of calls with
// generated arguments on live, exited, foreign and closed PidFds. The only acceptable outcome of any call is a value
// or an error with a `code`; a crash fails the run. The seed is printed: replay a failure with
//   PIDFD_FUZZ_SEED=<seed> npx tap test/stress/fuzz.ts      (PIDFD_FUZZ_RUNS=<n> to change the count)
import t from 'tap';
import { join } from 'node:path';
import { ensureDist } from '../helpers/dist';
import { runNode } from '../helpers/procs';

const SEED = process.env.PIDFD_FUZZ_SEED ? Number(process.env.PIDFD_FUZZ_SEED) : Date.now() % 2 ** 31;
const RUNS = Number(process.env.PIDFD_FUZZ_RUNS ?? 1000);

t.test(`fuzz: ${RUNS} generated call sequences, seed ${SEED}`, async (t) => {
  t.equal(ensureDist(), undefined);
  t.comment(`fuzz seed ${SEED} (replay: PIDFD_FUZZ_SEED=${SEED} npx tap test/stress/fuzz.ts)`);
  const r = await runNode([join(__dirname, '..', 'fixtures', 'fuzz.js'), String(SEED), String(RUNS)]);
  t.equal(r.signal, null, `no crash: ${r.stderr.slice(-2000)}`);
  const report = JSON.parse(r.stdout);
  t.ok(report.ok, report.failure ?? 'every call returned a value or an error with a code');
  t.equal(r.code, 0);
  t.ok(report.calls >= RUNS, `${report.calls} calls made`);
  t.notMatch(r.stderr, /PIDFD_GC_CLOSE/, 'every PidFd the driver opened was closed');
  t.comment(`fuzz: ${report.calls} calls, ${report.returned} returned, errors by code ${JSON.stringify(report.codes)}`);
});
