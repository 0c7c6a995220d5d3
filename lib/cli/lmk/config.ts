// The settings of `pidfd lmk` from their two sources, the config file (TOML, one flat table of the keys in
// settings.ts) and the command line (which overrides the file), merged into one map of parsed values; and that map
// turned into the killer's options. Every error names the key (or flag), the value and the reason.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse as parseToml, stringify as stringifyToml } from 'smol-toml';
import type { CandidateMatcher, LowMemoryKillerOptions } from '../../index';
import { UsageError } from '../command';
import { parseValue, type Setting, setting, SETTINGS, type Value } from './settings';

/** A config file that cannot be read or holds a bad value: the CLI prints it and exits with status 1. */
export class ConfigError extends Error {
  override name = 'ConfigError';
  readonly code = 'ERR_PIDFD_CONFIG';
}

/** One setting's value and where it came from, so that an error names the flag or the file's key. */
export interface Entry {
  value: Value;
  from: 'flag' | 'file';
}

/** The effective settings: key → value and source. */
export type Settings = Map<string, Entry>;

/** Reads and checks a config file; throws ConfigError naming the file and the key. */
export function readConfigFile(path: string): Settings {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new ConfigError(`config ${path}: cannot be read: ${e.message}`);
  }
  let doc: Record<string, unknown>;
  try {
    doc = parseToml(text);
  } catch (err) {
    const e = err as Error & { line?: number; column?: number };
    const at = e.line !== undefined ? ` at line ${e.line}, column ${e.column}` : '';
    throw new ConfigError(`config ${path}: not valid TOML${at}: ${e.message.split('\n')[0]}`);
  }
  const out: Settings = new Map();
  for (const [key, raw] of Object.entries(doc)) {
    if (raw !== null && typeof raw === 'object' && !Array.isArray(raw))
      throw new ConfigError(`config ${path}: ${key} must be a value, not a table (the file is one flat table)`);
    const s = setting(key);
    if (s === undefined || s.cliOnly) {
      const near = closest(key);
      throw new ConfigError(
        `config ${path}: unknown key ${JSON.stringify(key)}${near ? ` (did you mean ${near}?)` : ''}`,
      );
    }
    try {
      out.set(key, { value: parseValue(s, raw, key), from: 'file' });
    } catch (err) {
      throw new ConfigError(`config ${path}: ${(err as Error).message}`);
    }
  }
  return out;
}

/** The settings given as flags (node:util parseArgs values): `--no-KEY` turns a boolean off. */
export function flagSettings(values: Record<string, unknown>): Settings {
  const out: Settings = new Map();
  for (const s of SETTINGS) {
    const v = values[s.key];
    if (s.kind === 'boolean') {
      if (v === true && values[`no-${s.key}`] === true) throw new UsageError(`--${s.key} or --no-${s.key}, not both`);
      if (v === true) out.set(s.key, { value: true, from: 'flag' });
      else if (values[`no-${s.key}`] === true) out.set(s.key, { value: false, from: 'flag' });
    } else if (typeof v === 'string') {
      out.set(s.key, { value: parseValue(s, v, `--${s.key}`), from: 'flag' });
    }
  }
  return out;
}

/** The file's settings with the flags' on top. */
export function merge(file: Settings, flags: Settings): Settings {
  return new Map([...file, ...flags]);
}

/** A typed view of the settings with errors that name their source. */
export class View {
  constructor(
    readonly settings: Settings,
    readonly file?: string,
  ) {}
  get<T extends Value>(key: string): T | undefined {
    return this.settings.get(key)?.value as T | undefined;
  }
  /** A boolean's value, or its default. */
  flag(key: string): boolean {
    return (this.get<boolean>(key) ?? setting(key)!.default) === true;
  }
  /** How an error names a key: the flag, or the file's key. */
  name(key: string): string {
    return this.settings.get(key)?.from === 'file' ? `${key} (in ${this.file})` : `--${key}`;
  }
  fail(message: string): never {
    throw this.file !== undefined ? new ConfigError(`config ${this.file}: ${message}`) : new UsageError(message);
  }
}

/** The killer's options from the settings; throws naming the keys when they do not fit together. */
export function killerOptions(v: View): LowMemoryKillerOptions {
  const cgroup = v.get<string>('cgroup');
  const childrenOf = v.get<number>('children-of');
  if (cgroup !== undefined && childrenOf !== undefined)
    v.fail(`${v.name('cgroup')} or ${v.name('children-of')}, not both`);
  if (cgroup === undefined && childrenOf === undefined)
    v.fail('say who may be killed: cgroup (--cgroup DIR) or children-of (--children-of PID)');
  const o: LowMemoryKillerOptions = {
    candidates: cgroup !== undefined ? { cgroup } : { childrenOf: childrenOf! },
    dryRun: v.flag('dry-run'),
  };
  o.minAvailable = v.get('min-available');
  o.minSwapFree = v.get('min-swap-free');
  const res = v.get<'memory' | 'cpu' | 'io'>('psi-resource');
  const psiCgroup = v.get<string>('psi-cgroup');
  const psi = v.get<{ kind: 'some' | 'full'; threshold: number; window: number }>('psi');
  if (psi !== undefined) o.psi = { ...psi, resource: res ?? 'memory', cgroup: psiCgroup };
  const critical = v.get<number>('critical');
  if (critical !== undefined) {
    if (critical < 1 || critical > 1000) v.fail(`${v.name('critical')} is a stall within 1 s: from 1ms to 1s`);
    o.critical = { stall: critical, resource: res, cgroup: psiCgroup };
  }
  if (o.minAvailable === undefined && o.psi === undefined && o.minSwapFree === undefined) o.minAvailable = '10%';
  o.when = v.get('when');
  o.hysteresis = v.get('hysteresis');
  o.interval = v.get<number | { min: number; max: number }>('interval');
  const memCg = v.get<string>('memory-cgroup') ?? (cgroup !== undefined && isMemoryCgroup(cgroup) ? cgroup : undefined);
  if (memCg !== undefined) o.memory = { cgroup: memCg };
  o.protect = v.get<CandidateMatcher[]>('protect');
  o.prefer = v.get<CandidateMatcher[]>('prefer');
  o.avoid = v.get<CandidateMatcher[]>('avoid');
  o.minVictim = v.get('min-victim');
  o.killMode = v.get('kill-mode');
  const grace = v.get<number>('grace');
  const graceSignal = v.get<NodeJS.Signals | number>('grace-signal');
  const graceCritical = v.get<number | `${number}%`>('grace-critical');
  if (grace !== undefined || graceSignal !== undefined || graceCritical !== undefined)
    o.graceful = { timeout: grace, signal: graceSignal, critical: graceCritical };
  const trimSignal = v.get<NodeJS.Signals | number>('trim-signal');
  if (trimSignal !== undefined) {
    o.trim = { signal: trimSignal, deadline: v.get('trim-deadline'), always: v.get<CandidateMatcher[]>('trim-always') };
  } else if (v.get('trim-always') !== undefined || v.get('trim-deadline') !== undefined) {
    v.fail(`${v.name(v.get('trim-always') !== undefined ? 'trim-always' : 'trim-deadline')} needs trim-signal`);
  }
  if (!v.flag('reclaim')) o.reclaim = false;
  else if (v.flag('reclaim-anon')) o.reclaim = { anon: true };
  o.killTimeout = v.get('kill-timeout');
  if (!v.flag('release')) o.release = false;
  for (const k of Object.keys(o) as (keyof LowMemoryKillerOptions)[]) if (o[k] === undefined) delete o[k];
  return o;
}

// A memory cgroup's candidates are its budget too (v1 or v2 counters present).
const isMemoryCgroup = (dir: string): boolean =>
  existsSync(join(dir, 'memory.usage_in_bytes')) || existsSync(join(dir, 'memory.current'));

/** A value as the config file writes it (the inverse of parseValue, up to spelling). */
function fileValue(s: Setting, v: Value): unknown {
  if (s.kind === 'list')
    return (v as CandidateMatcher[]).map((m) => (m instanceof RegExp ? `/${m.source}/${m.flags}` : m));
  if (s.kind === 'psi') {
    const p = v as { kind: string; threshold: number; window: number };
    return `${p.kind} ${p.threshold}ms/${p.window}ms`;
  }
  if (s.kind === 'interval' && typeof v === 'object') {
    const iv = v as { min: number; max: number };
    return `${iv.min}ms..${iv.max}ms`;
  }
  return v;
}

/** The settings as the config file writes them, in the table's order (the effective config of `status`). */
export function toFileObject(settings: Settings): Record<string, unknown> {
  const doc: Record<string, unknown> = {};
  for (const s of SETTINGS) {
    const e = settings.get(s.key);
    if (e !== undefined && !s.cliOnly) doc[s.key] = fileValue(s, e.value);
  }
  return doc;
}

/** The settings as a config file (TOML): what `--check-config` prints. */
export function toToml(settings: Settings): string {
  return `${stringifyToml(toFileObject(settings))}\n`;
}

/** The nearest known key by edit distance, for "did you mean". */
function closest(key: string): string | undefined {
  let best: string | undefined;
  let bestD = Math.max(2, Math.floor(key.length / 3)) + 1;
  for (const s of SETTINGS) {
    if (s.cliOnly) continue;
    const d = distance(key, s.key);
    if (d < bestD) [best, bestD] = [s.key, d];
  }
  return best;
}

function distance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++)
      cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = cur;
  }
  return prev[b.length];
}
