import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { setPriority } from 'node:os';
import { type CandidateMatcher, type CandidateSource, LowMemoryKiller, type LowMemoryKillerOptions } from '../index';
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

/** `10ms..1s` (adaptive bounds) or one duration (a fixed period). */
export function parseInterval(text: string): number | { min: number; max: number } {
  const m = /^(.+?)\.\.(.+)$/.exec(text.trim());
  if (!m) return parseMs(text, '--interval');
  return { min: parseMs(m[1], '--interval minimum'), max: parseMs(m[2], '--interval maximum') };
}

/** A comma-separated list of pids, command names and /regexps/. */
export function parseMatchers(text: string, what: string): CandidateMatcher[] {
  return text
    .split(',')
    .map((w) => w.trim())
    .filter((w) => w !== '')
    .map((w) => {
      if (/^\d+$/.test(w)) return parsePid(w, what);
      const re = /^\/(.*)\/([a-z]*)$/.exec(w);
      if (!re) return w;
      try {
        return new RegExp(re[1], re[2]);
      } catch {
        throw new UsageError(`${what}: ${w} is not a valid regular expression`);
      }
    });
}

const isMemoryCgroup = (dir: string): boolean =>
  existsSync(join(dir, 'memory.usage_in_bytes')) || existsSync(join(dir, 'memory.current'));

/** `pidfd lmk`: the low-memory killer in the foreground. */
export const lmk: Command = {
  name: 'lmk',
  summary: 'run the low-memory killer in the foreground, logging each decision',
  usage:
    "pidfd lmk (--cgroup DIR | --children-of PID) [--min-available 10%] [--psi 'some 150ms/2s'] " +
    '[--kill-mode MODE] [--protect LIST] [--prefer LIST] [--avoid LIST] [--dry-run] [--once] [--json] [...]',
  description: [
    "Watches available memory (MemAvailable, or a memory cgroup's headroom), free swap and/or memory pressure",
    '(PSI), sampling faster as the headroom nears the threshold (10 ms to 1 s), and answers pressure in steps:',
    'reclaim (process_madvise pageout of file pages; anonymous ones too where swap can take them), trim (a signal,',
    'only to candidates that catch it), kill (the candidate the kernel OOM killer would pick for this budget;',
    'SIGKILL through its pidfd, process_mrelease, and the next decision as soon as its memory is gone). It only',
    'ever acts on the candidates; never on itself, its ancestors or pid 1. Kills made by the',
    "kernel's own OOM killer in the budget are logged too (kernel-oom). See docs/low-memory-killer.md.",
    '',
    'Candidates (one of):',
    '  --cgroup DIR            the processes in a cgroup (v1 or v2 directory); if it is a memory cgroup, its',
    '                          headroom is the budget',
    '  --children-of PID       the children of a process (e.g. your process manager)',
    'When to act (rules; neither given: --min-available 10%):',
    '  --min-available X       available memory below X: a percentage of the budget (10%) or a size (512M)',
    '  --min-swap-free X       free swap below X (a percentage of the swap, or a size); ignored without swap',
    "  --psi 'some T/W'        tasks stalled T within W (e.g. 'some 150ms/2s'; a kernel trigger where the",
    '                          kernel takes the window, else sampling)',
    "  --psi-resource R        memory (default), cpu or io;  --psi-cgroup DIR: a cgroup v2 group's pressure",
    '  --when all|any          how the rules combine (default all: each must say so)',
    '  --critical T            act, whatever the rules say, after a full memory stall of T in 1 s (e.g. 200ms)',
    '  --interval T|MIN..MAX   a fixed sampling period, or adaptive bounds (default 10ms..1s)',
    '  --hysteresis F          the episode ends above the threshold × (1 + F) (default 0.1)',
    '  --memory-cgroup DIR     measure available memory in this memory cgroup instead',
    'Who (LIST: comma-separated pids, command names and /regexps/ over comm, cmdline and cgroup):',
    '  --protect LIST          never act on these',
    '  --prefer LIST           kill these first;  --avoid LIST: kill these only when nothing else is left',
    '  --min-victim X          rank candidates smaller than X after every larger one',
    'What and how:',
    '  --kill-mode M           process (default), group (its process group), tree (it and its descendants),',
    '                          cgroup (its whole cgroup, by cgroup.kill)',
    '  --grace T               SIGTERM first, SIGKILL after T or as soon as memory is critical',
    '  --grace-signal SIG      the first signal (default SIGTERM);  --grace-critical X: the critical level',
    '  --trim-signal SIG       ask candidates that catch SIG to free memory before any kill',
    '  --trim-always LIST      send it to these even without a handler;  --trim-deadline T (default 1s)',
    '  --no-reclaim            skip the reclaim step;  --reclaim-anon: advise anonymous memory even without swap',
    '  --kill-timeout T        how long to wait for a victim to die (default 5s)',
    '  --no-release            no process_mrelease after the SIGKILL',
    "  --lock                  lock the killer's own code in memory first",
    '  --no-priority           keep the nice value (default: -20 where allowed, so the killer is not starved)',
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
    'min-swap-free': { type: 'string' },
    when: { type: 'string' },
    critical: { type: 'string' },
    hysteresis: { type: 'string' },
    prefer: { type: 'string' },
    avoid: { type: 'string' },
    'min-victim': { type: 'string' },
    'kill-mode': { type: 'string' },
    grace: { type: 'string' },
    'grace-signal': { type: 'string' },
    'grace-critical': { type: 'string' },
    'trim-always': { type: 'string' },
    'reclaim-anon': { type: 'boolean' },
    'kill-timeout': { type: 'string' },
    'no-release': { type: 'boolean' },
    'no-priority': { type: 'boolean' },
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
    if (typeof v['min-swap-free'] === 'string')
      options.minSwapFree = parseAmount(v['min-swap-free'], '--min-swap-free');
    if (typeof v.critical === 'string') {
      options.critical = { stall: parseMs(v.critical, '--critical'), cgroup: v['psi-cgroup'] as string | undefined };
      if (options.critical.stall > 1000) throw new UsageError('--critical is a stall within 1 s: at most 1s');
    }
    if (options.minAvailable === undefined && options.psi === undefined && options.minSwapFree === undefined)
      options.minAvailable = '10%';
    if (typeof v.when === 'string') {
      if (v.when !== 'all' && v.when !== 'any') throw new UsageError('--when must be all or any');
      options.when = v.when;
    }
    if (typeof v.hysteresis === 'string') {
      const h = Number(v.hysteresis);
      if (!(h >= 0 && h <= 10)) throw new UsageError('--hysteresis must be a number from 0 to 10');
      options.hysteresis = h;
    }
    const memCg =
      (v['memory-cgroup'] as string | undefined) ??
      (typeof v.cgroup === 'string' && isMemoryCgroup(v.cgroup) ? v.cgroup : undefined);
    if (memCg !== undefined) options.memory = { cgroup: memCg };
    if (typeof v.protect === 'string') options.protect = parseMatchers(v.protect, '--protect');
    if (typeof v.prefer === 'string') options.prefer = parseMatchers(v.prefer, '--prefer');
    if (typeof v.avoid === 'string') options.avoid = parseMatchers(v.avoid, '--avoid');
    if (typeof v['min-victim'] === 'string') options.minVictim = parseAmount(v['min-victim'], '--min-victim');
    const km = v['kill-mode'];
    if (typeof km === 'string') {
      if (!['process', 'group', 'tree', 'cgroup'].includes(km))
        throw new UsageError('--kill-mode must be process, group, tree or cgroup');
      options.killMode = km as LowMemoryKillerOptions['killMode'];
    }
    if (typeof v.grace === 'string' || v['grace-signal'] !== undefined || v['grace-critical'] !== undefined) {
      options.graceful = {};
      if (typeof v.grace === 'string') options.graceful.timeout = parseMs(v.grace, '--grace');
      if (typeof v['grace-signal'] === 'string')
        options.graceful.signal = parseSignal(v['grace-signal'], '--grace-signal');
      if (typeof v['grace-critical'] === 'string')
        options.graceful.critical = parseAmount(v['grace-critical'], '--grace-critical');
    }
    if (typeof v['trim-signal'] === 'string') {
      options.trim = { signal: parseSignal(v['trim-signal'], '--trim-signal') };
      if (typeof v['trim-deadline'] === 'string')
        options.trim.deadline = parseMs(v['trim-deadline'], '--trim-deadline');
      if (typeof v['trim-always'] === 'string') options.trim.always = parseMatchers(v['trim-always'], '--trim-always');
    } else if (v['trim-always'] !== undefined || v['trim-deadline'] !== undefined) {
      throw new UsageError('--trim-always and --trim-deadline need --trim-signal');
    }
    if (v['no-reclaim']) options.reclaim = false;
    else if (v['reclaim-anon']) options.reclaim = { anon: true };
    if (typeof v.interval === 'string') {
      const iv = parseInterval(v.interval);
      options.interval = iv;
      if (typeof iv === 'number' ? iv < 1 : iv.min < 1 || iv.min > iv.max)
        throw new UsageError('--interval must be at least 1ms (and MIN <= MAX)');
    }
    if (typeof v['kill-timeout'] === 'string') options.killTimeout = parseMs(v['kill-timeout'], '--kill-timeout');
    if (v['no-release']) options.release = false;

    const killer = new LowMemoryKiller(options);
    const time = (): string => new Date().toISOString().slice(11, 23);
    // A killer starved of CPU by the very processes filling memory acts late: run it at the highest priority
    // the process may take (lmkd and earlyoom -p do the same); without CAP_SYS_NICE it stays as it is.
    if (!v['no-priority']) {
      try {
        setPriority(-20);
      } catch {
        /* not allowed: keep the inherited nice value */
      }
    }
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
    ctx.print(
      `${time()} sampling: ${killer.sampling === 'native' ? 'native sampler thread' : `timers (${killer.samplingReason})`}`,
    );
    ctx.emit({ event: 'sampling', mode: killer.sampling ?? null, reason: killer.samplingReason ?? null });
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
