// Shared by the memory, pressure and low-memory-killer tests (test/memory/, test/lmk/, test/cli/memory.ts): cgroups
// of our own, controllable workers, CPU spinners. Every process started here dies with the test process.
import { ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type KillEvent, LowMemoryKiller, type LowMemoryKillerOptions } from '../../lib/index';
import { Lines } from './lines';
import { exited, fixture, track } from './procs';

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Where cgroup v2 is mounted (the unified hierarchy), from /proc/self/mountinfo, or undefined. */
export function cgroup2Root(): string | undefined {
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const [left, right] = line.split(' - ');
    if (right?.startsWith('cgroup2 ')) return left.split(' ')[4];
  }
  return undefined;
}

/** The cgroup v1 memory hierarchy's mount point, or undefined. */
export function memoryV1Root(): string | undefined {
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const [left, right] = line.split(' - ');
    if (right?.startsWith('cgroup ') && right.split(' ')[2]?.split(',').includes('memory')) return left.split(' ')[4];
  }
  return undefined;
}

/** Our own memory cgroup (v1) path relative to the hierarchy root. */
function ownV1MemoryPath(): string {
  for (const line of readFileSync('/proc/self/cgroup', 'utf8').split('\n')) {
    const [, controllers, path] = line.split(':');
    if (controllers?.split(',').includes('memory')) return path;
  }
  return '/';
}

const made: string[] = [];

/** A fresh cgroup v2 group (a child of the unified root) that holds only what the test moves into it. */
export function makeV2Group(tag: string): string | undefined {
  const root = cgroup2Root();
  if (root === undefined) return undefined;
  const dir = join(root, `pidfd-test-${tag}-${process.pid}`);
  mkdirSync(dir);
  made.push(dir);
  return dir;
}

/** A fresh cgroup v1 memory group below our own, with a hard limit (bytes) if given. */
export function makeV1MemoryGroup(tag: string, limit?: number): string | undefined {
  const root = memoryV1Root();
  if (root === undefined) return undefined;
  let parent = join(root, ownV1MemoryPath());
  if (!existsSync(parent)) parent = root;
  const dir = join(parent, `pidfd-test-${tag}-${process.pid}`);
  mkdirSync(dir);
  made.push(dir);
  if (limit !== undefined) writeFileSync(join(dir, 'memory.limit_in_bytes'), String(limit));
  return dir;
}

export function procsOf(dir: string): number[] {
  return readFileSync(join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number);
}

/** Kills what is left in the group and removes it (retrying while the kernel finishes the exits). */
export async function removeGroup(dir: string): Promise<void> {
  if (!existsSync(dir)) return;
  for (let i = 0; i < 100; i++) {
    for (const pid of procsOf(dir)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    try {
      for (const sub of readdirSync(dir, { withFileTypes: true }))
        if (sub.isDirectory()) await removeGroup(join(dir, sub.name));
      rmdirSync(dir);
      return;
    } catch {
      await sleep(50);
    }
  }
}

export async function removeAllGroups(): Promise<void> {
  for (const dir of made.splice(0).reverse()) await removeGroup(dir);
}

/** A mem-worker process (test/fixtures/mem-worker.c), driven line by line. */
export class Worker {
  readonly proc: ChildProcess;
  readonly lines: Lines;
  #seen = 0;
  pid = 0;

  /** `detached`: in a session (and process group) of its own. */
  constructor(cgroupProcs: string[] = [], options: { detached?: boolean } = {}) {
    this.proc = track(
      spawn(fixture('mem-worker'), cgroupProcs, { stdio: ['pipe', 'pipe', 'inherit'], detached: options.detached }),
    );
    this.lines = new Lines(this.proc.stdout!);
    // A worker killed while a command is being written (the killer's victim, mid-allocation) makes the write fail
    // with EPIPE on the stream, not in ask(): the answer that never comes fails ask() instead.
    this.proc.stdin!.on('error', () => {});
  }

  async ready(): Promise<this> {
    this.pid = Number((await this.next('ready')).split(' ')[1]);
    return this;
  }

  /** The next line (not seen before) starting with `prefix`. */
  async next(prefix: string): Promise<string> {
    for (;;) {
      const all = this.lines.all;
      for (let i = this.#seen; i < all.length; i++) {
        if (all[i].startsWith(prefix) || all[i].startsWith('error')) {
          this.#seen = i + 1;
          return all[i];
        }
      }
      const n = all.length;
      await this.lines.waitFor(
        () => this.lines.all.length > n,
        `after ${JSON.stringify(all)}, a line starting with ${prefix}`,
      );
    }
  }

  /** Sends a command and waits for its answer line (whatever it starts with). */
  async ask(cmd: string, answer: string): Promise<string> {
    this.proc.stdin!.write(`${cmd}\n`);
    const line = await this.next(answer);
    if (line.startsWith('error')) throw new Error(`mem-worker ${cmd}: ${line}`);
    return line;
  }

  async kill(): Promise<void> {
    if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill('SIGKILL');
    await exited(this.proc);
  }
}

/** `n` processes burning CPU `cpu`, moved into `cgroupDir` (v2) if given. */
export async function spinners(n: number, cpu: number, cgroupDir?: string): Promise<ChildProcess[]> {
  const out: ChildProcess[] = [];
  for (let i = 0; i < n; i++) {
    const c = track(spawn(fixture('psi-spin'), [String(cpu)], { stdio: 'ignore' }));
    await new Promise((resolve, reject) => c.once('spawn', resolve).once('error', reject));
    if (cgroupDir !== undefined) writeFileSync(join(cgroupDir, 'cgroup.procs'), String(c.pid));
    out.push(c);
  }
  return out;
}

export async function stopAll(procs: ChildProcess[]): Promise<void> {
  for (const c of procs) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await Promise.all(procs.map((c) => exited(c)));
}

/** A mem-worker in `group` with oom_score_adj `adj`, holding `mib` MiB of anonymous memory; added to `workers` so the
 *  test file's teardown can kill it. */
export async function budgetWorker(workers: Worker[], group: string, adj: number, mib: number): Promise<Worker> {
  const w = await new Worker([join(group, 'cgroup.procs')]).ready();
  workers.push(w);
  writeFileSync(`/proc/${w.pid}/oom_score_adj`, String(adj));
  if (mib > 0) await w.ask(`a ${mib}`, 'anon');
  return w;
}

/** Every event a killer emits, in order. */
export function recordEvents(lmk: import('node:events').EventEmitter): { type: string; e: any }[] {
  const log: { type: string; e: any }[] = [];
  for (const type of ['pressure', 'reclaim', 'trim', 'kill', 'recovered', 'error'])
    lmk.on(type, (e) => log.push({ type, e }));
  return log;
}

/** The kill events of a recordEvents log. */
export const killEvents = (log: { type: string; e: any }[]): KillEvent[] =>
  log.filter((x) => x.type === 'kill').map((x) => x.e as KillEvent);

/**
 * A fresh group of `limit` bytes with one worker holding `mib` MiB, and a killer over it (reclaim off) acting below
 * `minAvailable`, with `options` on top; its events recorded. The worker joins `workers` for the teardown.
 */
export async function pressuredKiller(
  workers: Worker[],
  tag: string,
  o: { limit: number; mib: number; minAvailable: number; options?: Partial<LowMemoryKillerOptions> },
): Promise<{ w: Worker; lmk: LowMemoryKiller; log: { type: string; e: any }[] }> {
  const g = makeV1MemoryGroup(tag, o.limit)!;
  const w = await budgetWorker(workers, g, 0, 0);
  const lmk = new LowMemoryKiller({
    candidates: { cgroup: g },
    memory: { cgroup: g },
    minAvailable: o.minAvailable,
    reclaim: false,
    ...o.options,
  });
  const log = recordEvents(lmk);
  await w.ask(`a ${o.mib}`, 'anon');
  return { w, lmk, log };
}

/** A process's cgroup as the kill event and the hooks name it: its v2 path, or its v1 memory path where the v2
 *  one is the root. */
export function victimCgroupOf(pid: number): string | undefined {
  const lines = readFileSync(`/proc/${pid}/cgroup`, 'utf8').split('\n');
  const v2 = lines.find((l) => l.startsWith('0::'))?.slice(3);
  if (v2 !== undefined && v2 !== '/') return v2;
  const v1 = lines.find((l) => l.split(':')[1]?.split(',').includes('memory'));
  return v1 === undefined ? v2 : v1.slice(v1.indexOf(':', v1.indexOf(':') + 1) + 1);
}
