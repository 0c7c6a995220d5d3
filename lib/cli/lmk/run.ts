// `pidfd lmk` as a long-running service: the killer built from the settings, its events logged (and fed to the
// metrics, the hooks and the status document), a periodic report, self-protection at start, and SIGHUP to
// re-read the config file (a bad file is reported and the running settings stay).
import { LowMemoryKiller, readPressure } from '../../index';
import { prewarm, selfProtect } from '../../service/protect';
import type { Context } from '../command';
import { ConfigError, flagSettings, killerOptions, merge, readConfigFile, View } from './config';
import { type LogFormat, logger, type LogRecord } from './log';

/** How many kill records the status document keeps. */
const LAST_KILLS = 20;

/** The settings from the file (if any) and the flags, checked as a whole: the killer is built to validate them. */
export function loadSettings(values: Record<string, unknown>): {
  view: View;
  options: ReturnType<typeof killerOptions>;
} {
  const flags = flagSettings(values);
  const file = typeof values.config === 'string' ? values.config : undefined;
  const view = new View(file === undefined ? flags : merge(readConfigFile(file), flags), file);
  const options = killerOptions(view);
  try {
    new LowMemoryKiller(options); // every check of the library's, before anything runs
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const msg = `${e.message}${e.code ? ` (${e.code})` : ''}`;
    if (file !== undefined) throw new ConfigError(`config ${file}: ${msg}`);
    throw err;
  }
  return { view, options };
}

/** Runs the service until ctx.signal aborts; resolves with the exit status. */
export async function runService(ctx: Context, values: Record<string, unknown>): Promise<number> {
  let { view, options } = loadSettings(values);
  const format = ctx.json ? 'json' : (view.get<LogFormat>('log-format') ?? 'auto');
  const log = logger(format, (l) => ctx.line(l));
  const lastKills: LogRecord[] = [];
  const record = (r: LogRecord): void => {
    if (r.event === 'kill') {
      lastKills.push(r);
      if (lastKills.length > LAST_KILLS) lastKills.shift();
    }
    log(r);
  };

  let killer = attach(new LowMemoryKiller(options), record);
  const startRecord = (k: LowMemoryKiller): void => {
    const h = k.headroom();
    record({
      event: 'start',
      headroom: h,
      threshold: k.threshold(h.total) ?? null,
      dryRun: options.dryRun === true,
      memoryCgroup: options.memory?.cgroup ?? null,
    });
  };
  startRecord(killer);
  // Before the killer starts its threads, so that they inherit the nice value.
  for (const p of protectSelf(view)) record(p);
  if (view.flag('once')) {
    await killer.check();
    await killer.stop();
    return 0;
  }
  const started = async (k: LowMemoryKiller): Promise<void> => {
    // The decision path run once before the first decision, so that it runs compiled from resident pages.
    const warm = await prewarm(k);
    record({ event: 'prewarm', ...warm });
    k.start();
    record({ event: 'sampling', mode: k.sampling ?? null, reason: k.samplingReason ?? null });
    if (k.psiMode) record({ event: 'psi', mode: k.psiMode, fallbackReason: k.psiFallbackReason ?? null });
  };
  await started(killer);

  // Counts that outlive a reload (each killer counts from its own start).
  let episodesBefore = 0;
  let killsBefore = 0;
  let oomBefore = 0;
  let kills = 0;
  killer.on('kill', () => kills++);

  let reportTimer: NodeJS.Timeout | undefined;
  const armReport = (): void => {
    clearInterval(reportTimer);
    const every = view.get<number>('report');
    if (every === undefined || every <= 0) return;
    reportTimer = setInterval(() => {
      void (async () => {
        const h = killer.headroom();
        let psi: { some: number; full: number } | undefined;
        try {
          const p = readPressure('memory', { cgroup: options.psi?.cgroup });
          psi = { some: p.some.avg10, full: p.full?.avg10 ?? 0 };
        } catch {
          /* no PSI here */
        }
        const candidates = (await killer.candidates()).length;
        record({
          event: 'report',
          available: h.available,
          total: h.total,
          swapFree: h.swapFree,
          swapTotal: h.swapTotal,
          psi,
          candidates,
          episodes: episodesBefore + killer.episodes,
          kills: killsBefore + kills,
          kernelOomKills: oomBefore + killer.kernelOomKills,
        });
      })().catch((err: Error) => record({ event: 'error', message: err.message }));
    }, every);
  };
  armReport();

  // SIGHUP: the file is read again, with the same flags on top; the new killer replaces the old one only when the
  // whole new set of settings is valid. An episode in progress is finished by the old killer's stop().
  let reloading: Promise<void> = Promise.resolve();
  const onHup = (): void => {
    reloading = reloading.then(async () => {
      const file = typeof values.config === 'string' ? values.config : undefined;
      if (file === undefined) {
        record({ event: 'config-error', message: 'SIGHUP: no --config file to read again' });
        return;
      }
      let next: ReturnType<typeof loadSettings>;
      try {
        next = loadSettings(values);
      } catch (err) {
        record({ event: 'config-error', message: (err as Error).message, file });
        return;
      }
      const old = killer;
      await old.stop();
      episodesBefore += old.episodes;
      killsBefore += kills;
      oomBefore += old.kernelOomKills;
      kills = 0;
      old.removeAllListeners();
      ({ view, options } = next);
      killer = attach(new LowMemoryKiller(options), record);
      killer.on('kill', () => kills++);
      for (const p of protectSelf(view)) record(p);
      record({ event: 'reload', file });
      startRecord(killer);
      await started(killer);
      armReport();
    });
  };
  process.on('SIGHUP', onHup);
  try {
    await new Promise<void>((resolve) => {
      if (ctx.signal.aborted) resolve();
      else ctx.signal.addEventListener('abort', () => resolve(), { once: true });
    });
    await reloading;
  } finally {
    process.off('SIGHUP', onHup);
    clearInterval(reportTimer);
    await killer.stop();
  }
  record({ event: 'stop', episodes: episodesBefore + killer.episodes });
  return 0;
}

/** Every event of the killer as a log record. */
function attach(k: LowMemoryKiller, record: (r: LogRecord) => void): LowMemoryKiller {
  for (const event of ['pressure', 'reclaim', 'trim', 'kill', 'recovered', 'kernel-oom'] as const)
    k.on(event, (e: object) => record({ event, ...e }));
  k.on('error', (err: NodeJS.ErrnoException) =>
    record({ event: 'error', message: err.message, code: err.code ?? null }),
  );
  return k;
}

/** Self-protection as the settings ask (`keep`: leave that measure alone); one record per measure. */
function protectSelf(view: View): LogRecord[] {
  const keepable = (key: string): number | null | undefined => {
    const v = view.get<number | string>(key);
    return v === 'keep' ? null : (v as number | undefined);
  };
  return selfProtect({ oomScoreAdj: keepable('oom-score-adj'), nice: keepable('nice'), lock: view.flag('lock') }).map(
    (m) => ({
      event: 'protect',
      what: m.measure,
      asked: m.asked,
      before: m.before,
      now: m.now,
      done: m.done,
      code: m.code ?? null,
      detail: m.done ? `${m.before} -> ${m.now}` : `${m.code ?? 'failed'}; it stays ${m.now}`,
    }),
  );
}
