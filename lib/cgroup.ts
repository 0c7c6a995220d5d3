// Every read and write of cgroupfs in the package. Like the /proc listings, cgroup.procs is a hint: a pid read
// from it names its process only until that process exits, so callers open a pidfd, check membership again
// (`cgroupOf`, through the pidfd) and only then trust it.
import { existsSync, readdirSync, readFileSync, realpathSync, watch, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseCgroupV1, parseCgroupV2, parsePids, ProcessHandle, readChecked, readSelf } from './procfs';
import { invalidValue } from './validate';

/** The pids in `<dir>/cgroup.procs` (a hint); throws the read's error (e.g. ENOENT for a removed cgroup). */
export function readCgroupProcs(dir: string): number[] {
  return parsePids(readFileSync(join(dir, 'cgroup.procs'), 'latin1'));
}

/** The cgroup v2 path of the process `p` names (the "0::" line of /proc/<pid>/cgroup), read through its pidfd;
 *  undefined when it has none or has exited. */
export function cgroupOf(p: ProcessHandle): string | undefined {
  let text: string;
  try {
    text = readChecked(p, 'cgroup', { allowExiting: true });
  } catch {
    return undefined;
  }
  return parseCgroupV2(text);
}

/**
 * The cgroup v2 path (as /proc/<pid>/cgroup shows it) of a directory of a mounted cgroup2 hierarchy. Throws
 * ERR_INVALID_ARG_VALUE naming `name` when it is not one.
 */
export function cgroupPath(dir: string, name: string): { dir: string; path: string } {
  const real = realpathSync(dir);
  for (const line of readSelf('mountinfo').split('\n')) {
    const [left, right] = line.split(' - ');
    if (right === undefined || !right.startsWith('cgroup2 ')) continue;
    const f = left.split(' ');
    const root = f[3];
    const mount = f[4];
    if (real === mount || real.startsWith(`${mount}/`)) {
      const rel = real.slice(mount.length);
      return { dir: real, path: root === '/' ? rel || '/' : `${root}${rel}` };
    }
  }
  throw invalidValue(name, dir, 'is not a directory of a mounted cgroup v2 hierarchy');
}

/** The cgroup v1 path of `controller` (e.g. `memory`) of the process `p` names, read through its pidfd; undefined
 *  when it has none or has exited. */
export function cgroupV1Of(p: ProcessHandle, controller: string): string | undefined {
  let text: string;
  try {
    text = readChecked(p, 'cgroup', { allowExiting: true });
  } catch {
    return undefined;
  }
  return parseCgroupV1(text, controller);
}

/**
 * The directory of a cgroup path as /proc/<pid>/cgroup shows it: on the mounted cgroup2 hierarchy (`controller`
 * undefined) or on the v1 hierarchy of `controller`. undefined when no mount of ours shows that path (a mount
 * whose root is below it, or none at all).
 */
export function cgroupDir(path: string, controller?: string): string | undefined {
  for (const line of readSelf('mountinfo').split('\n')) {
    const [left, right] = line.split(' - ');
    if (right === undefined) continue;
    const r = right.split(' ');
    const match =
      controller === undefined ? r[0] === 'cgroup2' : r[0] === 'cgroup' && r[2]?.split(',').includes(controller);
    if (!match) continue;
    const f = left.split(' ');
    const root = f[3];
    const mount = f[4];
    if (root === '/') return path === '/' ? mount : `${mount}${path}`;
    if (path === root) return mount;
    if (path.startsWith(`${root}/`)) return `${mount}${path.slice(root.length)}`;
  }
  return undefined;
}

/** Whether `<dir>/memory.oom.group` reads 1 (false where the file does not exist: no v2 memory controller). */
export function oomGroup(dir: string): boolean {
  try {
    return readFileSync(join(dir, 'memory.oom.group'), 'latin1').trim() === '1';
  } catch {
    return false;
  }
}

/** The pids in cgroup.procs of `dir` and of every cgroup below it (a hint, as readCgroupProcs); a cgroup removed
 *  meanwhile has none. */
export function readCgroupProcsDeep(dir: string): number[] {
  let out: number[];
  try {
    out = readCgroupProcs(dir);
  } catch {
    return [];
  }
  let subs: string[] = [];
  try {
    subs = readdirSync(dir, { withFileTypes: true })
      .filter((d) => d.isDirectory())
      .map((d) => d.name);
  } catch {
    /* removed meanwhile */
  }
  for (const sub of subs) out = out.concat(readCgroupProcsDeep(join(dir, sub)));
  return out;
}

/** Whether the cgroup has cgroup.kill (Linux 5.14, cgroup v2). */
export function hasCgroupKill(dir: string): boolean {
  return existsSync(join(dir, 'cgroup.kill'));
}

/** Writes cgroup.kill (Linux 5.14); false where the file does not exist. */
export function killCgroup(dir: string): boolean {
  const file = join(dir, 'cgroup.kill');
  if (!existsSync(file)) return false;
  writeFileSync(file, '1');
  return true;
}

function populated(dir: string): boolean {
  try {
    return /^populated 1$/m.test(readFileSync(join(dir, 'cgroup.events'), 'latin1'));
  } catch {
    return false; // the cgroup was removed: nothing left in it
  }
}

/** Resolves true at `populated 0` in cgroup.events (the kernel signals changes to it to inotify, i.e. fs.watch),
 *  false after `ms`. */
export function waitCgroupEmpty(dir: string, ms: number): Promise<boolean> {
  if (!populated(dir)) return Promise.resolve(true);
  return new Promise((resolve) => {
    const w = watch(join(dir, 'cgroup.events'), () => check());
    const t = setTimeout(() => {
      w.close();
      resolve(false);
    }, ms);
    function check(): void {
      if (populated(dir)) return;
      clearTimeout(t);
      w.close();
      resolve(true);
    }
    check();
  });
}

/** What `readMemoryCgroup` returns. */
export interface MemoryCgroup {
  usage: number;
  limit: number | undefined;
  version: 1 | 2;
}

/** A memory cgroup's usage and limit in bytes (v1: usage_in_bytes / limit_in_bytes; v2: memory.current /
 *  memory.max, `limit` undefined for `max`); undefined when `dir` is neither. */
export function readMemoryCgroup(dir: string): MemoryCgroup | undefined {
  const read = (f: string): string | undefined => {
    try {
      return readFileSync(join(dir, f), 'latin1').trim();
    } catch {
      return undefined;
    }
  };
  let version: 1 | 2 = 1;
  let usage = read('memory.usage_in_bytes');
  let limit = read('memory.limit_in_bytes');
  if (usage === undefined) {
    usage = read('memory.current');
    limit = read('memory.max');
    version = 2;
  }
  if (usage === undefined) return undefined;
  return { usage: Number(usage), limit: limit === undefined || limit === 'max' ? undefined : Number(limit), version };
}
