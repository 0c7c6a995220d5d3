// The settings of `pidfd lmk`, as one table: each key is both a command-line flag (`--min-available`) and a key
// of the config file (`min-available = "10%"`), with one parser for its values from either source. The flags'
// parseArgs options, the file's validation, the published JSON Schema and the docs' reference all come from this
// table, so that a setting cannot exist in one and be missing from another.
import type { ParseArgsConfig } from 'node:util';
import type { CandidateMatcher } from '../../index';
import { parseMs, parsePid, parseSignal, UsageError } from '../command';

/** How a setting's value is written and read. */
export type Kind =
  | 'amount' // a percentage (10%) or a size (512M, 1.5GiB, or bytes as a number)
  | 'duration' // 500, 500ms, 1.5s, 2m (a number: ms)
  | 'interval' // a duration, or adaptive bounds MIN..MAX
  | 'psi' // 'some 150ms/2s'
  | 'list' // pids, command names and /regexps/ (a TOML array, or comma-separated on the command line)
  | 'signal'
  | 'path'
  | 'address' // HOST:PORT
  | 'command' // a shell command
  | 'boolean'
  | 'integer'
  | 'number'
  | 'enum';

/** One setting. */
export interface Setting {
  key: string;
  kind: Kind;
  /** One line of help (the flag's, the file key's and the schema's description). */
  help: string;
  /** For `enum`. */
  values?: readonly string[];
  /** For `integer` and `number`. */
  min?: number;
  max?: number;
  /** An integer setting that also takes the word `keep` (leave the process's own value as it is). */
  keep?: boolean;
  /** For `boolean`: its default. A default-true boolean is turned off with `--no-KEY` (or `KEY = false`). */
  default?: boolean;
  /** For a default-true boolean: the help of `--no-KEY`. */
  off?: string;
  /** The default as the help shows it. */
  shows?: string;
  /** Only on the command line (an action, not a setting): not a key of the config file. */
  cliOnly?: boolean;
  /** The section of the reference it is listed in. */
  group: 'candidates' | 'when' | 'who' | 'what' | 'service';
}

/** A parsed value. */
export type Value =
  | string // paths, commands, addresses, enum words, `10%` amounts, signal names
  | number
  | boolean
  | CandidateMatcher[]
  | { min: number; max: number }
  | { kind: 'some' | 'full'; threshold: number; window: number };

/** Every setting, in the order the help and the reference list them. */
export const SETTINGS: readonly Setting[] = [
  { key: 'config', kind: 'path', group: 'service', cliOnly: true, help: 'read the settings from this TOML file first' },
  {
    key: 'cgroup',
    kind: 'path',
    group: 'candidates',
    help: 'the processes in a cgroup (v1 or v2 directory); if it is a memory cgroup, its headroom is the budget',
  },
  { key: 'children-of', kind: 'integer', min: 1, max: 4194304, group: 'candidates', help: 'the children of a process' },
  {
    key: 'min-available',
    kind: 'amount',
    group: 'when',
    shows: '10% when no other rule is set',
    help: 'act when available memory is below this: a percentage of the budget (10%) or a size (512M)',
  },
  {
    key: 'min-swap-free',
    kind: 'amount',
    group: 'when',
    help: 'act when free swap is below this (a percentage of the swap, or a size); ignored without swap',
  },
  {
    key: 'psi',
    kind: 'psi',
    group: 'when',
    help: "act when tasks stalled T within W (e.g. 'some 150ms/2s'; a kernel trigger where the kernel takes the window)",
  },
  {
    key: 'psi-resource',
    kind: 'enum',
    values: ['memory', 'cpu', 'io'],
    group: 'when',
    shows: 'memory',
    help: 'the resource of --psi and --critical',
  },
  { key: 'psi-cgroup', kind: 'path', group: 'when', help: "a cgroup v2 group's pressure instead of the system's" },
  {
    key: 'when',
    kind: 'enum',
    values: ['all', 'any'],
    group: 'when',
    shows: 'all',
    help: 'how the rules combine: all (each must say so) or any (one is enough)',
  },
  {
    key: 'critical',
    kind: 'duration',
    group: 'when',
    help: 'act, whatever the rules say, after a full memory stall of this much in 1 s (e.g. 200ms)',
  },
  {
    key: 'interval',
    kind: 'interval',
    group: 'when',
    shows: '10ms..1s',
    help: 'a fixed sampling period, or adaptive bounds MIN..MAX',
  },
  {
    key: 'hysteresis',
    kind: 'number',
    min: 0,
    max: 10,
    group: 'when',
    shows: '0.1',
    help: 'the episode ends above the threshold × (1 + this)',
  },
  { key: 'memory-cgroup', kind: 'path', group: 'when', help: 'measure available memory in this memory cgroup' },
  { key: 'protect', kind: 'list', group: 'who', help: 'never act on these' },
  { key: 'prefer', kind: 'list', group: 'who', help: 'kill these first' },
  { key: 'avoid', kind: 'list', group: 'who', help: 'kill these only when nothing else is left' },
  { key: 'min-victim', kind: 'amount', group: 'who', help: 'rank candidates smaller than this after every larger one' },
  {
    key: 'kill-mode',
    kind: 'enum',
    values: ['process', 'group', 'tree', 'cgroup'],
    group: 'what',
    shows: 'process',
    help: 'what a kill takes: the process, its process group, it and its descendants, or its whole cgroup',
  },
  {
    key: 'grace',
    kind: 'duration',
    group: 'what',
    help: 'SIGTERM first, SIGKILL after this or when memory is critical',
  },
  { key: 'grace-signal', kind: 'signal', group: 'what', shows: 'SIGTERM', help: 'the first signal of a graceful kill' },
  {
    key: 'grace-critical',
    kind: 'amount',
    group: 'what',
    shows: 'half of min-available',
    help: 'the level at which a graceful kill escalates at once',
  },
  { key: 'trim-signal', kind: 'signal', group: 'what', help: 'ask candidates that catch this signal to free memory' },
  { key: 'trim-always', kind: 'list', group: 'what', help: 'send the trim signal to these even without a handler' },
  { key: 'trim-deadline', kind: 'duration', group: 'what', shows: '1s', help: 'how long trimming may take' },
  {
    key: 'reclaim',
    kind: 'boolean',
    default: true,
    group: 'what',
    help: 'the reclaim step (process_madvise pageout)',
    off: 'skip the reclaim step',
  },
  {
    key: 'reclaim-anon',
    kind: 'boolean',
    default: false,
    group: 'what',
    help: 'advise anonymous memory even without swap',
  },
  { key: 'kill-timeout', kind: 'duration', group: 'what', shows: '5s', help: 'how long to wait for a victim to die' },
  {
    key: 'release',
    kind: 'boolean',
    default: true,
    group: 'what',
    help: 'process_mrelease after each SIGKILL',
    off: 'no process_mrelease after the SIGKILL',
  },
  {
    key: 'pre-kill',
    kind: 'command',
    group: 'what',
    help: 'a shell command run before each kill (the victim in PIDFD_LMK_* variables); the kill waits for it',
  },
  {
    key: 'pre-kill-timeout',
    kind: 'duration',
    group: 'what',
    shows: '2s',
    help: 'the longest a pre-kill delays a kill',
  },
  {
    key: 'post-kill',
    kind: 'command',
    group: 'what',
    help: 'a shell command run after each kill (the kill in PIDFD_LMK_* variables); never delays the next',
  },
  { key: 'post-kill-timeout', kind: 'duration', group: 'what', shows: '10s', help: 'when a post-kill is killed' },
  { key: 'dry-run', kind: 'boolean', default: false, group: 'what', help: 'decide and log, act on nothing' },
  {
    key: 'oom-score-adj',
    kind: 'integer',
    min: -1000,
    max: 1000,
    keep: true,
    group: 'service',
    shows: '-1000',
    help: "the killer's own oom_score_adj, or keep",
  },
  {
    key: 'nice',
    kind: 'integer',
    min: -20,
    max: 19,
    keep: true,
    group: 'service',
    shows: '-20',
    help: "the killer's own nice value, or keep",
  },
  {
    key: 'lock',
    kind: 'boolean',
    default: true,
    group: 'service',
    help: "lock the killer's own code in memory",
    off: "leave the killer's own code unlocked",
  },
  {
    key: 'log-format',
    kind: 'enum',
    values: ['auto', 'human', 'syslog', 'json'],
    group: 'service',
    shows: 'auto',
    help: 'human lines, the same with syslog priorities (<4>...), or JSON; auto: syslog under journald, else human',
  },
  {
    key: 'report',
    kind: 'duration',
    group: 'service',
    help: 'log a report (memory, swap, PSI, candidates) this often',
  },
  { key: 'metrics', kind: 'address', group: 'service', help: 'serve Prometheus metrics on HOST:PORT at /metrics' },
  {
    key: 'metrics-file',
    kind: 'path',
    group: 'service',
    help: "write the metrics to this file (node_exporter's textfile collector), replaced atomically",
  },
  {
    key: 'metrics-interval',
    kind: 'duration',
    group: 'service',
    shows: '15s',
    help: 'how often metrics-file is rewritten',
  },
  {
    key: 'status-socket',
    kind: 'path',
    group: 'service',
    help: 'answer `pidfd lmk status` on this unix socket',
  },
  { key: 'once', kind: 'boolean', default: false, group: 'service', cliOnly: true, help: 'one evaluation, then exit' },
  {
    key: 'check-config',
    kind: 'boolean',
    default: false,
    group: 'service',
    cliOnly: true,
    help: 'validate the settings, print them as TOML, and exit',
  },
  {
    key: 'print-unit',
    kind: 'boolean',
    default: false,
    group: 'service',
    cliOnly: true,
    help: 'print a systemd unit for this installation, and exit',
  },
];

const byKey = new Map(SETTINGS.map((s) => [s.key, s]));

/** The setting of a key, or undefined. */
export function setting(key: string): Setting | undefined {
  return byKey.get(key);
}

/** The flags' parseArgs options: `--KEY VALUE` for valued settings, `--KEY` / `--no-KEY` for booleans. */
export function parseArgsOptions(): NonNullable<ParseArgsConfig['options']> {
  const out: NonNullable<ParseArgsConfig['options']> = {};
  for (const s of SETTINGS) {
    if (s.kind === 'boolean') {
      out[s.key] = { type: 'boolean' };
      if (!s.cliOnly) out[`no-${s.key}`] = { type: 'boolean' };
    } else {
      out[s.key] = { type: 'string' };
    }
  }
  return out;
}

const UNIT: Record<string, number> = { '': 1, B: 1, K: 2 ** 10, M: 2 ** 20, G: 2 ** 30, T: 2 ** 40 };

/** `10%`, or bytes with an optional unit: `512M`, `1.5GiB`, `1048576`. */
export function parseAmount(text: string, what: string): number | `${number}%` {
  const m = /^(\d+(?:\.\d+)?)\s*(%|[KMGT]?(?:i?B)?)?$/i.exec(text.trim());
  if (!m)
    throw new UsageError(`${what} must be a percentage (10%) or a size (512M, 1GiB), not ${JSON.stringify(text)}`);
  if (m[2] === '%') {
    if (Number(m[1]) > 100) throw new UsageError(`${what} must be at most 100%, not ${text}`);
    return `${Number(m[1])}%`;
  }
  return Math.round(Number(m[1]) * UNIT[(m[2] ?? '').charAt(0).toUpperCase()]);
}

/** `some 150ms/2s` → kind, threshold, window. */
export function parsePsi(text: string, what = '--psi'): { kind: 'some' | 'full'; threshold: number; window: number } {
  const m = /^\s*(some|full)\s+(\S+?)\s*\/\s*(\S+)\s*$/.exec(text);
  if (!m) throw new UsageError(`${what} must look like 'some 150ms/2s', not ${JSON.stringify(text)}`);
  return {
    kind: m[1] as 'some' | 'full',
    threshold: parseMs(m[2], `${what} threshold`),
    window: parseMs(m[3], `${what} window`),
  };
}

/** `10ms..1s` (adaptive bounds) or one duration (a fixed period). */
export function parseInterval(text: string, what = '--interval'): number | { min: number; max: number } {
  const m = /^(.+?)\.\.(.+)$/.exec(text.trim());
  const iv = m ? { min: parseMs(m[1], `${what} minimum`), max: parseMs(m[2], `${what} maximum`) } : parseMs(text, what);
  if (typeof iv === 'number' ? iv < 1 : iv.min < 1 || iv.min > iv.max)
    throw new UsageError(`${what} must be at least 1ms (and MIN <= MAX), not ${JSON.stringify(text)}`);
  return iv;
}

/** One list entry: a pid, a command name or a /regexp/flags. */
function parseMatcher(w: string | number, what: string): CandidateMatcher {
  if (typeof w === 'number') return parsePid(String(w), what);
  if (/^\d+$/.test(w)) return parsePid(w, what);
  const re = /^\/(.*)\/([a-z]*)$/.exec(w);
  if (!re) return w;
  try {
    return new RegExp(re[1], re[2]);
  } catch {
    throw new UsageError(`${what}: ${w} is not a valid regular expression`);
  }
}

const typeName = (v: unknown): string => (Array.isArray(v) ? 'an array' : v === null ? 'null' : `a ${typeof v}`);

/**
 * Parses one setting's value, from a flag (always a string, lists comma-separated) or from the config file (TOML
 * types: numbers for sizes in bytes and durations in ms, arrays for lists). `what` names it in errors
 * (`--min-available` or `min-available`).
 */
export function parseValue(s: Setting, raw: unknown, what: string): Value {
  const wrongType = (expected: string): UsageError =>
    new UsageError(`${what} must be ${expected}, not ${typeName(raw)} (${JSON.stringify(raw)})`);
  if (s.kind === 'boolean') {
    if (typeof raw !== 'boolean') throw wrongType('true or false');
    return raw;
  }
  if (s.kind === 'list') {
    const items: unknown[] = Array.isArray(raw)
      ? raw
      : typeof raw === 'string'
        ? raw
            .split(',')
            .map((w) => w.trim())
            .filter((w) => w !== '')
        : [raw];
    return items.map((w) => {
      if (typeof w !== 'string' && typeof w !== 'number') throw wrongType('a list of pids, names and /regexps/');
      return parseMatcher(w, what);
    });
  }
  if (typeof raw === 'number') {
    if (s.kind === 'amount') {
      if (!(Number.isInteger(raw) && raw >= 0)) throw new UsageError(`${what} must be a byte count >= 0, not ${raw}`);
      return raw;
    }
    if (s.kind === 'duration') {
      if (!(Number.isInteger(raw) && raw >= 0 && raw <= 2 ** 31 - 1))
        throw new UsageError(`${what} must be a whole number of ms from 0 to 2147483647, not ${raw}`);
      return raw;
    }
    if (s.kind === 'interval') return parseInterval(`${raw}ms`, what);
    if (s.kind === 'signal') return parseSignal(String(raw), what);
  }
  if (typeof raw === 'number' || typeof raw === 'string') {
    if (s.kind === 'integer' || s.kind === 'number') {
      if (s.keep && raw === 'keep') return 'keep';
      const n = typeof raw === 'number' ? raw : Number(raw.trim() === '' ? NaN : raw);
      const int = s.kind === 'integer';
      if (!Number.isFinite(n) || (int && !Number.isInteger(n)))
        throw wrongType(`${int ? 'an integer' : 'a number'}${s.keep ? ' or keep' : ''}`);
      if (n < s.min! || n > s.max!) throw new UsageError(`${what} must be from ${s.min} to ${s.max}, not ${n}`);
      return n;
    }
  }
  if (typeof raw !== 'string') throw wrongType(s.kind === 'enum' ? orList(s.values!) : 'a string');
  switch (s.kind) {
    case 'amount':
      return parseAmount(raw, what);
    case 'duration':
      return parseMs(raw, what);
    case 'interval':
      return parseInterval(raw, what);
    case 'psi':
      return parsePsi(raw, what);
    case 'signal':
      return parseSignal(raw, what);
    case 'enum':
      if (!s.values!.includes(raw))
        throw new UsageError(`${what} must be ${orList(s.values!)}, not ${JSON.stringify(raw)}`);
      return raw;
    case 'address':
      if (!/^(\[[0-9a-fA-F:.]+\]|[^:[\]\s]*):\d{1,5}$/.test(raw) || Number(raw.slice(raw.lastIndexOf(':') + 1)) > 65535)
        throw new UsageError(
          `${what} must be HOST:PORT (127.0.0.1:9464, [::1]:9464, :9464 for every address), not ${JSON.stringify(raw)}`,
        );
      return raw;
    default:
      if (raw === '') throw new UsageError(`${what} must not be empty`);
      return raw; // path, command
  }
}

const orList = (vs: readonly string[]): string =>
  vs.length === 1 ? vs[0] : `${vs.slice(0, -1).join(', ')} or ${vs[vs.length - 1]}`;
