import { type Pressure, type PressureResource, readPressure, watchPressure } from '../index';
import { type Command, parseMs, UsageError } from './command';

const RESOURCES: PressureResource[] = ['cpu', 'memory', 'io'];
const line = (r: string, p: Pressure): string => {
  const f = (l: Pressure['some'] | undefined): string =>
    l
      ? `${l.avg10.toFixed(2).padStart(6)} ${l.avg60.toFixed(2).padStart(6)} ${l.avg300.toFixed(2).padStart(6)}`
      : '     -      -      -';
  return `${r.padEnd(6)}  some ${f(p.some)}   full ${f(p.full)}`;
};

/** `pidfd pressure`: PSI now, or a live view (--watch), or trigger events (--threshold/--window). */
export const pressure: Command = {
  name: 'pressure',
  summary: 'Pressure Stall Information: the averages now, a live view, or threshold events',
  usage:
    'pidfd pressure [--resource cpu|memory|io] [--cgroup DIR] [--watch [--interval 1s] [--count N]] ' +
    '[--threshold 150ms --window 2s] [--json]',
  description: [
    'Reads /proc/pressure/<resource> (or <DIR>/<resource>.pressure of a cgroup v2 group): the share of time some',
    '(or all: full) tasks stalled waiting for the resource, averaged over 10, 60 and 300 s, in percent.',
    '',
    'Options:',
    '  --resource R      cpu, memory or io (default: all three)',
    '  --cgroup DIR      a cgroup v2 directory instead of the whole system',
    '  --watch           a live view, updated every --interval (default 1s); also the stall (ms) since the last line',
    '  --count N         with --watch: stop after N updates',
    '  --threshold T --window W   report each time tasks stalled T within W (one resource; default memory):',
    '                    a kernel PSI trigger where the kernel accepts it, else sampling; the mode is printed',
    '  --kind some|full  for --threshold (default some)',
    '',
    'Runs until interrupted when watching. Exit status: 0, 1 when PSI is unavailable.',
    '',
    'Examples: pidfd pressure --watch            pidfd pressure --resource memory --threshold 150ms --window 2s',
  ].join('\n'),
  options: {
    resource: { type: 'string' },
    cgroup: { type: 'string' },
    watch: { type: 'boolean' },
    interval: { type: 'string' },
    count: { type: 'string' },
    threshold: { type: 'string' },
    window: { type: 'string' },
    kind: { type: 'string' },
  },
  async run(ctx) {
    if (ctx.positionals.length > 0) throw new UsageError(`unexpected argument: ${ctx.positionals[0]}`);
    const v = ctx.values;
    const one = v.resource as string | undefined;
    if (one !== undefined && !RESOURCES.includes(one as PressureResource))
      throw new UsageError(`--resource must be cpu, memory or io, not ${one}`);
    const cgroup = v.cgroup as string | undefined;
    const count = v.count === undefined ? Infinity : Number(v.count);
    if (!(count >= 1) || !Number.isInteger(count === Infinity ? 1 : count))
      throw new UsageError('--count must be a positive integer');

    if (v.threshold !== undefined || v.window !== undefined) {
      if (v.threshold === undefined || v.window === undefined)
        throw new UsageError('--threshold and --window go together');
      const kind = (v.kind as string | undefined) ?? 'some';
      if (kind !== 'some' && kind !== 'full') throw new UsageError('--kind must be some or full');
      const w = watchPressure({
        resource: (one ?? 'memory') as PressureResource,
        kind,
        cgroup,
        threshold: parseMs(v.threshold as string, '--threshold'),
        window: parseMs(v.window as string, '--window'),
        signal: ctx.signal,
      });
      ctx.emit({ mode: w.mode, fallbackReason: w.fallbackReason ?? null, path: w.path });
      ctx.print(
        `watching ${w.path}: ${kind} ${w.threshold} ms in ${w.window} ms, ` +
          (w.mode === 'trigger' ? 'kernel trigger' : `polling every ${w.interval} ms (${w.fallbackReason})`),
      );
      let n = 0;
      for await (const e of w) {
        ctx.emit(e);
        ctx.print(
          `${new Date(e.time).toISOString()}  ${e.resource} ${e.kind}: ` +
            `${e.stall.toFixed(0)} ms stalled in ${e.span.toFixed(0)} ms`,
        );
        if (++n >= count) break;
      }
      w.close();
      return 0;
    }

    const resources = one ? [one as PressureResource] : RESOURCES;
    const read = (): Pressure[] => resources.map((r) => readPressure(r, { cgroup }));
    if (!v.watch) {
      const now = read();
      ctx.emit(Object.fromEntries(resources.map((r, i) => [r, now[i]])));
      ctx.print(`${cgroup ?? 'system'}          avg10  avg60 avg300          avg10  avg60 avg300`);
      resources.forEach((r, i) => ctx.print(line(r, now[i])));
      return 0;
    }
    const interval = parseMs((v.interval as string | undefined) ?? '1s', '--interval');
    if (interval < 10) throw new UsageError('--interval must be at least 10 ms');
    const tty = !ctx.json && process.stdout.isTTY === true;
    let prev = read();
    let drawn = 0;
    for (let n = 0; n < count && !ctx.signal.aborted; n++) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, interval);
        ctx.signal.addEventListener(
          'abort',
          () => {
            clearTimeout(t);
            resolve();
          },
          { once: true },
        );
      });
      if (ctx.signal.aborted) break;
      const now = read();
      const time = new Date().toISOString();
      const stall = now.map((p, i) => (p.some.total - prev[i].some.total) / 1000);
      ctx.emit({ time, ...Object.fromEntries(resources.map((r, i) => [r, { ...now[i], someStallMs: stall[i] }])) });
      const lines = [
        `${time}  ${cgroup ?? 'system'}  (some stall in the last ${interval} ms)`,
        ...resources.map((r, i) => `${line(r, now[i])}   +${stall[i].toFixed(1)} ms`),
      ];
      if (tty && drawn > 0) process.stdout.write(`\x1b[${drawn}A`);
      for (const l of lines) ctx.print(tty ? `\x1b[2K${l}` : l);
      drawn = lines.length;
      prev = now;
    }
    return 0;
  },
};
