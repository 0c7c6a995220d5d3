import { readFileSync } from 'node:fs';
import { capabilities } from '../capabilities';
import type { PidFdInfo } from '../pidfd';
import { readStat } from '../procfs';
import { type Command, parsePid } from './command';
import { describeExit, onePid, openPid } from './describe';

function readProc(pid: number, file: string): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/${file}`, 'latin1');
  } catch {
    return undefined;
  }
}

const KIB_FIELDS = ['VmRSS', 'RssAnon', 'RssFile', 'RssShmem', 'VmSize', 'VmSwap'] as const;

/** `pidfd info <pid>`: what PIDFD_GET_INFO and /proc say. */
export const info: Command = {
  name: 'info',
  summary: 'what PIDFD_GET_INFO and /proc say about a process: ids, cgroup, memory, identity',
  usage: 'pidfd info <pid> [--json]',
  description: [
    'Opens a pidfd for the process and prints what the kernel says through it (PIDFD_GET_INFO, Linux 6.13:',
    'pid, parent, uids and gids, cgroup id, and the exit status once it has exited and been reaped) and what',
    '/proc says (command line, state, cgroup, memory), and its identity: the string `PidFd.adopt()` turns back',
    'into a handle after a restart, or refuses if the pid has been reused. /proc is read and then the pidfd is',
    'checked: if the process exited meanwhile, the /proc part is left out (the pid may already be another\'s).',
    '',
    'Exit status: 0, 1 when there is no such process, 2 for bad arguments.',
    '',
    'Example:',
    '  pidfd info $$',
  ].join('\n'),
  options: {},
  async run(ctx) {
    const pid = onePid(ctx, (s) => parsePid(s));
    const p = openPid(pid);
    try {
      const kernel: PidFdInfo | undefined = capabilities().pidfdGetInfo ? p.info() : undefined;
      const stat = readStat(pid);
      const cmdline = readProc(pid, 'cmdline');
      const comm = readProc(pid, 'comm');
      const cgroup = readProc(pid, 'cgroup');
      const status = readProc(pid, 'status');
      const exited = p.exited; // after the reads: if it has not exited, they were of this process
      let identity: string | undefined;
      let id: string | undefined;
      try {
        identity = p.identity();
        id = p.id.toString();
      } catch {
        identity = undefined; // the start-time fallback cannot read an exited process
      }
      const memory: Record<string, number> = {};
      if (!exited && status) {
        for (const f of KIB_FIELDS) {
          const m = new RegExp(`^${f}:\\s+(\\d+) kB`, 'm').exec(status);
          if (m) memory[`${f}KiB`] = Number(m[1]);
        }
      }
      const proc = exited ? undefined : {
        comm: comm?.trim(),
        cmdline: cmdline?.split('\0').filter((s) => s !== ''),
        state: stat?.state,
        ppid: stat?.ppid,
        pgid: stat?.pgid,
        sid: stat?.sid,
        startTime: stat?.startTime.toString(),
        cgroup: cgroup?.split('\n').filter((s) => s !== ''),
        memory,
      };
      const record = { pid, exited, id, identity, kernel: kernel ?? null, proc: proc ?? null };
      ctx.emit(record);
      const row = (k: string, v: unknown): void => {
        if (v !== undefined && v !== null && v !== '') ctx.print(`${k.padEnd(10)} ${v}`);
      };
      row('pid', pid);
      row('state', exited ? `exited${kernel?.exit ? `, ${describeExit({ pid, ...kernel.exit, source: 'pidfd-info' })}` : ''}` : proc?.state);
      row('command', proc?.cmdline?.join(' ') || proc?.comm);
      row('ppid', kernel?.ppid ?? proc?.ppid);
      row('pgid/sid', proc ? `${proc.pgid} / ${proc.sid}` : undefined);
      if (kernel?.ruid !== undefined) {
        row('uid', `real ${kernel.ruid}, effective ${kernel.euid}, saved ${kernel.suid}, fs ${kernel.fsuid}`);
        row('gid', `real ${kernel.rgid}, effective ${kernel.egid}, saved ${kernel.sgid}, fs ${kernel.fsgid}`);
      }
      row('cgroup id', kernel?.cgroupId?.toString());
      for (const line of proc?.cgroup ?? []) row('cgroup', line);
      if (proc && Object.keys(memory).length > 0) {
        row('memory', Object.entries(memory).map(([k, v]) => `${k.replace(/KiB$/, '')} ${v} KiB`).join(', '));
      }
      row('started', proc ? `${proc.startTime} clock ticks after boot` : undefined);
      row('id', id);
      row('identity', identity);
      return 0;
    } finally {
      p.close();
    }
  },
};
