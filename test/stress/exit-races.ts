// A process that exits while calls on it are in flight: each call is made over and over while the target dies
// underneath it, and every outcome must be one the API documents (a value, or an error with a documented code).
// The targets exit by themselves after a random delay (0-3 ms) once told to start.
import t from 'tap';
import { spawn } from 'node:child_process';
import { closeSync } from 'node:fs';
import { killTree, PidFd, terminate } from '../../lib/index';
import { Lines } from '../helpers/lines';
import { exited, fixture, track } from '../helpers/procs';

const ROUNDS = 60;

type Call = (p: PidFd, range: { address: bigint; length: number }) => unknown;
// Each call with what the API documents for a process that is alive, dying or gone.
const CALLS: Record<string, { call: Call; values: (v: unknown) => boolean; codes: string[] }> = {
  'kill(0)': { call: (p) => p.kill(0), values: (v) => typeof v === 'boolean', codes: [] },
  'kill(SIGCONT)': { call: (p) => p.kill('SIGCONT'), values: (v) => typeof v === 'boolean', codes: [] },
  'release()': { call: (p) => p.release(), values: (v) => typeof v === 'boolean', codes: ['EINVAL'] },
  "madvise('cold')": {
    call: (p, r) => p.madvise('cold', [r]),
    values: (v) => typeof v === 'number' && v >= 0,
    codes: ['ESRCH', 'ENOMEM'],
  },
  'info()': { call: (p) => p.info(), values: (v) => typeof v === 'object' && v !== null, codes: [] },
  'getfd(1)': {
    call: (p) => {
      const fd = p.getfd(1);
      closeSync(fd);
      return fd;
    },
    values: (v) => typeof v === 'number',
    codes: ['ESRCH', 'EBADF'],
  },
  exited: { call: (p) => p.exited, values: (v) => typeof v === 'boolean', codes: [] },
  // /proc read through the pidfd, re-checked after reading: ESRCH once the process has exited, never stale data.
  'memory()': { call: (p) => p.memory(), values: (v) => (v as { rss: number }).rss >= 16 << 20, codes: ['ESRCH'] },
  // The target maps 16 MiB in one piece: a list without it was read from a map being torn down.
  'maps()': {
    call: (p, r) => p.maps().some((m) => m.start === r.address),
    values: (v) => v === true,
    codes: ['ESRCH'],
  },
  "reclaim('cold')": {
    call: (p) => p.reclaim({ advice: 'cold' }),
    values: (v) => typeof v === 'object' && v !== null,
    codes: ['ESRCH'],
  },
  id: { call: (p) => p.id, values: (v) => typeof v === 'bigint', codes: ['ESRCH'] },
};

t.test(`${ROUNDS} targets die while every call is made on them in a loop`, async (t) => {
  const bin = fixture('race-exit');
  const seen: Record<string, Record<string, number>> = {};
  const unexpected: string[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    const child = track(
      spawn(bin, ['16', String(Math.floor(Math.random() * 3000))], { stdio: ['pipe', 'pipe', 'inherit'] }),
    );
    const line = await new Lines(child.stdout!).waitFor((l) => /^[0-9a-f]+ \d+$/.test(l), 'address');
    const [hex, len] = line.split(' ');
    const range = { address: BigInt(`0x${hex}`), length: Number(len) };
    const p = PidFd.fromChild(child);
    const wait = p.waitExit();
    child.stdin!.end('g');
    // Until the process is gone, then a few rounds more: every call sees it alive, dying and gone.
    let after = 0;
    for (let i = 0; after < 3 && i < 100_000; i++) {
      if (p.exited) after++;
      for (const [name, spec] of Object.entries(CALLS)) {
        let outcome: string;
        try {
          const v = spec.call(p, range);
          outcome = spec.values(v) ? 'value' : `bad value ${JSON.stringify(v)}`;
        } catch (err) {
          const code = (err as { code?: unknown }).code;
          outcome =
            typeof code === 'string' && spec.codes.includes(code)
              ? code
              : `undocumented ${String(code)}: ${(err as Error).message}`;
        }
        (seen[name] ??= {})[outcome] = (seen[name][outcome] ?? 0) + 1;
        if (!/^(value|[A-Z]+)$/.test(outcome) && unexpected.length < 20) unexpected.push(`${name}: ${outcome}`);
      }
    }
    t.match(await wait, { code: 7, signal: null, source: 'waitid' }, `round ${round}: the exit is reported`);
    await exited(child);
    p.close();
  }
  t.same(unexpected, [], 'every outcome is a value or a documented error');
  for (const [name, outcomes] of Object.entries(seen)) t.comment(`${name}: ${JSON.stringify(outcomes)}`);
});

t.test(`terminate and killTree on ${ROUNDS / 2} targets each that exit by themselves meanwhile`, async (t) => {
  const bin = fixture('race-exit');
  const outcomes: Record<string, number> = {};
  for (let round = 0; round < ROUNDS; round++) {
    const child = track(
      spawn(bin, ['1', String(Math.floor(Math.random() * 3000))], { stdio: ['pipe', 'pipe', 'inherit'] }),
    );
    await new Lines(child.stdout!).waitFor((l) => /^[0-9a-f]+ \d+$/.test(l), 'address');
    const useTree = round % 2 === 1;
    child.stdin!.end('g');
    // Ignore SIGTERM is not what this tests: the target may get the signal or exit first; both must resolve.
    const run = useTree ? killTree(child.pid!, { timeout: 50 }) : terminate(child, { timeout: 50 });
    let outcome: string;
    try {
      const r = await run;
      outcome = `${useTree ? 'killTree' : 'terminate'} resolved`;
      const exit = useTree
        ? (r as Awaited<ReturnType<typeof killTree>>).processes[0]?.exit
        : (r as Awaited<ReturnType<typeof terminate>>).exit;
      if (exit && exit.code !== 7 && exit.signal === null) t.fail(`round ${round}: ${JSON.stringify(exit)}`);
    } catch (err) {
      outcome =
        `${useTree ? 'killTree' : 'terminate'} rejected ` +
        `${(err as { code?: string }).code}: ${(err as Error).message}`;
    }
    outcomes[outcome] = (outcomes[outcome] ?? 0) + 1;
    await exited(child);
  }
  t.same(Object.keys(outcomes).sort(), ['killTree resolved', 'terminate resolved'], JSON.stringify(outcomes));
});
