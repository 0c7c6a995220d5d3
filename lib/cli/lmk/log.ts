// How `pidfd lmk` writes what it does: one line per record (a decision, a kill, a report...), as JSON, as human
// text, or as human text with the syslog priority prefix (`<4>`) that journald reads from a service's stdout.
import type {
  KernelOomEvent,
  KillEvent,
  PressureStartEvent,
  ReclaimEvent,
  RecoveredEvent,
  TrimEvent,
} from '../../index';
import { mib } from '../format';

/** One thing to log: `event` names it, the rest are its fields (the library's event objects, spread). */
export type LogRecord = { event: string } & Record<string, unknown>;

/** `auto`: syslog priorities when stdout is the journal (systemd sets JOURNAL_STREAM), else plain human lines. */
export type LogFormat = 'auto' | 'human' | 'syslog' | 'json';

// syslog(3) priorities: what an operator filters on (journalctl -p warning shows the kills and the failures).
const ERR = 3;
const WARNING = 4;
const NOTICE = 5;
const INFO = 6;

/** The priority of a record. */
export function priority(r: LogRecord): number {
  switch (r.event) {
    case 'error':
    case 'kernel-oom':
    case 'config-error':
      return ERR;
    case 'kill':
      return r.dryRun ? NOTICE : WARNING;
    case 'hook':
      return r.ok === false ? WARNING : INFO;
    case 'protect':
      return r.done === false ? NOTICE : INFO;
    case 'pressure':
      return NOTICE;
    default:
      return INFO;
  }
}

const ms = (x: number): string => `${x.toFixed(1)} ms`;

/** Fields of the records that are not the library's events. */
interface ServiceFields {
  headroom: { available: number; total: number };
  threshold: number | null;
  memoryCgroup: string | null;
  mode: string | null;
  reason: string | null;
  fallbackReason: string | null;
  available: number;
  total: number;
  swapFree: number;
  swapTotal: number;
  psi?: { some: number; full: number };
  candidates: number;
  episodes: number;
  kills: number;
  kernelOomKills: number;
  hook: string;
  pid: number;
  status: number | null;
  signal: string | null;
  timedOut: boolean;
  ms: number;
  output: string;
  what: string;
  done: boolean;
  detail?: string;
  file: string;
  message: string;
  code: string | null;
  address: string;
}

/** The human text of a record (without time or priority). */
export function humanText(rec: LogRecord): string {
  const dry = rec.dryRun ? ' (dry run)' : '';
  switch (rec.event) {
    case 'start': {
      const r = rec as unknown as ServiceFields & { dryRun: boolean };
      return (
        `watching ${r.memoryCgroup ? `memory cgroup ${r.memoryCgroup}` : 'system memory'}: ` +
        `${mib(r.headroom.available)} of ${mib(r.headroom.total)} available` +
        `${r.threshold != null ? `, acting below ${mib(r.threshold)}` : ''}${dry}`
      );
    }
    case 'sampling': {
      const r = rec as unknown as ServiceFields;
      return `sampling: ${r.mode === 'native' ? 'native sampler thread' : `timers (${r.reason})`}`;
    }
    case 'psi': {
      const r = rec as unknown as ServiceFields;
      return `PSI: ${r.mode === 'trigger' ? 'kernel trigger' : `polling (${r.fallbackReason})`}`;
    }
    case 'pressure': {
      const r = rec as unknown as PressureStartEvent;
      return `episode ${r.episode}: pressure: ${r.reason}`;
    }
    case 'reclaim': {
      const r = rec as unknown as ReclaimEvent;
      return `  reclaim ${r.pid} (${r.comm}): advised ${mib(r.advised)}, RSS ${mib(r.rssBefore)} -> ${mib(r.rssAfter)}${dry}`;
    }
    case 'trim': {
      const r = rec as unknown as TrimEvent;
      return `  trim ${r.pid} (${r.comm}): freed ${mib(r.freed)}${dry}`;
    }
    case 'kill': {
      const r = rec as unknown as KillEvent;
      return r.dryRun
        ? `  would kill ${r.pid} (${r.comm}, oom_score_adj ${r.oomScoreAdj}, PSS ${mib(r.pss)})${dry}`
        : `  killed ${r.pid} (${r.comm}, oom_score_adj ${r.oomScoreAdj}, PSS ${mib(r.pss)}): dead after ` +
            `${ms(r.deathMs)}, ${mib(r.bytesFreed)} back after ${ms(r.memoryMs)}` +
            `${r.released === undefined ? '' : `, release() ${r.released}`}` +
            `${r.preKillResult === undefined ? '' : `, pre-kill ${r.preKillResult} after ${ms(r.preKillMs ?? 0)}`}`;
    }
    case 'recovered': {
      const r = rec as unknown as RecoveredEvent;
      return `recovered: ${mib(r.available)} available`;
    }
    case 'kernel-oom': {
      const r = rec as unknown as KernelOomEvent;
      return (
        `the kernel's OOM killer killed ${r.count} in the budget (${r.kills} since start), ` +
        `${mib(r.available)} available`
      );
    }
    case 'report': {
      const r = rec as unknown as ServiceFields;
      return (
        `report: ${mib(r.available)} of ${mib(r.total)} available` +
        `${r.swapTotal > 0 ? `, swap ${mib(r.swapFree)} of ${mib(r.swapTotal)} free` : ', no swap'}` +
        `${r.psi ? `, PSI memory some ${r.psi.some.toFixed(2)} full ${r.psi.full.toFixed(2)} (avg10)` : ''}` +
        `, ${r.candidates} candidates, ${r.episodes} episodes, ${r.kills} kills, ${r.kernelOomKills} kernel OOM kills`
      );
    }
    case 'hook': {
      const r = rec as unknown as ServiceFields;
      const how = r.timedOut ? `killed at its timeout (${ms(r.ms)})` : `exit ${r.status ?? r.signal} after ${ms(r.ms)}`;
      const last = r.output ? `: ${r.output.trim().split('\n').slice(-1)[0]}` : '';
      return `  ${r.hook} for ${r.pid}: ${how}${last}`;
    }
    case 'protect': {
      const r = rec as unknown as ServiceFields;
      return `self-protection: ${r.what} ${r.done ? 'set' : 'not set'}${r.detail ? ` (${r.detail})` : ''}`;
    }
    case 'prewarm': {
      const r = rec as unknown as { candidates: number; ms: number; faults: number };
      return `prewarmed: ${r.candidates} candidates listed and ranked in ${ms(r.ms)} (${r.faults} page faults)`;
    }
    case 'reload':
      return `reloaded ${(rec as unknown as ServiceFields).file}`;
    case 'config-error':
      return `kept the running settings: ${(rec as unknown as ServiceFields).message}`;
    case 'listen': {
      const r = rec as unknown as ServiceFields;
      return `${r.what} on ${r.address}`;
    }
    case 'stop':
      return `stopped after ${(rec as unknown as ServiceFields).episodes} episode(s)`;
    case 'error': {
      const r = rec as unknown as ServiceFields;
      return `error: ${r.message}${r.code ? ` (${r.code})` : ''}`;
    }
    default:
      return `${rec.event}: ${JSON.stringify(rec)}`;
  }
}

// BigInts (addresses, for instance) become strings in JSON.
const jsonValue = (_key: string, value: unknown): unknown => (typeof value === 'bigint' ? value.toString() : value);

/** A line writer for one format. */
export function logger(format: LogFormat, write: (line: string) => void, env = process.env): (r: LogRecord) => void {
  const f = format === 'auto' ? (env.JOURNAL_STREAM ? 'syslog' : 'human') : format;
  if (f === 'json') return (r) => write(JSON.stringify(r, jsonValue));
  if (f === 'syslog') return (r) => write(`<${priority(r)}>${humanText(r).trimStart()}`);
  return (r) => write(`${new Date().toISOString().slice(11, 23)} ${humanText(r)}`);
}
