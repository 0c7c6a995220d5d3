import { PidFd, readProcess } from '../index';
import { type Command, parsePid, UsageError } from './command';
import { mib } from './format';

/** `pidfd memory <pid>...`: the memory view of processes, read through a pidfd. */
export const memory: Command = {
  name: 'memory',
  summary: 'memory of a process (RSS, PSS, anonymous, file, shmem, swap) and, with --maps, its mappings',
  usage: 'pidfd memory <pid>... [--maps] [--json]',
  description: [
    'Reads /proc/<pid>/smaps_rollup (falling back to status, then statm) through a pidfd, and re-checks the pidfd',
    "afterwards, so a pid recycled while reading is reported as gone instead of showing a stranger's memory.",
    'rss, pss, anon and swap come from smaps_rollup; file and shmem from the RssFile and RssShmem counters of',
    '/proc/<pid>/status (smaps_rollup has no resident split for them).',
    '',
    'Options:',
    '  --maps    also list the mappings: start-end, size, permissions, kind (anon, file, stack, heap, shmem,',
    '            special) and path',
    '  --json    one JSON document per process (addresses as strings)',
    '',
    'Exit status: 0, or 1 when a process does not exist (the others are still printed).',
    '',
    'Example: pidfd memory $(pgrep -n node) --maps',
  ].join('\n'),
  options: { maps: { type: 'boolean' } },
  async run(ctx) {
    if (ctx.positionals.length === 0) throw new UsageError('a pid is required');
    const pids = ctx.positionals.map((p) => parsePid(p));
    let status = 0;
    for (const pid of pids) {
      let p: PidFd;
      try {
        p = PidFd.open(pid);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
        ctx.warn(`pidfd memory: no such process: ${pid}`);
        ctx.emit({ pid, error: { code: 'ESRCH', message: 'no such process' } });
        status = 1;
        continue;
      }
      try {
        const m = p.memory();
        const view = readProcess(p);
        if (view === undefined) throw Object.assign(new Error(`no such process: ${pid}`), { code: 'ESRCH' });
        const comm = view.comm ?? '';
        const maps = ctx.values.maps ? p.maps() : undefined;
        ctx.emit({ pid, comm, ...m, ...(maps ? { maps } : {}) });
        ctx.print(
          `${pid} (${comm})  rss ${mib(m.rss)}  pss ${mib(m.pss)}  anon ${mib(m.anon)}  file ${mib(m.file)}  ` +
            `shmem ${mib(m.shmem)}  swap ${mib(m.swap)}  [${m.source}]`,
        );
        for (const x of maps ?? []) {
          const size = Number(x.end - x.start);
          ctx.print(
            `  ${x.start.toString(16).padStart(12, '0')}-${x.end.toString(16).padStart(12, '0')} ` +
              `${(size >= 2 ** 20 ? mib(size) : `${size / 1024} KiB`).padStart(12)} ` +
              `${x.perms} ${x.kind.padEnd(7)} ${x.path}`,
          );
        }
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
        ctx.warn(`pidfd memory: no such process: ${pid} (it exited while being read)`);
        ctx.emit({ pid, error: { code: 'ESRCH', message: 'no such process' } });
        status = 1;
      } finally {
        p.close();
      }
    }
    return status;
  },
};
