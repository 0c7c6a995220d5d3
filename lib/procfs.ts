// Every read of /proc in the package, and one parser per /proc file. The rule: a pid names its process only while
// that process has not exited, so a read about another process counts only if its pidfd has not exited after the
// read (`readChecked`). Reads that skip the check say so in their name (`readUnchecked`, `statUnchecked`), and
// listings (`listPids`, `listChildren`, `childrenByScan`) are hints: each pid they give must be opened and checked.
import { closeSync, openSync, readdirSync, readFileSync, readSync, writeFileSync } from 'node:fs';
import { E, outOfResource, systemError, SystemError } from './errors';
import { ReadFile, readFresh } from './kept-files';
import type { PidFd } from './pidfd';

/** What a checked read needs of a PidFd (structural, so this module does not import the class). */
export interface ProcessHandle {
  readonly pid: number;
  /** Throws ERR_PIDFD_CLOSED once closed. */
  readonly fd: number;
  readonly exited: boolean;
}

/**
 * The fields of /proc/<pid>/stat the package uses (`readProcess(p).stat`).
 *
 * @example
 * const st: ProcStat | undefined = readProcess(p)?.stat;
 * if (st?.state === 'T') console.log(`${p.pid} is stopped; its group is ${st.pgid}`);
 */
export interface ProcStat {
  /** R, S, D, T (stopped), t (traced), Z, X, I ... */
  state: string;
  ppid: number;
  pgid: number;
  sid: number;
  /** The task's PF_* flags (field 9). */
  flags: number;
  /** The nice value (field 19), of the thread-group leader for /proc/<pid>/stat, of the thread for task/<tid>/stat. */
  nice: number;
  /** Clock ticks after boot at which the process started (field 22). */
  startTime: bigint;
}

/** Options of `readChecked`. */
export interface CheckOptions {
  /** Count a read made after the process began exiting (PF_EXITING): enough for identity fields (ppid, pgid,
   *  cgroup), whose values outlive exit_mm(); never for memory files, which exit_mm() empties. */
  allowExiting?: boolean;
}

/** The ESRCH every checked read throws for a process that has exited. */
export function goneError(pid: number, file: string): SystemError {
  return Object.assign(systemError(-E.ESRCH, 'read', `/proc/${pid}/${file}: the process has exited`), {
    path: `/proc/${pid}/${file}`,
  });
}

// One reusable buffer: readFileSync's fstat and growing buffers double the cost of a small /proc read (status:
// 29 µs against 14 µs here), and the killer reads two files per candidate on each decision.
const chunk = Buffer.allocUnsafe(16384);

/** The whole of a /proc file as latin1 text; throws the open's or the read's error. */
function readProc(path: string): string {
  const fd = openSync(path, 'r');
  try {
    let parts: Buffer[] | undefined;
    let n = 0;
    for (;;) {
      const r = readSync(fd, chunk, n, chunk.length - n, null);
      if (r === 0) break;
      n += r;
      if (n === chunk.length) {
        (parts ??= []).push(Buffer.from(chunk));
        n = 0;
      }
    }
    if (parts === undefined) return chunk.toString('latin1', 0, n);
    parts.push(chunk.subarray(0, n));
    return Buffer.concat(parts).toString('latin1');
  } finally {
    closeSync(fd);
  }
}

/**
 * Reads /proc/<pid>/<file> of the process `p` names, or throws: ESRCH once the process has exited (whatever the
 * read returned), else the read's own error. "Exited" is decided from the pidfd alone. When the thread-group leader
 * has begun exiting (PF_EXITING) but the pidfd says the process lives (the leader called pthread_exit while other
 * threads run), the file is read through a live thread, /proc/<pid>/task/<tid>/<file>: the memory map, the
 * signal handlers and the identity are shared by the whole thread group. `allowExiting` keeps the leader's own read.
 */
export function readChecked(p: ProcessHandle, file: string, options?: CheckOptions): string {
  void p.fd; // throws if closed
  let text: string | undefined;
  let failure: NodeJS.ErrnoException | undefined;
  try {
    text = readProc(`/proc/${p.pid}/${file}`);
  } catch (err) {
    failure = err as NodeJS.ErrnoException;
  }
  if (p.exited) throw goneError(p.pid, file);
  if (failure !== undefined) {
    const code = failure.code;
    if (code !== 'ENOENT' && code !== 'ESRCH') throw failure;
    // ENOENT/ESRCH while the pidfd says alive: an exiting leader (its mm is gone), a thread pidfd, or /proc
    // mounted from another pid namespace.
    if (options?.allowExiting === true || !exiting(p.pid)) throw goneError(p.pid, file);
  } else if (options?.allowExiting === true || !exiting(p.pid)) {
    return text as string;
  }
  return readThroughThread(p, file);
}

// The leader is exiting: the first other thread that was not exiting after its read answers for the process (a
// thread past exit_mm() reads an empty map, so a read it made while exiting does not count).
function readThroughThread(p: ProcessHandle, file: string): string {
  // Only for a thread-group leader: a thread pidfd's own thread exiting means that thread is going.
  const tgid = /^Tgid:\s+(\d+)$/m.exec(readUnchecked(p.pid, 'status') ?? '')?.[1];
  if (tgid !== String(p.pid)) throw goneError(p.pid, file);
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${p.pid}/task`);
  } catch {
    throw goneError(p.pid, file);
  }
  for (const tid of tids) {
    if (Number(tid) === p.pid) continue;
    let text: string;
    try {
      text = readProc(`/proc/${p.pid}/task/${tid}/${file}`);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ESRCH') continue; // that thread is gone
      throw err;
    }
    if (p.exited) break;
    if (!exiting(p.pid, tid)) return text;
  }
  throw goneError(p.pid, file); // every thread is exiting: the pidfd will say so soon
}

// PF_EXITING (include/linux/sched.h) is set at the start of do_exit(), before exit_mm() drops the memory map and
// long before the pidfd reports the exit: in between, maps and smaps_rollup read back empty or cut short.
const PF_EXITING = 0x4;

function exiting(pid: number, tid?: string): boolean {
  const stat = statUnchecked(pid, tid === undefined ? 'stat' : `task/${tid}/stat`);
  return stat === undefined || (stat.flags & PF_EXITING) !== 0;
}

/** /proc/<pid>/<file> as it is now, or undefined if it cannot be read. Unchecked: the pid may name a stranger
 *  by now, so the caller checks the process's pidfd after the read before trusting it. */
export function readUnchecked(pid: number, file: string): string | undefined {
  try {
    return readProc(`/proc/${pid}/${file}`);
  } catch {
    return undefined; // ENOENT/ESRCH: the process (or thread) is gone
  }
}

/** /proc/self/<file> of this process (no check needed: we are alive); throws the read's error. */
export function readSelf(file: string): string {
  return readProc(`/proc/self/${file}`);
}

/** Writes /proc/self/<file> (oom_score_adj) in one write(2); throws the write's error (EACCES, EINVAL). */
export function writeSelf(file: string, text: string): void {
  writeFileSync(`/proc/self/${file}`, text);
}

/** Parses /proc/<pid>/stat; the command name may hold spaces and parentheses, so fields start after the last ')'. */
export function parseStat(text: string): ProcStat {
  const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
  // f[0] is field 3 (state), so field n is f[n - 3].
  return {
    state: f[0],
    ppid: Number(f[1]),
    pgid: Number(f[2]),
    sid: Number(f[3]),
    flags: Number(f[6]),
    nice: Number(f[16]),
    startTime: BigInt(f[19]),
  };
}

/** /proc/<pid>/stat (or another stat file below it, e.g. `task/<tid>/stat`) parsed, unchecked (see
 *  `readUnchecked`). */
export function statUnchecked(pid: number, file = 'stat'): ProcStat | undefined {
  const text = readUnchecked(pid, file);
  return text === undefined ? undefined : parseStat(text);
}

/** `Name:   123 kB` fields (status, smaps_rollup, meminfo), in bytes. */
export function parseKb(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const m of text.matchAll(/^(\w+):\s+(\d+) kB$/gm)) out.set(m[1], Number(m[2]) * 1024);
  return out;
}

/** /proc/<pid>/statm: sizes in pages. */
export function parseStatm(text: string): { size: number; resident: number; shared: number } {
  const [size, resident, shared] = text.trim().split(/\s+/).map(Number);
  return { size, resident, shared };
}

/** The cgroup v2 path in /proc/<pid>/cgroup (its "0::" line), if it has one. */
export function parseCgroupV2(text: string): string | undefined {
  return text
    .split('\n')
    .find((l) => l.startsWith('0::'))
    ?.slice(3);
}

/** A list of pids separated by spaces or newlines (task/<tid>/children, cgroup.procs). */
export function parsePids(text: string): number[] {
  return text
    .split(/\s+/)
    .filter((w) => w !== '')
    .map(Number);
}

/** /proc/meminfo's kB fields, in bytes (`read`: how to read the file, e.g. through a kept descriptor). */
export function readMeminfo(read: ReadFile = readFresh): Map<string, number> {
  // Without /proc/meminfo nothing here can work: throw the read's own error (ENOENT) rather than guess.
  return parseKb(read('/proc/meminfo') ?? readProc('/proc/meminfo'));
}

/**
 * The value of `key` in a flat keyed file, one `key value` pair a line (/proc/vmstat, a memory cgroup's
 * memory.stat, memory.events, memory.oom_control); undefined when the file has no such line.
 */
export function keyedValue(text: string, key: string): number | undefined {
  let at = 0;
  if (!text.startsWith(`${key} `)) {
    at = text.indexOf(`\n${key} `) + 1;
    if (at === 0) return undefined;
  }
  const start = at + key.length + 1;
  const end = text.indexOf('\n', start);
  return Number(text.slice(start, end === -1 ? undefined : end));
}

/** /proc/vmstat's `oom_kill` (the kernel's OOM kills since boot, Linux 4.13); undefined where it is not counted. */
export function readVmstatOomKills(read: ReadFile = readFresh): number | undefined {
  const text = read('/proc/vmstat');
  return text === undefined ? undefined : keyedValue(text, 'oom_kill');
}

/** This boot's random id (/proc/sys/kernel/random/boot_id). */
export function readBootId(): string {
  return readFileSync('/proc/sys/kernel/random/boot_id', 'latin1').trim();
}

/**
 * A hint: the pids in /proc/<pid>/task/<tid>/children for every thread of `pid` (CONFIG_PROC_CHILDREN, Linux
 * 4.2). Each thread keeps its own list of the children it forked, so the whole process's children need all of them.
 */
export function listChildren(pid: number): number[] {
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return [];
  }
  const out: number[] = [];
  for (const tid of tids) {
    const text = readUnchecked(pid, `task/${tid}/children`);
    if (text !== undefined) out.push(...parsePids(text)); // undefined: the thread exited meanwhile
  }
  return out;
}

/** Whether the kernel has /proc/<pid>/task/<tid>/children (CONFIG_PROC_CHILDREN); undefined if the check could not
 *  run (out of fds or memory). */
export function hasChildrenFiles(): boolean | undefined {
  try {
    readFileSync(`/proc/self/task/${process.pid}/children`, 'latin1');
    return true;
  } catch (err) {
    // Out of fds or memory says nothing about the kernel: no answer, to be asked again.
    return outOfResource((err as NodeJS.ErrnoException).code) ? undefined : false;
  }
}

/** The thread ids of this process (/proc/self/task), the main thread's (the pid) among them. */
export function selfThreads(): number[] {
  return readdirSync('/proc/self/task').map(Number);
}

/** A hint: every pid in /proc (processes, not threads). */
export function listPids(): number[] {
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    const c = name.charCodeAt(0);
    if (c >= 48 && c <= 57) out.push(Number(name));
  }
  return out;
}

/** A hint: every process's stat, from one scan of every /proc/<pid>/stat. */
export function statsByScan(): Map<number, ProcStat> {
  const out = new Map<number, ProcStat>();
  for (const pid of listPids()) {
    const st = statUnchecked(pid);
    if (st !== undefined) out.set(pid, st);
  }
  return out;
}

/** A hint: every process's pid grouped by its parent's, from one scan of every /proc/<pid>/stat. */
export function childrenByScan(stats = statsByScan()): Map<number, number[]> {
  const byParent = new Map<number, number[]>();
  for (const [pid, { ppid }] of stats) {
    const list = byParent.get(ppid);
    if (list) list.push(pid);
    else byParent.set(ppid, [pid]);
  }
  return byParent;
}

/**
 * What /proc says about a process, as `readProcess` returns it. A field is absent when its file could not be read.
 *
 * @example
 * const v: ProcessView | undefined = readProcess(p);
 * if (v) console.log(v.state, v.ppid, v.cmdline?.join(' '), v.status?.get('VmRSS'));
 */
export interface ProcessView {
  /** /proc/<pid>/comm */
  comm?: string;
  /** /proc/<pid>/cmdline, split at the NULs. */
  cmdline?: string[];
  /** From /proc/<pid>/stat. */
  stat?: ProcStat;
  /** The lines of /proc/<pid>/cgroup. */
  cgroup?: string[];
  /** The `kB` fields of /proc/<pid>/status (VmRSS, RssAnon, RssFile, RssShmem, VmSize, VmSwap ...), in bytes. */
  status?: Map<string, number>;
}

/**
 * Reads a process's comm, cmdline, stat, cgroup and status from /proc, then checks its pidfd: if it has exited by
 * then, the pid may already name another process, so nothing is returned (`undefined`). Otherwise every file read
 * was this process's. A process whose main thread has exited while other threads run is alive, and shown.
 *
 * @example
 * import { PidFd, readProcess } from 'pidfd';
 * const view = readProcess(PidFd.open(pid));
 * console.log(view ? `${view.comm} (state ${view.stat?.state})` : 'exited');
 */
export function readProcess(pidfd: PidFd): ProcessView | undefined {
  void pidfd.fd; // throws if closed
  const pid = pidfd.pid;
  const stat = readUnchecked(pid, 'stat');
  const cmdline = readUnchecked(pid, 'cmdline');
  const comm = readUnchecked(pid, 'comm');
  const cgroup = readUnchecked(pid, 'cgroup');
  let status = readUnchecked(pid, 'status');
  // A leader that exited while its threads run has no memory lines of its own: a live thread's status has them.
  if (status !== undefined && !/^VmRSS:/m.test(status) && exiting(pid)) {
    try {
      status = readThroughThread(pidfd, 'status');
    } catch {
      /* every thread is exiting: keep the leader's */
    }
  }
  if (pidfd.exited) return undefined; // after the reads: if it has not exited, they were of this process
  return {
    comm: comm?.trim(),
    cmdline: cmdline?.split('\0').filter((s) => s !== ''),
    stat: stat === undefined ? undefined : parseStat(stat),
    cgroup: cgroup?.split('\n').filter((s) => s !== ''),
    status: status === undefined ? undefined : parseKb(status),
  };
}

/** A signal mask field of /proc/<pid>/status (`SigCgt`, `SigIgn`, `SigBlk`, `SigPnd`, `ShdPnd`): hex, bit N-1 for
 *  signal N. undefined when the field is absent. */
export function parseSignalMask(
  status: string,
  field: 'SigCgt' | 'SigIgn' | 'SigBlk' | 'SigPnd' | 'ShdPnd',
): bigint | undefined {
  const m = new RegExp(`^${field}:\\s*([0-9a-fA-F]+)$`, 'm').exec(status);
  return m === null ? undefined : BigInt(`0x${m[1]}`);
}

/** Whether the status text's `SigCgt` shows a handler for `signo` (false when the field is absent). */
export function catchesSignal(status: string, signo: number): boolean {
  const mask = parseSignalMask(status, 'SigCgt');
  return mask !== undefined && ((mask >> BigInt(signo - 1)) & 1n) === 1n;
}

/** The cgroup v1 path of `controller` in /proc/<pid>/cgroup text (`4:memory:/a/b` → `/a/b`), if it has one. */
export function parseCgroupV1(text: string, controller: string): string | undefined {
  for (const line of text.split('\n')) {
    const first = line.indexOf(':');
    const second = line.indexOf(':', first + 1);
    if (first < 0 || second < 0) continue;
    if (
      line
        .slice(first + 1, second)
        .split(',')
        .includes(controller)
    )
      return line.slice(second + 1);
  }
  return undefined;
}

/**
 * This process's ancestors, parent first, from the ppid chain (/proc/self/stat, then each parent's stat). A
 * snapshot: an ancestor that exits meanwhile leaves the chain (its pid may then name a stranger, which is only
 * spared, never harmed, by a caller that treats the list as "never signal").
 */
export function ancestors(): number[] {
  const out: number[] = [];
  let ppid = parseStat(readSelf('stat')).ppid;
  while (ppid > 1 && out.length < 4096 && !out.includes(ppid)) {
    out.push(ppid);
    const st = statUnchecked(ppid);
    if (st === undefined) break;
    ppid = st.ppid;
  }
  return out;
}
