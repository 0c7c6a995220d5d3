// `pidfd lmk` as a long-running service: the killer built from the settings, its events logged (and fed to the
// metrics, the hooks and the status document), self-protection and a prewarmed decision path at start, a periodic
// report, and SIGHUP to re-read the config file (a bad file is reported and the running settings stay).
import type { Server } from 'node:net';
import { LowMemoryKiller, readPressure } from '../../index';
import { type HookResult, PostKillRunner, preKillCommand } from '../../service/hooks';
import { LmkMetrics, type MetricsFileWriter, serveMetrics, startMetricsFile } from '../../service/metrics';
import { prewarm, selfProtect } from '../../service/protect';
import { serveStatus } from '../../service/status';
import type { Context } from '../command';
import { ConfigError, flagSettings, killerOptions, merge, readConfigFile, toFileObject, View } from './config';
import { type LogFormat, logger, type LogRecord } from './log';

/** How many kill records the status document keeps. */
const LAST_KILLS = 20;

type Loaded = { view: View; options: ReturnType<typeof killerOptions> };

/** The settings from the file (if any) and the flags, checked as a whole: the killer is built to validate them. */
export function loadSettings(values: Record<string, unknown>): Loaded {
  const flags = flagSettings(values);
  const file = typeof values.config === 'string' ? values.config : undefined;
  const view = new View(file === undefined ? flags : merge(readConfigFile(file), flags), file);
  const options = killerOptions(view);
  try {
    new LowMemoryKiller(options); // every check of the library's, before anything runs
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (file !== undefined) throw new ConfigError(`config ${file}: ${e.message}${e.code ? ` (${e.code})` : ''}`);
    throw err;
  }
  return { view, options };
}

/** Runs the service until ctx.signal aborts; resolves with the exit status. */
export async function runService(ctx: Context, values: Record<string, unknown>): Promise<number> {
  const service = new Service(ctx, values, loadSettings(values));
  if (service.once) return service.runOnce();
  await service.start();
  const onHup = (): void => service.reload();
  process.on('SIGHUP', onHup);
  try {
    await new Promise<void>((resolve) => {
      if (ctx.signal.aborted) resolve();
      else ctx.signal.addEventListener('abort', () => resolve(), { once: true });
    });
  } finally {
    process.off('SIGHUP', onHup);
    await service.stop();
  }
  return 0;
}

class Service {
  readonly #values: Record<string, unknown>;
  #view: View;
  #options: Loaded['options'];
  #killer: LowMemoryKiller;
  readonly #log: (r: LogRecord) => void;
  readonly #lastKills: LogRecord[] = [];
  // The metrics outlive a reload: their counters go on, their gauges read whichever killer runs now.
  readonly #metrics: LmkMetrics | undefined;
  readonly #servers: Server[] = [];
  #metricsFile: MetricsFileWriter | undefined;
  #reportTimer: NodeJS.Timeout | undefined;
  #reloading: Promise<void> = Promise.resolve();
  #postKill: PostKillRunner | undefined;
  readonly #since = new Date().toISOString();
  // Counts of the killers replaced by reloads (each killer counts from its own start).
  #before = { episodes: 0, kills: 0, kernelOomKills: 0 };
  #kills = 0;

  constructor(ctx: Context, values: Record<string, unknown>, loaded: Loaded) {
    this.#values = values;
    this.#view = loaded.view;
    this.#options = loaded.options;
    this.#log = logger(ctx.json ? 'json' : (this.#view.get<LogFormat>('log-format') ?? 'auto'), (l) => ctx.line(l));
    this.#killer = this.#make(this.#options);
    if (this.#view.get('metrics') !== undefined || this.#view.get('metrics-file') !== undefined) {
      this.#metrics = new LmkMetrics({
        headroom: () => this.#killer.headroom(),
        threshold: () => this.#killer.threshold(),
        psi: { cgroup: this.#options.psi?.cgroup },
      });
    }
  }

  get once(): boolean {
    return this.#view.flag('once');
  }

  record(r: LogRecord): void {
    if (r.event === 'kill') {
      this.#lastKills.push(r);
      if (this.#lastKills.length > LAST_KILLS) this.#lastKills.shift();
    }
    this.#metrics?.record(r);
    this.#log(r);
  }

  /** A hook's run as a record. */
  #hookRecord(hook: string, pid: number, r: HookResult): void {
    this.record({
      event: 'hook',
      hook,
      pid,
      ok: r.error === undefined && r.status === 0,
      status: r.status,
      signal: r.signal,
      timedOut: r.timedOut,
      aborted: r.aborted,
      ms: r.ms,
      output: r.output,
    });
  }

  /** A killer whose every event becomes a record, with the hooks the settings name. */
  #make(options: Loaded['options']): LowMemoryKiller {
    const v = this.#view;
    const pre = v.get<string>('pre-kill');
    const k = new LowMemoryKiller(
      pre === undefined
        ? options
        : {
            ...options,
            preKill: preKillCommand(pre, (r, victim) => this.#hookRecord('pre-kill', victim.pid, r)),
            preKillTimeout: v.get<number>('pre-kill-timeout') ?? 2000,
          },
    );
    const post = v.get<string>('post-kill');
    // The runner of the previous settings finishes its queue; the new one takes the kills from now on.
    this.#postKill =
      post === undefined
        ? undefined
        : new PostKillRunner(post, v.get<number>('post-kill-timeout') ?? 10_000, {
            onDone: (r, e) => this.#hookRecord('post-kill', e.pid, r),
            onDrop: (e) => this.record({ event: 'error', message: `post-kill for ${e.pid} dropped: 16 already wait` }),
          });
    const runner = this.#postKill;
    if (runner !== undefined) k.on('kill', (e) => runner.push(e));
    for (const event of ['pressure', 'reclaim', 'trim', 'kill', 'recovered', 'kernel-oom'] as const)
      k.on(event, (e: object) => this.record({ event, ...e }));
    k.on('kill', () => this.#kills++);
    k.on('error', (err: NodeJS.ErrnoException) =>
      this.record({ event: 'error', message: err.message, code: err.code ?? null }),
    );
    return k;
  }

  #recordStart(): void {
    const h = this.#killer.headroom();
    this.record({
      event: 'start',
      headroom: h,
      threshold: this.#killer.threshold(h.total) ?? null,
      dryRun: this.#options.dryRun === true,
      memoryCgroup: this.#options.memory?.cgroup ?? null,
    });
    // Before the killer starts its threads, so that they inherit the nice value.
    for (const p of protectSelf(this.#view)) this.record(p);
  }

  async runOnce(): Promise<number> {
    this.#recordStart();
    await this.#killer.check();
    await this.#killer.stop();
    return 0;
  }

  async #startKiller(): Promise<void> {
    this.#recordStart();
    // The decision path run once before the first decision, so that it runs compiled from resident pages.
    this.record({ event: 'prewarm', ...(await prewarm(this.#killer)) });
    const k = this.#killer.start();
    this.record({ event: 'sampling', mode: k.sampling ?? null, reason: k.samplingReason ?? null });
    if (k.psiMode) this.record({ event: 'psi', mode: k.psiMode, fallbackReason: k.psiFallbackReason ?? null });
    this.#armReport();
  }

  async start(): Promise<void> {
    await this.#startKiller();
    try {
      await this.#listen();
    } catch (err) {
      await this.stop();
      throw err;
    }
  }

  /** The metrics endpoint, the metrics file and the status socket, as set at start (a reload keeps them). */
  async #listen(): Promise<void> {
    const v = this.#view;
    const address = v.get<string>('metrics');
    if (this.#metrics !== undefined && address !== undefined) {
      const server = await serveMetrics(this.#metrics, address);
      this.#servers.push(server);
      const a = server.address();
      const where =
        typeof a === 'object' && a !== null
          ? `${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`
          : address;
      this.record({ event: 'listen', what: 'metrics', address: where });
    }
    const path = v.get<string>('metrics-file');
    if (this.#metrics !== undefined && path !== undefined) {
      this.#metricsFile = startMetricsFile(this.#metrics, path, v.get<number>('metrics-interval') ?? 15_000, (err) =>
        this.record({
          event: 'error',
          message: `metrics-file: ${err.message}`,
          code: (err as NodeJS.ErrnoException).code ?? null,
        }),
      );
      this.record({ event: 'listen', what: 'metrics file', address: path });
    }
    const socket = v.get<string>('status-socket');
    if (socket !== undefined) {
      this.#servers.push(await serveStatus(socket, () => this.status()));
      this.record({ event: 'listen', what: 'status', address: socket });
    }
  }

  #armReport(): void {
    clearInterval(this.#reportTimer);
    const every = this.#view.get<number>('report');
    if (every === undefined || every <= 0) return;
    this.#reportTimer = setInterval(() => {
      this.#report().catch((err: Error) => this.record({ event: 'error', message: err.message }));
    }, every);
  }

  async #report(): Promise<void> {
    const h = this.#killer.headroom();
    let psi: { some: number; full: number } | undefined;
    try {
      const p = readPressure('memory', { cgroup: this.#options.psi?.cgroup });
      psi = { some: p.some.avg10, full: p.full?.avg10 ?? 0 };
    } catch {
      /* no PSI here */
    }
    const candidates = (await this.#killer.candidates()).length;
    this.record({
      event: 'report',
      available: h.available,
      total: h.total,
      swapFree: h.swapFree,
      swapTotal: h.swapTotal,
      psi,
      candidates,
      ...this.#counts(),
    });
  }

  #counts(): { episodes: number; kills: number; kernelOomKills: number } {
    return {
      episodes: this.#before.episodes + this.#killer.episodes,
      kills: this.#before.kills + this.#kills,
      kernelOomKills: this.#before.kernelOomKills + this.#killer.kernelOomKills,
    };
  }

  /** SIGHUP: the file is read again with the same flags on top; the new killer replaces the old one only when the
   *  whole new set of settings is valid. An episode in progress is finished by the old killer's stop(). */
  reload(): void {
    this.#reloading = this.#reloading.then(async () => {
      const file = typeof this.#values.config === 'string' ? this.#values.config : undefined;
      if (file === undefined) {
        this.record({ event: 'config-error', message: 'SIGHUP: no --config file to read again' });
        return;
      }
      let next: Loaded;
      try {
        next = loadSettings(this.#values);
      } catch (err) {
        this.record({ event: 'config-error', message: (err as Error).message, file });
        return;
      }
      const old = this.#killer;
      await old.stop();
      this.#before = this.#counts();
      this.#kills = 0;
      old.removeAllListeners();
      ({ view: this.#view, options: this.#options } = next);
      this.#killer = this.#make(this.#options);
      this.record({ event: 'reload', file });
      await this.#startKiller();
    });
  }

  async stop(): Promise<void> {
    await this.#reloading;
    clearInterval(this.#reportTimer);
    await this.#killer.stop();
    await this.#postKill?.idle();
    await this.#metricsFile?.stop();
    await Promise.all(this.#servers.map((s) => new Promise((r) => s.close(r))));
    this.record({ event: 'stop', episodes: this.#counts().episodes });
  }

  /** The document `pidfd lmk status` prints: the effective settings, the candidates ranked now, the last kills. */
  async status(): Promise<object> {
    const k = this.#killer;
    const ranked = await k.candidates();
    return {
      pid: process.pid,
      since: this.#since,
      config: { file: this.#values.config ?? null, settings: toFileObject(this.#view.settings) },
      headroom: k.headroom(),
      threshold: k.threshold() ?? null,
      ...this.#counts(),
      candidates: ranked.map((c) => ({
        pid: c.pid,
        comm: c.comm,
        oomScoreAdj: c.oomScoreAdj,
        rss: c.memory.rss,
        swap: c.memory.swap,
        size: c.size,
        badness: c.badness,
        tier: c.tier,
        protected: c.protected,
      })),
      lastKills: this.#lastKills,
    };
  }
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
