// Shared helpers for tests: real processes, cleaned up after each test file.
import type { Test } from 'tap';
import { ChildProcess, execFileSync, spawn, SpawnOptions } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

const ROOT = join(__dirname, '..', '..');
const FIXTURES = join(ROOT, 'test', 'fixtures');
const OUT = join(ROOT, 'build', 'test-fixtures');
const SUPPORT = join(FIXTURES, 'support');
// Linked into every fixture: under `npm run test:sanitize` the preloaded leak checker skips the fixtures (what a
// test helper leaves allocated at its exit is not this package's).
const LSAN_OFF = join(SUPPORT, 'lsan-off.c');

/**
 * Compiles test/fixtures/<name>.c (once, and again when the source changes) and returns the binary's path.
 * Fixtures are C where the test needs what Node cannot do itself (clone3 with set_tid, reading si_value).
 */
export function fixture(name: string): string {
  const src = join(FIXTURES, `${name}.c`);
  const bin = join(OUT, name);
  // Rebuilt when the source or anything in support/ (lsan-off.c, shared headers) is newer than the binary.
  const support = readdirSync(SUPPORT).map((f) => statSync(join(SUPPORT, f)).mtimeMs);
  if (!existsSync(bin) || statSync(bin).mtimeMs < Math.max(statSync(src).mtimeMs, ...support)) {
    mkdirSync(OUT, { recursive: true });
    const tmp = `${bin}.${process.pid}.tmp`;
    // Without a sanitizer runtime preloaded by `npm run test:sanitize`: the compiler's own leaks are not ours.
    const env = { ...process.env };
    delete env.LD_PRELOAD;
    // -rdynamic: the preloaded runtime finds __lsan_is_turned_off only in the dynamic symbol table.
    execFileSync('cc', ['-O2', '-Wall', '-rdynamic', '-o', tmp, src, LSAN_OFF], { env });
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

/** A sleeper killed at the end of the test `t`, whatever happened. */
export function sleeperFor(t: Test): ChildProcess {
  const child = sleeper();
  t.teardown(() => {
    child.kill('SIGKILL');
  });
  return child;
}

/** Polls a condition on the event loop (for states that only the kernel reports, such as "now a zombie"). */
export async function until(cond: () => boolean, what: string, guardMs = 20_000): Promise<void> {
  const end = Date.now() + guardMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`gave up waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Blocks the thread (so Node cannot reap a child meanwhile) until `cond` holds. */
export function untilSync(cond: () => boolean, what: string, guardMs = 20_000): void {
  const cell = new Int32Array(new SharedArrayBuffer(4));
  const end = Date.now() + guardMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`gave up waiting for ${what}`);
    Atomics.wait(cell, 0, 0, 2);
  }
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
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0];
  } catch {
    return undefined;
  }
}

/** What `runNode` saw of the process. */
export interface NodeRun {
  code: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs `node <args>` as a plain Node (`env -u NODE_OPTIONS` drops the test runner's hooks, which it re-adds to any
 * env given to spawn and which every worker would load too), under `prefix` if given (e.g. a seccomp wrapper,
 * `unshare`, `setpriv`). `node` and `cwd` default to this process's. Resolves when its output is closed.
 */
export function runNode(
  args: string[],
  prefix: string[] = [],
  options: { node?: string; cwd?: string } = {},
): Promise<NodeRun> {
  const argv = [...prefix, 'env', '-u', 'NODE_OPTIONS', options.node ?? process.execPath, ...args];
  const child = track(spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], cwd: options.cwd }));
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  return new Promise((resolve) => child.once('close', (code, signal) => resolve({ code, signal, stdout, stderr })));
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
