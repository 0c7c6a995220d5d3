// Shared wording and argument helpers of the toolkit's CLI commands (wait, kill, tree-kill, info).
import { type ExitInfo, PidFd } from '../index';
import { parseMs, parseSignal, UsageError, type Context } from './command';

/** "exited with code 0", "killed by SIGKILL", or why the status is unknown. */
export function describeExit(exit: ExitInfo): string {
  if (exit.signal !== null) return `killed by ${exit.signal}`;
  if (exit.code !== null) return `exited with code ${exit.code}`;
  return 'exited (status unknown: not our child, and its parent has not reaped it)';
}

/** Milliseconds for humans. */
export function ms(x: number): string {
  return x < 10 ? `${x.toFixed(2)} ms` : x < 1000 ? `${x.toFixed(1)} ms` : `${(x / 1000).toFixed(2)} s`;
}

/** Opens a pid given on the command line; a missing process is an ESRCH error naming the pid (exit status 1). */
export function openPid(pid: number): PidFd {
  try {
    return PidFd.open(pid);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') {
      throw Object.assign(new Error(`no such process: ${pid}`), { code: 'ESRCH' });
    }
    throw err;
  }
}

/** A string option's value, or undefined. */
export function str(ctx: Context, name: string): string | undefined {
  const v = ctx.values[name];
  return typeof v === 'string' ? v : undefined;
}

/** The options kill and tree-kill share, parsed. */
export function terminateOptions(ctx: Context): {
  signal: NodeJS.Signals | number;
  timeout?: number;
  killSignal?: NodeJS.Signals | number | false;
  killTimeout?: number;
  release: boolean;
  abortSignal: AbortSignal;
} {
  const sig = str(ctx, 'signal');
  const timeout = str(ctx, 'timeout');
  const kill = str(ctx, 'kill-signal');
  const killTimeout = str(ctx, 'kill-timeout');
  return {
    signal: sig === undefined ? 'SIGTERM' : parseSignal(sig),
    timeout: timeout === undefined ? undefined : parseMs(timeout, '--timeout'),
    killSignal: kill === undefined ? undefined : kill === 'none' ? false : parseSignal(kill, 'kill signal'),
    killTimeout: killTimeout === undefined ? undefined : parseMs(killTimeout, '--kill-timeout'),
    release: ctx.values['no-release'] !== true,
    abortSignal: ctx.signal,
  };
}

/** Exactly one pid positional. */
export function onePid(ctx: Context, parse: (s: string) => number): number {
  if (ctx.positionals.length === 0) throw new UsageError('a pid is required');
  if (ctx.positionals.length > 1) throw new UsageError(`one pid only (got ${ctx.positionals.length})`);
  return parse(ctx.positionals[0]);
}

/** The exit status for "timed out": 124, as timeout(1) uses. */
export const TIMED_OUT = 124;
/** The exit status for "interrupted by SIGINT/SIGTERM": 130. */
export const INTERRUPTED = 130;

/** Shared option definitions of kill and tree-kill. */
export const TERMINATE_OPTIONS = {
  signal: { type: 'string', short: 's' },
  timeout: { type: 'string', short: 't' },
  'kill-signal': { type: 'string' },
  'kill-timeout': { type: 'string' },
  'no-release': { type: 'boolean' },
} as const;

export const TERMINATE_HELP = [
  'Options:',
  '  -s, --signal SIG       the polite signal (default TERM); TERM, SIGTERM and 15 all work',
  '  -t, --timeout MS       grace period before escalating (default 5s); 500, 500ms, 1.5s, 2m',
  '  --kill-signal SIG      sent after the grace period (default KILL); "none": never escalate',
  '  --kill-timeout MS      how long to wait after the kill signal (default 5s)',
  '  --no-release           do not call process_mrelease after SIGKILL',
  '  --json                 print the result as one JSON document',
];
