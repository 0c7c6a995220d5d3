// Every read and write of cgroupfs in the package. Like the /proc listings, cgroup.procs is a hint: a pid read
// from it names its process only until that process exits, so callers open a pidfd, check membership again
// (`cgroupOf`, through the pidfd) and only then trust it.
import { existsSync, readFileSync, realpathSync, watch, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseCgroupV2, parsePids, ProcessHandle, readChecked, readSelf } from './procfs';
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

/** The directory of a cgroup v2 path (as /proc/<pid>/cgroup shows it) in a mounted cgroup2 hierarchy, from
 *  /proc/self/mountinfo (`mountinfo` if the caller already read it), or undefined where none holds it. */
export function cgroupV2Dir(path: string, mountinfo = readSelf('mountinfo')): string | undefined {
  for (const line of mountinfo.split('\n')) {
    const [left, right] = line.split(' - ');
    if (right === undefined || !right.startsWith('cgroup2 ')) continue;
    const [, , , root, mount] = left.split(' ');
    if (root === '/') return path === '/' ? mount : `${mount}${path}`;
    if (path === root || path.startsWith(`${root}/`)) return `${mount}${path.slice(root.length)}`;
  }
  return undefined;
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
