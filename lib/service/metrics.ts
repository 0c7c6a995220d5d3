// Prometheus metrics of the low-memory killer: LmkMetrics counts the killer's event records (the objects
// `pidfd lmk --json` prints, one per event) and reads the headroom and PSI at scrape time; serveMetrics answers
// GET /metrics over HTTP, writeMetricsFile / startMetricsFile write the text for node_exporter's textfile
// collector. prom-client is loaded when the first LmkMetrics is made, never by a killer that has none.
import type * as PromClient from 'prom-client';
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { rename, unlink, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { basename, dirname, join } from 'node:path';
import { readPressure } from '../pressure';
import type { MemoryHeadroom } from '../lmk/budget';
import type { KillMode } from '../lmk/options';
import type { PressureRule } from '../lmk/rules';
import { invalidType, invalidValue, validateInteger, validateObject } from '../validate';

/**
 * One record of the killer's event stream: `event` names it (`pressure`, `kill`, `recovered`, `kernel-oom`,
 * `reclaim`, `trim`, `error`, ...) and the other fields are that event's payload, as `pidfd lmk --json` prints
 * them. Records of other events are ignored.
 *
 * @example
 * lmk.on('kill', (e) => metrics.record({ event: 'kill', ...e }));
 */
export interface LmkRecord {
  readonly event: string;
  readonly [field: string]: unknown;
}

/**
 * Options of `LmkMetrics`.
 *
 * @example
 * const metrics = new LmkMetrics({ headroom: () => lmk.headroom(), threshold: () => lmk.threshold() });
 */
export interface LmkMetricsOptions {
  /** Read at each scrape: the budget's available, total and swap bytes (e.g. `() => killer.headroom()`). */
  headroom?: () => MemoryHeadroom;
  /** Read at each scrape: minAvailable in bytes (e.g. `() => killer.threshold()`); undefined: not exposed. */
  threshold?: () => number | undefined;
  /** Memory PSI to expose: the system's (default, /proc/pressure/memory), a cgroup v2 group's memory.pressure
   *  (`{ cgroup }`), or none (`false`). Left out where it cannot be read when the metrics are made. */
  psi?: { cgroup?: string } | false;
}

/** The rules a kill or an episode is counted under, the one that decides first. */
const REASONS: readonly PressureRule[] = ['critical', 'memory', 'swap', 'psi'];
const MODES: readonly KillMode[] = ['process', 'group', 'tree', 'cgroup'];
/** Seconds: from a few ms (a SIGKILL'd process whose memory is freed at once) to the 5 s default kill timeout and
 *  a graceful kill's timeout beyond it. */
const BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

let prom: typeof PromClient | undefined;
function promClient(): typeof PromClient {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return (prom ??= require('prom-client') as typeof PromClient);
}

const num = (v: unknown): number => (typeof v === 'number' && Number.isFinite(v) ? v : 0);

/** The label a record is counted under: the first rule it names, in the order critical, memory, swap, psi. */
function reasonOf(r: LmkRecord): string {
  const t = Array.isArray(r.triggered) ? (r.triggered as unknown[]) : [];
  return REASONS.find((x) => t.includes(x)) ?? 'unknown';
}

function psiReadable(cgroup: string | undefined): boolean {
  try {
    readPressure('memory', { cgroup });
    return true;
  } catch {
    return false;
  }
}

/**
 * The killer's Prometheus metrics, in a registry of their own (never prom-client's global one). Counters and
 * histograms come from the event records given to `record()` (or from a killer through `attach()`); the headroom,
 * threshold and PSI gauges are read when the text is made. Every name starts with `pidfd_lmk_`.
 *
 * @example
 * const metrics = new LmkMetrics({ headroom: () => lmk.headroom() });
 * metrics.attach(lmk);
 * const server = await serveMetrics(metrics, '127.0.0.1:9101');
 */
export class LmkMetrics {
  /** The registry holding these metrics alone. */
  readonly registry: PromClient.Registry;
  #kills: PromClient.Counter;
  #dryKills: PromClient.Counter;
  #killed: PromClient.Counter;
  #freed: PromClient.Counter;
  #death: PromClient.Histogram;
  #regained: PromClient.Histogram;
  #decision: PromClient.Histogram;
  #lastDecision: PromClient.Gauge;
  #episodes: PromClient.Counter;
  #pressured: PromClient.Gauge;
  #kernelOom: PromClient.Counter;
  #reclaimed: PromClient.Counter;
  #trimmed: PromClient.Counter;
  #errors: PromClient.Counter;

  constructor(options: LmkMetricsOptions = {}) {
    validateObject(options, 'options');
    const { headroom, threshold, psi } = options;
    if (headroom !== undefined && typeof headroom !== 'function')
      throw invalidType('options.headroom', 'a function', headroom);
    if (threshold !== undefined && typeof threshold !== 'function')
      throw invalidType('options.threshold', 'a function', threshold);
    if (psi !== undefined && psi !== false) {
      validateObject(psi, 'options.psi');
      if (psi.cgroup !== undefined && typeof psi.cgroup !== 'string')
        throw invalidType('options.psi.cgroup', 'of type string', psi.cgroup);
    }
    const { Counter, Gauge, Histogram, Registry } = promClient();
    const reg = new Registry();
    this.registry = reg;
    const registers = [reg];
    const counter = (name: string, help: string, labelNames: string[] = []): PromClient.Counter =>
      new Counter({ name: `pidfd_lmk_${name}`, help, labelNames, registers });
    const histogram = (name: string, help: string): PromClient.Histogram =>
      new Histogram({ name: `pidfd_lmk_${name}`, help, buckets: BUCKETS, registers });
    const gauge = (name: string, help: string, collect?: (this: PromClient.Gauge) => void): PromClient.Gauge =>
      new Gauge({ name: `pidfd_lmk_${name}`, help, registers, collect });

    this.#kills = counter('kills_total', 'Kills made, by the rule that decided them and the kill mode applied.', [
      'reason',
      'mode',
    ]);
    this.#dryKills = counter('dry_run_kills_total', 'Kills a dry run decided and did not make.', ['reason', 'mode']);
    // Every label pair exists from the start, so that rate() and increase() see the first kill.
    for (const reason of REASONS)
      for (const mode of MODES) {
        this.#kills.inc({ reason, mode }, 0);
        this.#dryKills.inc({ reason, mode }, 0);
      }
    this.#killed = counter('killed_processes_total', 'Processes the kills took (the victims and their sets).');
    this.#freed = counter(
      'freed_bytes_total',
      'Available memory regained by kills, measured after each (a kill during which others allocated more adds 0).',
    );
    this.#death = histogram('kill_death_seconds', 'Time from the first signal to every killed process dead.');
    this.#regained = histogram(
      'kill_memory_regained_seconds',
      'Time from the first signal to the memory measured back.',
    );
    this.#decision = histogram(
      'kill_decision_seconds',
      'Time from the measurement that started the episode to the first signal.',
    );
    this.#lastDecision = gauge(
      'last_decision_timestamp_seconds',
      'Unix time of the last kill decision (dry runs included); 0 before the first.',
    );
    this.#episodes = counter('episodes_total', 'Pressure episodes started, by the rule that started them.', ['reason']);
    for (const reason of REASONS) this.#episodes.inc({ reason }, 0);
    this.#pressured = gauge('pressured', 'Whether the killer is in a pressure episode (1) or not (0).');
    this.#kernelOom = counter('kernel_oom_kills_total', "Kills by the kernel's own OOM killer seen in the budget.");
    this.#reclaimed = counter('reclaim_advised_bytes_total', 'Bytes the reclaim step advised out (process_madvise).');
    this.#trimmed = counter('trim_freed_bytes_total', 'PSS the candidates asked to trim gave back.');
    this.#errors = counter('errors_total', 'Errors the killer reported, by code.', ['code']);

    if (headroom !== undefined) {
      // One read per scrape for the four: the registry runs the collect functions in registration order, so the
      // first gauge's reads the headroom and sets the others.
      const rest: PromClient.Gauge[] = [];
      gauge('available_bytes', 'Available memory in the budget (MemAvailable or the cgroup headroom).', function () {
        const h = headroom();
        this.set(h.available);
        rest[0].set(h.total);
        rest[1].set(h.swapFree);
        rest[2].set(h.swapTotal);
      });
      rest.push(
        gauge('total_bytes', 'Size of the budget (MemTotal or the smallest memory cgroup limit).'),
        gauge('swap_free_bytes', 'Free swap the budget may still use.'),
        gauge('swap_total_bytes', 'Swap the budget may use (0 without swap).'),
      );
    }
    if (threshold !== undefined) {
      gauge('threshold_bytes', 'minAvailable in bytes: the killer acts below it.', function () {
        const t = threshold();
        if (t !== undefined) this.set(t);
      });
    }
    if (psi !== false && psiReadable(psi?.cgroup)) {
      const cgroup = psi?.cgroup;
      new Gauge({
        name: 'pidfd_lmk_memory_pressure_avg10_ratio',
        help: `Share of the last 10 s tasks stalled on memory (${cgroup ? `${cgroup}/memory.pressure` : '/proc/pressure/memory'}): some (at least one task) or full (all non-idle tasks).`,
        labelNames: ['kind'],
        registers,
        collect() {
          const last = readPressure('memory', { cgroup });
          this.set({ kind: 'some' }, last.some.avg10 / 100);
          if (last.full !== undefined) this.set({ kind: 'full' }, last.full.avg10 / 100);
        },
      });
    }
  }

  /** The Content-Type of `text()`'s result (Prometheus text format 0.0.4). */
  get contentType(): string {
    return this.registry.contentType;
  }

  /** Counts one event record; records of events it does not count are ignored. */
  record(r: LmkRecord): void {
    switch (r.event) {
      case 'pressure':
        this.#episodes.inc({ reason: reasonOf(r) });
        this.#pressured.set(1);
        break;
      case 'recovered':
        this.#pressured.set(0);
        break;
      case 'kill': {
        const labels = { reason: reasonOf(r), mode: typeof r.killMode === 'string' ? r.killMode : 'process' };
        this.#lastDecision.set(Date.now() / 1000);
        if (r.dryRun === true) {
          this.#dryKills.inc(labels);
          break;
        }
        this.#kills.inc(labels);
        this.#killed.inc(Array.isArray(r.killed) ? r.killed.length : 1);
        this.#freed.inc(Math.max(0, num(r.bytesFreed)));
        this.#death.observe(num(r.deathMs) / 1000);
        this.#regained.observe(num(r.memoryMs) / 1000);
        this.#decision.observe(num(r.decisionMs) / 1000);
        break;
      }
      case 'kernel-oom':
        this.#kernelOom.inc(Math.max(0, num(r.count)));
        break;
      case 'reclaim':
        if (r.dryRun !== true) this.#reclaimed.inc(Math.max(0, num(r.advised)));
        break;
      case 'trim':
        if (r.dryRun !== true) this.#trimmed.inc(Math.max(0, num(r.freed)));
        break;
      case 'error':
        this.#errors.inc({ code: typeof r.code === 'string' ? r.code : 'none' });
        break;
    }
  }

  /**
   * Records every event of `killer` (a LowMemoryKiller, or any emitter of its events); returns the function that
   * stops recording.
   */
  attach(killer: EventEmitter): () => void {
    const names = ['pressure', 'recovered', 'kill', 'kernel-oom', 'reclaim', 'trim'] as const;
    const on = names.map((event) => {
      const f = (e: object): void => this.record({ event, ...e });
      killer.on(event, f);
      return [event, f] as const;
    });
    const onError = (err: NodeJS.ErrnoException): void => this.record({ event: 'error', code: err.code });
    killer.on('error', onError);
    return () => {
      for (const [event, f] of on) killer.off(event, f);
      killer.off('error', onError);
    };
  }

  /** The Prometheus text exposition of every metric, the gauges read now. Rejects if a provider throws. */
  text(): Promise<string> {
    return this.registry.metrics();
  }
}

/**
 * Parses `HOST:PORT` (`127.0.0.1:9101`, `[::1]:9101`, `:9101` for every address) for `serveMetrics`; throws
 * ERR_INVALID_ARG_VALUE naming `name`.
 *
 * @example
 * const { host, port } = parseListenAddress('127.0.0.1:9101', 'metrics'); // { host: '127.0.0.1', port: 9101 }
 */
export function parseListenAddress(text: string, name = 'address'): { host: string | undefined; port: number } {
  if (typeof text !== 'string') throw invalidType(name, 'of type string', text);
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:[\]\s]*)):(\d{1,5})$/.exec(text);
  if (m === null) throw invalidValue(name, text, 'must be HOST:PORT (127.0.0.1:9101, [::1]:9101 or :9101)');
  const port = Number(m[3]);
  if (port > 65535) throw invalidValue(name, text, 'has a port above 65535');
  const host = m[1] ?? m[2];
  return { host: host === '' ? undefined : host, port };
}

/**
 * Serves `metrics` over HTTP at `address` (`HOST:PORT`, see `parseListenAddress`): GET or HEAD /metrics answers
 * the text exposition, any other path 404, other methods 405, and a failed read 500. Resolves to the listening
 * server once it listens (port 0: `server.address().port` says which); rejects with the listen error
 * (EADDRINUSE, EACCES...). `server.close()` stops it.
 *
 * @example
 * const server = await serveMetrics(metrics, '127.0.0.1:9101');
 * process.once('SIGTERM', () => server.close());
 */
export function serveMetrics(metrics: LmkMetrics, address: string): Promise<Server> {
  if (!(metrics instanceof LmkMetrics)) throw invalidType('metrics', 'an instance of LmkMetrics', metrics);
  const { host, port } = parseListenAddress(address, 'address');
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?', 1)[0];
    if (path !== '/metrics') {
      res.writeHead(404, { 'Content-Type': 'text/plain; charset=utf-8' }).end('Not found: try /metrics\n');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { Allow: 'GET, HEAD', 'Content-Type': 'text/plain; charset=utf-8' }).end();
      return;
    }
    metrics.text().then(
      (text) => {
        res.writeHead(200, { 'Content-Type': metrics.contentType, 'Content-Length': Buffer.byteLength(text) });
        res.end(req.method === 'HEAD' ? undefined : text);
      },
      (err: Error) => {
        res.writeHead(500, { 'Content-Type': 'text/plain; charset=utf-8' }).end(`${err.message}\n`);
      },
    );
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve(server);
    });
  });
}

/**
 * Writes the text exposition of `metrics` to `path` atomically: into a temporary file beside it (a name ending
 * in `.tmp`, which node_exporter's textfile collector skips), then renamed over `path`, so a reader sees the old
 * document or the new one, never part of one. Resolves to the text written.
 *
 * @example
 * await writeMetricsFile(metrics, '/var/lib/prometheus/node-exporter/pidfd-lmk.prom');
 */
export async function writeMetricsFile(metrics: LmkMetrics, path: string): Promise<string> {
  if (!(metrics instanceof LmkMetrics)) throw invalidType('metrics', 'an instance of LmkMetrics', metrics);
  if (typeof path !== 'string' || path === '') throw invalidType('path', 'a non-empty string', path);
  const text = await metrics.text();
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  try {
    await writeFile(tmp, text, { mode: 0o644, flag: 'wx' });
    await rename(tmp, path);
  } catch (err) {
    await unlink(tmp).catch(() => {});
    throw err;
  }
  return text;
}

/**
 * A metrics file rewritten every `interval` ms by `startMetricsFile`.
 *
 * @example
 * const file: MetricsFileWriter = startMetricsFile(metrics, path, 15_000, (err) => console.error(err.message));
 * await file.stop();
 */
export interface MetricsFileWriter {
  /** Stops the rewriting; resolves once a write in progress has finished. The file is left in place. */
  stop(): Promise<void>;
}

/**
 * Writes the metrics file now and every `intervalMs` ms after (never two writes at once) until `stop()`. A failed
 * write goes to `onError` (default: a process warning) and the next one is tried on time. The timer never keeps
 * the process alive.
 *
 * @example
 * const file = startMetricsFile(metrics, '/var/lib/prometheus/node-exporter/pidfd-lmk.prom', 15_000);
 * process.once('SIGTERM', () => void file.stop());
 */
export function startMetricsFile(
  metrics: LmkMetrics,
  path: string,
  intervalMs: number,
  onError: (err: Error) => void = (err) => process.emitWarning(err),
): MetricsFileWriter {
  if (!(metrics instanceof LmkMetrics)) throw invalidType('metrics', 'an instance of LmkMetrics', metrics);
  if (typeof path !== 'string' || path === '') throw invalidType('path', 'a non-empty string', path);
  validateInteger(intervalMs, 'intervalMs', 100, 2 ** 31 - 1);
  if (typeof onError !== 'function') throw invalidType('onError', 'a function', onError);
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let pending: Promise<void> = Promise.resolve();
  const tick = (): void => {
    pending = writeMetricsFile(metrics, path).then(
      () => {},
      (err: Error) => onError(err),
    );
    void pending.then(() => {
      if (stopped) return;
      timer = setTimeout(tick, intervalMs);
      timer.unref();
    });
  };
  tick();
  return {
    async stop() {
      stopped = true;
      clearTimeout(timer);
      await pending;
    },
  };
}
