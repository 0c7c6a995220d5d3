// Shared helpers for tests: real processes, cleaned up after each test file.
import { ChildProcess, execFileSync, spawn, SpawnOptions } from 'node:child_process';
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

const ROOT = join(__dirname, '..', '..');
const FIXTURES = join(ROOT, 'test', 'fixtures');
const OUT = join(ROOT, 'build', 'test-fixtures');

/**
 * Compiles test/fixtures/<name>.c (once, and again when the source changes) and returns the binary's path.
 * Fixtures are C where the test needs what Node cannot do itself (clone3 with set_tid, reading si_value).
 */
export function fixture(name: string): string {
  const src = join(FIXTURES, `${name}.c`);
  const bin = join(OUT, name);
  if (!existsSync(bin) || statSync(bin).mtimeMs < statSync(src).mtimeMs) {
    mkdirSync(OUT, { recursive: true });
    const tmp = `${bin}.${process.pid}.tmp`;
    execFileSync('cc', ['-O2', '-Wall', '-o', tmp, src]);
    execFileSync('mv', ['-f', tmp, bin]);
  }
  return bin;
}

const live = new Set<ChildProcess>();

/** Spawns a process that is killed (SIGKILL) when the test process exits, if it is still running. */
export function track(child: ChildProcess): ChildProcess {
  live.add(child);
  child.once('exit', () => live.delete(child));
  return child;
}

/** `sleep <seconds>` as a child, tracked. */
export function sleeper(seconds = 1000, options: SpawnOptions = {}): ChildProcess {
  return track(spawn('sleep', [String(seconds)], { stdio: 'ignore', ...options }));
}

/** Resolves with the child's 'exit' event arguments. */
export function exited(child: ChildProcess): Promise<[number | null, NodeJS.Signals | null]> {
  if (child.exitCode !== null || child.signalCode !== null) {
    return Promise.resolve([child.exitCode, child.signalCode]);
  }
  return new Promise((resolve) => child.once('exit', (code, signal) => resolve([code, signal])));
}

/** Whether a pid exists (any state, zombies included). */
export function pidExists(pid: number): boolean {
  return existsSync(`/proc/${pid}`);
}

/** The state letter from /proc/<pid>/stat (R, S, Z, ...), or undefined if gone. */
export function procState(pid: number): string | undefined {
  try {
    const stat = require('node:fs').readFileSync(`/proc/${pid}/stat`, 'utf8') as string;
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0];
  } catch {
    return undefined;
  }
}

process.on('exit', () => {
  for (const c of live) {
    try {
      c.kill('SIGKILL');
    } catch {
      /* already gone */
    }
  }
});
