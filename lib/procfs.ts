// Reading /proc/<pid> for the toolkit (terminate, killTree, identity). Every reader here returns what the file said
// at the moment it was read, or undefined when the pid had no such file; none of them knows whether that pid still
// names the process the caller means. That is the caller's job, always the same way: read, then check that a
// pidfd for the process has not exited. A process that has not exited still holds its pid, so the read was of it.
import { readdirSync, readFileSync } from 'node:fs';

/** The fields of /proc/<pid>/stat the toolkit uses. */
export interface ProcStat {
  /** R, S, D, T (stopped), t (traced), Z, X, I ... */
  state: string;
  ppid: number;
  pgid: number;
  sid: number;
  /** Clock ticks after boot at which the process started (field 22). */
  startTime: bigint;
}

function readOrUndefined(path: string): string | undefined {
  try {
    return readFileSync(path, 'latin1');
  } catch {
    return undefined; // ENOENT/ESRCH: the process (or thread) is gone
  }
}

/** Parses /proc/<pid>/stat; the command name may hold spaces and parentheses, so fields start after the last ')'. */
export function readStat(pid: number): ProcStat | undefined {
  const text = readOrUndefined(`/proc/${pid}/stat`);
  if (text === undefined) return undefined;
  const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
  // f[0] is field 3 (state), so field n is f[n - 3].
  return { state: f[0], ppid: Number(f[1]), pgid: Number(f[2]), sid: Number(f[3]), startTime: BigInt(f[19]) };
}

/**
 * The pids in /proc/<pid>/task/<tid>/children for every thread of `pid` (CONFIG_PROC_CHILDREN, Linux 4.2). Each
 * thread keeps its own list of the children it forked, so the whole process's children need all of them.
 */
export function readChildren(pid: number): number[] {
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return [];
  }
  const out: number[] = [];
  for (const tid of tids) {
    const text = readOrUndefined(`/proc/${pid}/task/${tid}/children`);
    if (text === undefined) continue; // the thread exited meanwhile
    for (const word of text.split(' ')) if (word !== '' && word !== '\n') out.push(Number(word));
  }
  return out;
}

/** Whether the kernel has /proc/<pid>/task/<tid>/children (CONFIG_PROC_CHILDREN). */
export function hasChildrenFiles(): boolean {
  return readOrUndefined(`/proc/${process.pid}/task/${process.pid}/children`) !== undefined;
}

/** Every pid in /proc (processes, not threads). */
export function allPids(): number[] {
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    const c = name.charCodeAt(0);
    if (c >= 48 && c <= 57) out.push(Number(name));
  }
  return out;
}
