// The `pidfd` command run the way a user runs it: `node bin/pidfd.js ...` as a child process, on the compiled
// package (dist/ is made current first). NODE_OPTIONS is cleared: the runner's loaders are not the user's.
import { ChildProcess, spawn, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { ensureDist } from './dist';
import { ended, Lines } from './lines';
import { track } from './procs';

const stale = ensureDist();
if (stale) throw new Error(stale);

export const BIN = join(__dirname, '..', '..', 'bin', 'pidfd.js');
const env = (): NodeJS.ProcessEnv => ({ ...process.env, NODE_OPTIONS: '' });

/** What a finished `pidfd ...` printed and its exit status. */
export interface CliResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `pidfd ...` to its end. */
export function cli(...args: string[]): CliResult {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', env: env() });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** A finished `pidfd ...` started with `startCli`. */
export interface CliRun extends CliResult {
  child: ChildProcess;
  out: Lines;
}

/**
 * Starts `pidfd ...` (tracked: killed if the test ends first); `done` resolves with its status and output.
 * The 30 s guard of `ended` (SIGKILL, so that a missing exit fails instead of hanging) arms when `done` is first
 * read, not at the start: a long-running command (`pidfd lmk` over a 20-trial test) is never waited for.
 */
export function startCli(...args: string[]): { child: ChildProcess; out: Lines; readonly done: Promise<CliRun> } {
  return startCliEnv({}, ...args);
}

/** startCli with variables added to the environment (e.g. JOURNAL_STREAM, as systemd sets it). */
export function startCliEnv(
  extra: NodeJS.ProcessEnv,
  ...args: string[]
): { child: ChildProcess; out: Lines; readonly done: Promise<CliRun> } {
  const child = track(
    spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...env(), ...extra } }),
  );
  const out = new Lines(child.stdout as Readable);
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  let done: Promise<CliRun> | undefined;
  return {
    child,
    out,
    get done() {
      return (done ??= ended(child).then(([status]) => ({ status, stdout: out.all.join('\n'), stderr, child, out })));
    },
  };
}
