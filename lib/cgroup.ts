// Every read and write of cgroupfs in the package. Like the /proc listings, cgroup.procs is a hint: a pid read
// from it names its process only until that process exits, so callers open a pidfd, check membership again
// (`cgroupOf`, through the pidfd) and only then trust it.
import { existsSync, readdirSync, readFileSync, realpathSync, watch, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { ReadFile, readFresh } from './kept-files';
import { keyedValue, parseCgroupV1, parseCgroupV2, parsePids, ProcessHandle, readChecked, readSelf } from './procfs';
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

/** A limit set at one level of a memory cgroup hierarchy, and what that level holds. Bytes. */
export interface MemoryLimit {
  /** The file that sets it, with its directory: `<dir>/memory.max`, `<dir>/memory.high`, `<dir>/memory.limit_in_bytes`. */
  file: string;
  limit: number;
  /** The level's usage (memory.current, memory.usage_in_bytes: its descendants included). */
  usage: number;
  /** The level's inactive file pages (memory.stat `inactive_file`, v1 `total_inactive_file`). */
  inactiveFile: number;
}

/** A swap limit set at one level of a memory cgroup hierarchy (v2 memory.swap.max, v1 memsw − memory limit). */
export interface SwapLimit {
  file: string;
  limit: number;
  usage: number;
}

/** What `readMemoryLimits` returns. */
export interface MemoryLimits {
  version: 1 | 2;
  /** Every limit below `cap` set on the group or an ancestor, the group's first. */
  limits: MemoryLimit[];
  swap: SwapLimit[];
}

function readNumber(read: ReadFile, file: string): number | undefined {
  const text = read(file);
  if (text === undefined) return undefined;
  const v = text.trim();
  return v === 'max' ? Infinity : Number(v);
}

/**
 * The memory limits that bound a memory cgroup: those of the group and of each ancestor, up to the top of the
 * hierarchy, that are below `cap` (MemTotal: a larger limit cannot bind before the machine does). The walk goes up
 * while the parent directory has the version's limit file (memory.max, which the v2 root lacks; v1's
 * memory.limit_in_bytes, which the v1 root has and the mount's parent lacks), so a tree of plain directories with
 * those files is walked the same way. Usage and memory.stat are read only at levels that set a limit; swap files
 * only when `swapCap` (the machine's SwapTotal) is not 0. Undefined when `dir` is not a memory cgroup.
 */
export function readMemoryLimits(
  dir: string,
  cap: number,
  swapCap: number,
  read: ReadFile = readFresh,
): MemoryLimits | undefined {
  if (read(join(dir, 'memory.max')) !== undefined) return readV2Limits(dir, cap, swapCap, read);
  const stat = read(join(dir, 'memory.stat'));
  if (stat === undefined || read(join(dir, 'memory.limit_in_bytes')) === undefined) return undefined;
  return readV1Limits(dir, stat, cap, swapCap, read);
}

function readV2Limits(dir: string, cap: number, swapCap: number, read: ReadFile): MemoryLimits {
  const out: MemoryLimits = { version: 2, limits: [], swap: [] };
  for (let d = dir; ;) {
    const max = readNumber(read, join(d, 'memory.max'));
    if (max === undefined) break;
    const high = readNumber(read, join(d, 'memory.high')) ?? Infinity;
    if (max < cap || high < cap) {
      const usage = readNumber(read, join(d, 'memory.current')) ?? 0;
      const inactiveFile = keyedValue(read(join(d, 'memory.stat')) ?? '', 'inactive_file') ?? 0;
      if (high < cap) out.limits.push({ file: join(d, 'memory.high'), limit: high, usage, inactiveFile });
      if (max < cap) out.limits.push({ file: join(d, 'memory.max'), limit: max, usage, inactiveFile });
    }
    if (swapCap > 0) {
      const swapMax = readNumber(read, join(d, 'memory.swap.max')) ?? Infinity;
      if (swapMax < swapCap) {
        const usage = readNumber(read, join(d, 'memory.swap.current')) ?? 0;
        out.swap.push({ file: join(d, 'memory.swap.max'), limit: swapMax, usage });
      }
    }
    const parent = dirname(d);
    if (parent === d) break;
    d = parent;
  }
  return out;
}

// v1: memory.stat's hierarchical_memory_limit is the smallest limit of the group and its ancestors, so when it is
// not below `cap` no level can bind and the walk is skipped. When one is, each limited level is read on its own:
// a parent's limit is shared with the group's siblings, so it binds on the parent's usage, not the group's.
function readV1Limits(dir: string, stat: string, cap: number, swapCap: number, read: ReadFile): MemoryLimits {
  const out: MemoryLimits = { version: 1, limits: [], swap: [] };
  const hier = keyedValue(stat, 'hierarchical_memory_limit') ?? Infinity;
  const hierSw = keyedValue(stat, 'hierarchical_memsw_limit') ?? Infinity;
  if (hier >= cap && (swapCap === 0 || hierSw >= cap + swapCap)) return out;
  for (let d = dir; ;) {
    const limit = readNumber(read, join(d, 'memory.limit_in_bytes'));
    if (limit === undefined) break;
    const memsw = swapCap > 0 ? (readNumber(read, join(d, 'memory.memsw.limit_in_bytes')) ?? Infinity) : Infinity;
    const swapLimited = memsw < cap + swapCap;
    if (limit < cap || swapLimited) {
      const usage = readNumber(read, join(d, 'memory.usage_in_bytes')) ?? 0;
      if (limit < cap) {
        const levelStat = d === dir ? stat : (read(join(d, 'memory.stat')) ?? '');
        const inactiveFile = keyedValue(levelStat, 'total_inactive_file') ?? 0;
        out.limits.push({ file: join(d, 'memory.limit_in_bytes'), limit, usage, inactiveFile });
      }
      if (swapLimited) {
        // memsw bounds memory + swap: what may go to swap is memsw - the memory limit, what is there memsw usage -
        // usage (so with memory full, what is left is memsw - memsw usage, the room the kernel still allows).
        const swUsage = readNumber(read, join(d, 'memory.memsw.usage_in_bytes')) ?? usage;
        const file = join(d, 'memory.memsw.limit_in_bytes');
        out.swap.push({ file, limit: Math.max(0, memsw - Math.min(limit, cap)), usage: Math.max(0, swUsage - usage) });
      }
    }
    const parent = dirname(d);
    if (parent === d) break;
    d = parent;
  }
  return out;
}

/**
 * The kernel's OOM kills counted for a memory cgroup: v2 memory.events `oom_kill` (descendants included, unless
 * the hierarchy is mounted with memory_localevents), v1 memory.oom_control `oom_kill` (Linux 4.13; the group's own
 * processes only: v1 does not add a child group's events to its parent). Undefined where neither file counts it.
 */
export function readCgroupOomKills(dir: string, read: ReadFile = readFresh): number | undefined {
  const text = read(join(dir, 'memory.events')) ?? read(join(dir, 'memory.oom_control'));
  return text === undefined ? undefined : keyedValue(text, 'oom_kill');
}
