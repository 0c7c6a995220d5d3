// selfProtect() in a child process (test/fixtures/self-protect.js), read back from outside through /proc: what is
// allowed is done, what is not (lowering oom_score_adj without CAP_SYS_RESOURCE, nice below 0 or mlock beyond
// RLIMIT_MEMLOCK for uid 65534) is reported with its errno code while the process goes on. prewarm() acts on
// nothing.
import t, { type Test } from 'tap';
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { LowMemoryKiller } from '../../lib';
import { prewarm, selfProtect } from '../../lib/service/protect';
import { ensureDist } from '../helpers/dist';
import { ended, Lines } from '../helpers/lines';
import { procState, sleeper, track } from '../helpers/procs';
import { readableCopy } from '../helpers/readable-copy';

ensureDist();
const FIXTURE = join('test', 'fixtures', 'self-protect.js');
const ROOT = join(__dirname, '..', '..');
const CAP_SYS_RESOURCE = 24;

interface Measure {
  measure: string;
  asked: number | boolean;
  before: number;
  now: number;
  done: boolean;
  code?: string;
}
interface Report {
  pid: number;
  uid: number;
  result: Measure[];
}

const niceOf = (stat: string): number => Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[16]); // field 19

/** What /proc says of the process from outside: oom_score_adj, the nice value of the process and of each thread. */
function outside(pid: number): { adj: number; nice: number; threads: number[]; vmLck: number; capEff: bigint } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const threads: number[] = [];
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      threads.push(niceOf(readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8')));
    } catch {
      /* a thread that ended meanwhile */
    }
  }
  return {
    adj: Number(readFileSync(`/proc/${pid}/oom_score_adj`, 'utf8')),
    nice: niceOf(readFileSync(`/proc/${pid}/stat`, 'utf8')),
    threads,
    vmLck: Number(/^VmLck:\s+(\d+) kB$/m.exec(status)?.[1]) * 1024,
    capEff: BigInt(`0x${/^CapEff:\s+([0-9a-f]+)$/m.exec(status)?.[1]}`),
  };
}

/**
 * Starts the fixture with `options` (under `prefix`, from `copy` if given), waits for its report, reads it from
 * outside while it is still running, then ends it (closing its stdin) and checks that it exits cleanly.
 */
async function run(
  t: Test,
  options: object,
  prefix: string[] = [],
  copy?: { node: string; dir: string },
): Promise<{ report: Report; seen: ReturnType<typeof outside>; byName: Record<string, Measure> }> {
  const cwd = copy?.dir ?? ROOT;
  const argv = [...prefix, 'env', '-u', 'NODE_OPTIONS', copy?.node ?? process.execPath];
  argv.push(join(cwd, FIXTURE), JSON.stringify(options));
  const child = track(spawn(argv[0], argv.slice(1), { cwd, stdio: ['pipe', 'pipe', 'pipe'] }));
  const out = new Lines(child.stdout!);
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const line = await out
    .waitFor((l) => l.startsWith('{'), 'with the report')
    .catch((err: Error) => {
      throw new Error(`${err.message}\n${stderr}`);
    });
  const report = JSON.parse(line) as Report;
  const seen = outside(report.pid);
  t.equal(procState(report.pid) !== undefined && procState(report.pid) !== 'Z', true, 'it goes on running');
  child.stdin!.end();
  t.same(await ended(child), [0, null], `it exits cleanly${stderr ? `: ${stderr}` : ''}`);
  return { report, seen, byName: Object.fromEntries(report.result.map((m) => [m.measure, m])) };
}

t.test('raising oom_score_adj and the nice value works unprivileged; /proc shows it from outside', async (t) => {
  const { seen, byName } = await run(t, { oomScoreAdj: 500, nice: 5 });
  t.match(byName['oom-score-adj'], { asked: 500, now: 500, done: true });
  t.equal(byName['oom-score-adj'].code, undefined);
  t.equal(seen.adj, 500, '/proc/<pid>/oom_score_adj from outside: 500');
  t.match(byName.nice, { asked: 5, now: 5, done: true });
  t.equal(seen.nice, 5, '/proc/<pid>/stat field 19 from outside: 5');
  t.ok(seen.threads.length > 1, `Node runs ${seen.threads.length} threads`);
  t.same(new Set(seen.threads), new Set([5]), 'every thread has nice 5, not only the main one');
  t.equal(byName.lock, undefined, 'no lock unless asked');
});

t.test('lowering oom_score_adj without CAP_SYS_RESOURCE: EACCES reported, the process goes on', async (t) => {
  // Taken out of the bounding set, so the result does not depend on the privileges the tests run with.
  const { seen, byName } = await run(t, { nice: null }, ['setpriv', '--bounding-set=-sys_resource']);
  t.equal((seen.capEff >> BigInt(CAP_SYS_RESOURCE)) & 1n, 0n, 'it runs without CAP_SYS_RESOURCE');
  const m = byName['oom-score-adj'];
  t.equal(m.asked, -1000, 'the default is -1000');
  t.not(m.before, -1000, `it started above -1000 (${m.before})`);
  t.match(m, { done: false, code: 'EACCES' });
  t.equal(m.now, m.before, 'unchanged');
  t.equal(seen.adj, m.before, 'and /proc says the same from outside');
  t.equal(byName.nice, undefined, 'nice: null leaves the nice value alone');
});

t.test(
  'as root: nice -20 by default, and the code locked',
  { skip: process.getuid?.() !== 0 && 'needs root' },
  async (t) => {
    const { seen, byName } = await run(t, { oomScoreAdj: null, lock: true });
    t.match(byName.nice, { asked: -20, now: -20, done: true });
    t.same(new Set(seen.threads), new Set([-20]), 'every thread at -20');
    const lock = byName.lock;
    t.match(lock, { asked: true, done: true });
    t.ok(lock.now > lock.before, `VmLck ${lock.before} -> ${lock.now} bytes`);
    t.ok(seen.vmLck >= lock.now, `VmLck from outside: ${seen.vmLck} bytes`);
  },
);

t.test('uid 65534: it starts, and reports each measure it could not take', async (t) => {
  const copy = readableCopy([FIXTURE]);
  t.teardown(() => rmSync(copy.dir, { recursive: true, force: true }));
  const setpriv = ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups'];
  const { report, seen, byName } = await run(t, { lock: true }, setpriv, copy);
  t.equal(report.uid, 65534);
  t.equal(seen.capEff, 0n, 'no capabilities');
  t.match(byName['oom-score-adj'], { asked: -1000, done: false, code: 'EACCES' });
  t.equal(seen.adj, byName['oom-score-adj'].before);
  t.match(byName.nice, { asked: -20, done: false, code: 'EACCES' });
  t.equal(seen.nice, byName.nice.before, 'the nice value is unchanged');
  // Node's file mappings are far beyond the default RLIMIT_MEMLOCK (ENOMEM), or the limit is 0 (EPERM).
  t.match(byName.lock, { asked: true, done: false, code: /^(ENOMEM|EPERM)$/ });

  const up = await run(t, { oomScoreAdj: 700, nice: 10 }, setpriv, copy);
  t.match(up.byName['oom-score-adj'], { now: 700, done: true }, 'raising needs no privilege');
  t.match(up.byName.nice, { now: 10, done: true });
  t.same([up.seen.adj, up.seen.nice], [700, 10]);
});

t.test('bad options throw before anything is applied', async (t) => {
  const adj = readFileSync('/proc/self/oom_score_adj', 'utf8');
  t.throws(() => selfProtect({ oomScoreAdj: 1001 }), { name: 'RangeError', code: 'ERR_OUT_OF_RANGE' });
  t.throws(() => selfProtect({ oomScoreAdj: 1.5 }), { name: 'RangeError', code: 'ERR_OUT_OF_RANGE' });
  t.throws(() => selfProtect({ nice: -21 }), { name: 'RangeError', code: 'ERR_OUT_OF_RANGE' });
  t.throws(() => selfProtect({ nice: '5' as unknown as number }), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' });
  t.throws(() => selfProtect({ lock: 1 as unknown as boolean }), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' });
  t.throws(() => selfProtect(null as unknown as object), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' });
  t.throws(() => selfProtect({ oomScoreAdj: 900, nice: 99 }), { code: 'ERR_OUT_OF_RANGE' });
  t.equal(readFileSync('/proc/self/oom_score_adj', 'utf8'), adj, 'oom_score_adj untouched by a rejected call');
});

t.test('prewarm: lists and ranks the candidates once, acting on none', async (t) => {
  const a = sleeper();
  const b = sleeper();
  t.teardown(() => {
    a.kill('SIGKILL');
    b.kill('SIGKILL');
  });
  const killer = new LowMemoryKiller({ candidates: { childrenOf: process.pid }, minAvailable: '10%', ref: false });
  t.teardown(() => killer.stop());
  const r = await prewarm(killer);
  t.equal(r.candidates, 2, 'both children listed and ranked');
  t.ok(r.ms >= 0 && r.faults >= 0, `${r.ms.toFixed(1)} ms, ${r.faults} page faults`);
  t.equal(killer.episodes, 0, 'no episode');
  for (const c of [a, b]) t.equal(procState(c.pid!), 'S', `${c.pid} still sleeping, not signalled`);
  const again = await prewarm(killer);
  t.ok(again.candidates === 2, `second run: ${again.ms.toFixed(1)} ms, ${again.faults} page faults`);
});
