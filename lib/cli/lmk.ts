import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { type CandidateSource, LowMemoryKiller, type LowMemoryKillerOptions } from '../index';
import { type Command, parseMs, parsePid, parseSignal, UsageError } from './command';
import { mib } from './format';

const UNIT: Record<string, number> = { '': 1, B: 1, K: 2 ** 10, M: 2 ** 20, G: 2 ** 30, T: 2 ** 40 };

/** `10%`, or bytes with an optional unit: `512M`, `1.5GiB`, `1048576`. */
export function parseAmount(text: string, what: string): number | `${number}%` {
  const m = /^(\d+(?:\.\d+)?)\s*(%|[KMGT]?(?:i?B)?)?$/i.exec(text.trim());
  if (!m)
    throw new UsageError(`${what} must be a percentage (10%) or a size (512M, 1GiB), not ${JSON.stringify(text)}`);
  if (m[2] === '%') {
    if (Number(m[1]) > 100) throw new UsageError(`${what} must be at most 100%`);
    return `${Number(m[1])}%`;
  }
  return Math.round(Number(m[1]) * UNIT[(m[2] ?? '').charAt(0).toUpperCase()]);
}

/** `some 150ms/2s` → kind, threshold, window. */
export function parsePsi(text: string): { kind: 'some' | 'full'; threshold: number; window: number } {
  const m = /^\s*(some|full)\s+(\S+?)\s*\/\s*(\S+)\s*$/.exec(text);
  if (!m) throw new UsageError(`--psi must look like 'some 150ms/2s', not ${JSON.stringify(text)}`);
  return {
    kind: m[1] as 'some' | 'full',
    threshold: parseMs(m[2], '--psi threshold'),
    window: parseMs(m[3], '--psi window'),
  };
}

const isMemoryCgroup = (dir: string): boolean =>
  existsSync(join(dir, 'memory.usage_in_bytes')) || existsSync(join(dir, 'memory.current'));

/** `pidfd lmk`: the low-memory killer in the foreground. */
export const lmk: Command = {
  name: 'lmk',
  summary: 'run the low-memory killer in the foreground, logging each decision',
  usage:
    "pidfd lmk (--cgroup DIR | --children-of PID) [--min-available 10%] [--psi 'some 150ms/2s'] " +
    '[--memory-cgroup DIR] [--protect PID,...] [--trim-signal SIG] [--dry-run] [--once] [--json]',
  description: [
    "Watches available memory (MemAvailable, or a memory cgroup's headroom) and/or memory pressure (PSI), and",
    'answers pressure in steps: reclaim (process_madvise pageout on the candidates), trim (a signal, if given,',
    'then up to --trim-deadline for memory to come back), kill (one victim: the highest oom_score_adj, then the',
    'largest PSS; SIGKILL through its pidfd, process_mrelease, and it waits for the death and the memory before',
    "deciding again). It only ever acts on the candidates; never on itself or pid 1. Kills made by the kernel's",
    'own OOM killer in the budget are logged too (kernel-oom).',
    '',
    'Candidates (one of):',
    '  --cgroup DIR            the processes in a cgroup (v1 or v2 directory); if it is a memory cgroup, its',
    '                          headroom (limit - usage) is the available memory',
    '  --children-of PID       the children of a process (e.g. your process manager)',
    'When to act (one or both; with both, both must say so; neither: --min-available 10%):',
    '  --min-available X       available memory below X: a percentage of the total (10%) or a size (512M)',
    "  --psi 'some T/W'        tasks stalled T within W (e.g. 'some 150ms/2s'; windows of 2-10 s in whole",
    '                          seconds get a kernel trigger, others run by sampling)',
    "  --psi-resource R        memory (default), cpu or io;  --psi-cgroup DIR: a cgroup v2 group's pressure",
    'Other options:',
    '  --memory-cgroup DIR     measure available memory in this memory cgroup instead',
    '  --protect PID,...       never act on these',
    '  --trim-signal SIG       ask candidates to free memory with this signal before any kill',
    '  --trim-deadline T       how long to give them (default 1s)',
    '  --no-reclaim            skip the reclaim step',
    '  --interval T            how often available memory is checked (default 1s)',
    "  --lock                  lock the killer's own code in memory first",
    '  --dry-run               decide and log, act on nothing',
    '  --once                  one evaluation, then exit',
    '',
    'Runs until interrupted (SIGINT/SIGTERM). Exit status: 0; 1 on a failure to start.',
    '',
    'Example: pidfd lmk --cgroup /sys/fs/cgroup/memory/workers --min-available 10% --dry-run',
  ].join('\n'),
  options: {
    cgroup: { type: 'string' },
    'children-of': { type: 'string' },
    'min-available': { type: 'string' },
    psi: { type: 'string' },
    'psi-resource': { type: 'string' },
    'psi-cgroup': { type: 'string' },
    'memory-cgroup': { type: 'string' },
    protect: { type: 'string' },
    'trim-signal': { type: 'string' },
    'trim-deadline': { type: 'string' },
    'no-reclaim': { type: 'boolean' },
    interval: { type: 'string' },
    lock: { type: 'boolean' },
    'dry-run': { type: 'boolean' },
    once: { type: 'boolean' },
  },
  async run(ctx) {
    if (ctx.positionals.length > 0) throw new UsageError(`unexpected argument: ${ctx.positionals[0]}`);
    const v = ctx.values as Record<string, string | boolean | undefined>;
    let candidates: CandidateSource;
    if (typeof v.cgroup === 'string' && v['children-of'] !== undefined)
      throw new UsageError('--cgroup or --children-of, not both');
    if (typeof v.cgroup === 'string') candidates = { cgroup: v.cgroup };
    else if (typeof v['children-of'] === 'string')
      candidates = { childrenOf: parsePid(v['children-of'], '--children-of') };
    else throw new UsageError('say who may be killed: --cgroup DIR or --children-of PID');
    const options: LowMemoryKillerOptions = { candidates, dryRun: v['dry-run'] === true };
    if (typeof v['min-available'] === 'string')
      options.minAvailable = parseAmount(v['min-available'], '--min-available');
    if (typeof v.psi === 'string') {
      const res = (v['psi-resource'] as string | undefined) ?? 'memory';
      if (!['memory', 'cpu', 'io'].includes(res)) throw new UsageError('--psi-resource must be memory, cpu or io');
      options.psi = { ...parsePsi(v.psi), resource: res as 'memory', cgroup: v['psi-cgroup'] as string | undefined };
    }
    if (options.minAvailable === undefined && options.psi === undefined) options.minAvailable = '10%';
    const memCg =
      (v['memory-cgroup'] as string | undefined) ??
      (typeof v.cgroup === 'string' && isMemoryCgroup(v.cgroup) ? v.cgroup : undefined);
    if (memCg !== undefined) options.memory = { cgroup: memCg };
    if (typeof v.protect === 'string')
      options.protect = v.protect.split(',').map((p) => parsePid(p.trim(), '--protect'));
    if (typeof v['trim-signal'] === 'string') {
      options.trim = { signal: parseSignal(v['trim-signal'], '--trim-signal') };
      if (typeof v['trim-deadline'] === 'string')
        options.trim.deadline = parseMs(v['trim-deadline'], '--trim-deadline');
    }
    if (v['no-reclaim']) options.reclaim = false;
    if (typeof v.interval === 'string') options.interval = parseMs(v.interval, '--interval');

    const killer = new LowMemoryKiller(options);
    const time = (): string => new Date().toISOString().slice(11, 23);
    const dry = options.dryRun ? ' (dry run)' : '';
    if (v.lock) {
      const l = killer.lockMemory();
      ctx.print(`${time()} locked ${l.ranges} file mappings (${mib(l.bytes)}) in memory`);
    }
    const h = killer.headroom();
    const threshold = killer.threshold(h.total);
    ctx.emit({ event: 'start', headroom: h, threshold: threshold ?? null, dryRun: options.dryRun });
    ctx.print(
      `${time()} watching ${memCg ? `memory cgroup ${memCg}` : 'system memory'}: ` +
        `${mib(h.available)} of ${mib(h.total)} available` +
        `${threshold !== undefined ? `, acting below ${mib(threshold)}` : ''}${dry}`,
    );
    killer.on('pressure', (e) => {
      ctx.emit({ event: 'pressure', ...e });
      ctx.print(`${time()} episode ${e.episode}: pressure: ${e.reason}`);
    });
    killer.on('reclaim', (e) => {
      ctx.emit({ event: 'reclaim', ...e });
      ctx.print(
        `${time()}   reclaim ${e.pid} (${e.comm}): advised ${mib(e.advised)}, ` +
          `RSS ${mib(e.rssBefore)} -> ${mib(e.rssAfter)}${dry}`,
      );
    });
    killer.on('trim', (e) => {
      ctx.emit({ event: 'trim', ...e });
      ctx.print(`${time()}   trim ${e.pid} (${e.comm}): freed ${mib(e.freed)}${dry}`);
    });
    killer.on('kill', (e) => {
      ctx.emit({ event: 'kill', ...e });
      ctx.print(
        e.dryRun
          ? `${time()}   would kill ${e.pid} (${e.comm}, oom_score_adj ${e.oomScoreAdj}, PSS ${mib(e.pss)})${dry}`
          : `${time()}   killed ${e.pid} (${e.comm}, oom_score_adj ${e.oomScoreAdj}, PSS ${mib(e.pss)}): dead after ` +
              `${e.deathMs.toFixed(1)} ms, ${mib(e.bytesFreed)} back after ${e.memoryMs.toFixed(1)} ms` +
              `${e.released === undefined ? '' : `, release() ${e.released}`}`,
      );
    });
    killer.on('recovered', (e) => {
      ctx.emit({ event: 'recovered', ...e });
      ctx.print(`${time()} recovered: ${mib(e.available)} available`);
    });
    killer.on('kernel-oom', (e) => {
      ctx.emit({ event: 'kernel-oom', ...e });
      ctx.print(
        `${time()} the kernel's OOM killer killed ${e.count} in the budget (${e.kills} since start), ` +
          `${mib(e.available)} available`,
      );
    });
    killer.on('error', (err: NodeJS.ErrnoException) => {
      ctx.emit({ event: 'error', message: err.message, code: err.code ?? null });
      ctx.warn(`pidfd lmk: ${err.message}`);
    });
    if (v.once) {
      await killer.check();
      await killer.stop();
      return 0;
    }
    killer.start();
    if (killer.psiMode) {
      ctx.print(
        `${time()} PSI: ${killer.psiMode === 'trigger' ? 'kernel trigger' : `polling (${killer.psiFallbackReason})`}`,
      );
      ctx.emit({ event: 'psi', mode: killer.psiMode, fallbackReason: killer.psiFallbackReason ?? null });
    }
    await new Promise<void>((resolve) => {
      if (ctx.signal.aborted) resolve();
      else ctx.signal.addEventListener('abort', () => resolve(), { once: true });
    });
    await killer.stop();
    ctx.print(`${time()} stopped after ${killer.episodes} episode(s)`);
    return 0;
  },
};
