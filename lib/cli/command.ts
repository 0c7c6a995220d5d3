// What every `pidfd` subcommand is made of, and the argument parsers they share. The dispatcher (main.ts) owns
// parsing, --help, --json and the mapping of errors to exit statuses, so a command only says what it does.
import { constants } from 'node:os';
import type { ParseArgsConfig } from 'node:util';

const SIGNALS = constants.signals as Record<string, number | undefined>;

/** node:util parseArgs option definitions. */
export type Options = NonNullable<ParseArgsConfig['options']>;

/** One subcommand of the `pidfd` CLI. */
export interface Command {
  /** The word after `pidfd`, e.g. `wait`. */
  name: string;
  /** One line for `pidfd --help`. */
  summary: string;
  /** The synopsis, e.g. `pidfd wait <pid>... [--any] [--timeout ms] [--json]`. */
  usage: string;
  /** The rest of `pidfd <name> --help`: what it does, its options, its exit statuses, examples. */
  description: string;
  /** Its options; `--json` and `--help` are added by the dispatcher. */
  options: Options;
  /** Runs the command; resolves with the process exit status. */
  run(ctx: Context): Promise<number>;
}

/** What a command gets from the dispatcher. */
export interface Context {
  positionals: string[];
  values: Record<string, string | boolean | string[] | undefined>;
  /** `--json` was given: print nothing for humans, emit records instead. */
  json: boolean;
  /** A line of human output on stdout (nothing under `--json`). */
  print(line: string): void;
  /** One JSON document on its own line on stdout (nothing without `--json`). */
  emit(record: object): void;
  /** A line on stdout, in both modes (for a command that chooses its own format, such as `pidfd lmk`'s logs). */
  line(text: string): void;
  /** A line on stderr, in both modes. */
  warn(line: string): void;
  /** Aborted when the CLI receives SIGINT or SIGTERM. */
  signal: AbortSignal;
}

/** Bad arguments: the dispatcher prints this one line and the usage, and exits with status 2. */
export class UsageError extends Error {
  override name = 'UsageError';
}

/** A pid given on the command line: a decimal integer from 1 to 2^22. */
export function parsePid(text: string, what = 'pid'): number {
  if (!/^\d+$/.test(text)) throw new UsageError(`${what} must be a positive integer, not ${JSON.stringify(text)}`);
  const pid = Number(text);
  if (pid < 1 || pid > 4194304) throw new UsageError(`${what} must be between 1 and 4194304, not ${text}`);
  return pid;
}

const UNITS: Record<string, number> = { '': 1, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** A duration: milliseconds by default, or with a unit: `500`, `500ms`, `1.5s`, `2m`, `1h`. */
export function parseMs(text: string, what = 'duration'): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text.trim());
  if (!m)
    throw new UsageError(`${what} must be a duration such as 500, 500ms, 1.5s or 2m, not ${JSON.stringify(text)}`);
  const ms = Number(m[1]) * UNITS[m[2] ?? ''];
  if (!Number.isFinite(ms) || ms > 2 ** 31 - 1) throw new UsageError(`${what} is too long: ${text}`);
  return Math.round(ms);
}

/** A signal as `TERM`, `SIGTERM` or `15` (case-insensitive names). */
export function parseSignal(text: string, what = 'signal'): NodeJS.Signals | number {
  if (/^\d+$/.test(text)) {
    const n = Number(text);
    if (n > 64) throw new UsageError(`${what} must be a signal number from 0 to 64, not ${text}`);
    return n;
  }
  const upper = text.toUpperCase();
  const name = (upper.startsWith('SIG') ? upper : `SIG${upper}`) as NodeJS.Signals;
  if (SIGNALS[name] === undefined) throw new UsageError(`unknown ${what}: ${text}`);
  return name;
}
