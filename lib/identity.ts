// Process identity that survives a restart of the process that holds it: `pidfd.id`, `pidfd.identity()` and
// `PidFd.adopt(identity)`. The PidFd class calls in here; nothing here imports it (adopt is given the opener).
//
// Which id:
// - Linux 6.9+ keeps pidfds on their own filesystem, pidfs. Every process gets an inode number there when it is
//   created, from a 64-bit counter that never repeats within a boot, and every pidfd for that process shows that
//   inode (fstat st_ino). So the inode is an exact identity for the boot, read from the pidfd itself: no /proc,
//   no race, and it still works after the process has exited.
// - pidfs is recognised by the filesystem magic of the pidfd (statfs gives PID_FS_MAGIC, "PIDF"). readlink is no
//   use: it still says `anon_inode:[pidfd]` on pidfs, for compatibility.
// - Older kernels: anon-inode pidfds all share one inode, so the id falls back to the start time from
//   /proc/<pid>/stat (clock ticks after boot). Two processes with the same pid and the same start tick are
//   possible in principle (a pid recycled within one tick, usually 10 ms, which needs the whole pid space to wrap
//   in that time); the inode has no such hole. The start time is read, then the pidfd is checked for exit: only a
//   process that has not exited still holds its pid, so the file read was its own.
import { fstatSync, statfsSync } from 'node:fs';
import { codedError, E, outOfResource, systemError } from './errors';
import { parseStat, ProcessHandle, readBootId, readChecked } from './procfs';
import { invalidType, invalidValue } from './validate';

/** statfs f_type of pidfs (include/uapi/linux/magic.h: PID_FS_MAGIC, "PIDF"). */
export const PIDFS_MAGIC = 0x50494446;

/** Where `pidfd.id` comes from on this kernel. */
export type IdSource = 'ino' | 'start';

let detected: IdSource | undefined;
let forced: IdSource | undefined;

/** Which id this kernel gives, detected once from the first pidfd asked about. */
export function idSource(fd: number): IdSource {
  if (forced !== undefined) return forced;
  if (detected === undefined) {
    let magic = 0;
    try {
      // statfs(2) on the /proc fd link reaches the pidfd's own file (the link is followed like a symlink).
      magic = statfsSync(`/proc/self/fd/${fd}`).type;
    } catch (err) {
      if (outOfResource((err as NodeJS.ErrnoException).code)) throw err; // says nothing of pidfs: not kept
      magic = 0; // no /proc: treat as the old kernel; the start time will then fail with a clear error
    }
    detected = magic === PIDFS_MAGIC ? 'ino' : 'start';
  }
  return detected;
}

/** Tests only: pretend the kernel has (or lacks) pidfs, to exercise the fallback on a new kernel. */
export function forceIdSource(source: IdSource | undefined): void {
  forced = source;
}

/**
 * The id of the process `p` names, as `source` defines it. The start-time fallback reads /proc through the pidfd
 * (`readChecked`), so it is never a stranger's that inherited the pid.
 */
export function readId(p: ProcessHandle, source: IdSource): bigint {
  if (source === 'ino') return fstatSync(p.fd, { bigint: true }).ino;
  try {
    return parseStat(readChecked(p, 'stat', { allowExiting: true })).startTime;
  } catch {
    // Exited: its pid may already belong to someone else, so /proc cannot say whose start time we would read.
    const why = 'the process has exited; its start time can no longer be read safely';
    throw systemError(-E.ESRCH, `open /proc/${p.pid}/stat`, why);
  }
}

let bootIdCache: string | undefined;

/** This boot's random id (/proc/sys/kernel/random/boot_id): a new one after every reboot. */
export function bootId(): string {
  return (bootIdCache ??= readBootId());
}

const FORMAT = /^pidfd1:([0-9a-f-]{36}):(ino|start):(\d{1,20}):(\d{1,7})$/;

/** The identity string: `pidfd1:<boot id>:<ino|start>:<id>:<pid>`. */
export function formatIdentity(source: IdSource, id: bigint, pid: number): string {
  return `pidfd1:${bootId()}:${source}:${id}:${pid}`;
}

/** The parts of an identity string; `TypeError` ERR_INVALID_ARG_VALUE when it is not one. */
export function parseIdentity(identity: unknown): { boot: string; source: IdSource; id: bigint; pid: number } {
  if (typeof identity !== 'string') throw invalidType('identity', 'of type string', identity);
  const m = FORMAT.exec(identity.trim());
  const pid = m ? Number(m[4]) : 0;
  if (!m || pid < 1 || pid > 2 ** 22) {
    throw invalidValue(
      'identity',
      identity,
      "is not a process identity (expected 'pidfd1:<boot id>:<ino|start>:<id>:<pid>', from pidfd.identity())",
    );
  }
  return { boot: m[1], source: m[2] as IdSource, id: BigInt(m[3]), pid };
}

/** The error `PidFd.adopt` throws when the identity names a process that no longer exists under that pid. */
export function staleError(identity: string, pid: number, why: string): Error {
  const err = codedError('ERR_PIDFD_STALE', `The process identity ${identity} is stale: ${why}`) as Error & {
    pid?: number;
    identity?: string;
  };
  err.pid = pid;
  err.identity = identity;
  return err;
}

/** A handle `adopt` can check and close: the subset of PidFd it needs. */
export interface Adoptable extends ProcessHandle {
  close(): void;
}

/**
 * Re-opens the process an identity names, with `open(pid)` (PidFd.open), and checks it is the same process.
 * `ESRCH` (from pidfd_open) when no process has that pid; ERR_PIDFD_STALE when a different one has it, or the
 * machine has rebooted since the identity was taken.
 */
export function adoptWith<T extends Adoptable>(identity: string, open: (pid: number) => T): T {
  const want = parseIdentity(identity);
  if (want.boot !== bootId()) throw staleError(identity, want.pid, 'the machine has rebooted since it was taken');
  const p = open(want.pid);
  try {
    if (want.source === 'ino' && idSource(p.fd) !== 'ino') {
      throw staleError(identity, want.pid, 'it was taken with pidfs inode ids, which this kernel does not have');
    }
    const now = readId(p, want.source);
    if (now !== want.id) {
      throw staleError(identity, want.pid, `pid ${want.pid} now belongs to a different process`);
    }
    return p;
  } catch (err) {
    p.close();
    throw err;
  }
}
