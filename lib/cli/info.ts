import { capabilities, type PidFdInfo, readProcess } from '../index';
import { type Command, parsePid } from './command';
import { describeExit, onePid, openPid } from './describe';

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
    "checked: if the process exited meanwhile, the /proc part is left out (the pid may already be another's).",
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
      const view = readProcess(p); // undefined once exited: the pid may already be another's
      const exited = view === undefined;
      let identity: string | undefined;
      let id: string | undefined;
      try {
        identity = p.identity();
        id = p.id.toString();
      } catch {
        identity = undefined; // the start-time fallback cannot read an exited process
      }
      const memory: Record<string, number> = {};
      for (const f of KIB_FIELDS) {
        const bytes = view?.status?.get(f);
        if (bytes !== undefined) memory[`${f}KiB`] = bytes / 1024;
      }
      const stat = view?.stat;
      const proc =
        view === undefined
          ? undefined
          : {
              comm: view.comm,
              cmdline: view.cmdline,
              state: stat?.state,
              ppid: stat?.ppid,
              pgid: stat?.pgid,
              sid: stat?.sid,
              startTime: stat?.startTime.toString(),
              cgroup: view.cgroup,
              memory,
            };
      const record = { pid, exited, id, identity, kernel: kernel ?? null, proc: proc ?? null };
      ctx.emit(record);
      const row = (k: string, v: string | number | undefined): void => {
        if (v !== undefined && v !== null && v !== '') ctx.print(`${k.padEnd(10)} ${v}`);
      };
      row('pid', pid);
      row(
        'state',
        exited
          ? `exited${kernel?.exit ? `, ${describeExit({ pid, ...kernel.exit, source: 'pidfd-info' })}` : ''}`
          : proc?.state,
      );
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
        row(
          'memory',
          Object.entries(memory)
            .map(([k, v]) => `${k.replace(/KiB$/, '')} ${v} KiB`)
            .join(', '),
        );
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
