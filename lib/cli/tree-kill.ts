import { killTree } from '../index';
import { type Command, parsePid } from './command';
import {
  describeExit,
  ms,
  onePid,
  openPid,
  str,
  TERMINATE_HELP,
  TERMINATE_OPTIONS,
  terminateOptions,
  TIMED_OUT,
} from './describe';

/** `pidfd tree-kill <pid>`: killTree. */
export const treeKill: Command = {
  name: 'tree-kill',
  summary: 'kill a process and all its descendants, race-free (pidfds, SIGSTOP, walk until stable)',
  usage:
    'pidfd tree-kill <pid> [-s SIG] [--timeout ms] [--kill-signal SIG|none] [--kill-timeout ms] ' +
    '[--no-release] [--no-root] [--cgroup DIR] [--json]',
  description: [
    'Walks /proc from the process down, taking a pidfd for every descendant (each checked against its parent,',
    'so a recycled pid is never taken for a member), stops the whole tree with SIGSTOP so nothing forks during',
    'the walk, walks again until nothing new appears, then signals every member and continues them, keeps',
    'walking (children forked by signal handlers are caught), escalates after the grace period, and returns once',
    'every process of the tree has exited.',
    '',
    ...TERMINATE_HELP,
    '  --no-root              leave the root process alone; kill only its descendants',
    '  --cgroup DIR           a cgroup v2 directory holding the tree: its processes are members too, and',
    '                         escalation writes cgroup.kill (catches processes re-parented away from the tree)',
    '',
    'Output: one line per process (pid, parent, how it ended, whether it needed the kill signal).',
    '',
    'Exit status: 0 when every process of the tree has exited, 124 when some are still running after the grace',
    'period with --kill-signal none (or after --kill-timeout), 1 when there is no such process, 2 for bad',
    'arguments.',
    '',
    'Examples:',
    '  pidfd tree-kill 1234',
    '  pidfd tree-kill --timeout 2s --json 1234 | jq .processes[].pid',
  ].join('\n'),
  options: { ...TERMINATE_OPTIONS, 'no-root': { type: 'boolean' }, cgroup: { type: 'string' } },
  async run(ctx) {
    const pid = onePid(ctx, (s) => parsePid(s));
    const options = terminateOptions(ctx);
    const p = openPid(pid);
    try {
      const r = await killTree(p, {
        ...options,
        includeRoot: ctx.values['no-root'] !== true,
        cgroup: str(ctx, 'cgroup'),
      });
      ctx.emit(r);
      for (const m of r.processes) {
        ctx.print(
          `${String(m.pid).padStart(7)}  ${m.parent === null ? 'root   ' : `in ${String(m.parent).padEnd(5)}`}  ` +
            `${describeExit(m.exit)}${m.escalated ? ' (escalated)' : ''}`,
        );
      }
      const escalated = r.processes.filter((m) => m.escalated).length;
      const needed = options.killSignal === undefined ? 'SIGKILL' : 'the kill signal';
      ctx.print(
        `${r.processes.length} process(es) gone in ${ms(r.elapsedMs)}` +
          `${escalated ? `; ${escalated} needed ${needed}` : ''}` +
          `${r.cgroupKilled ? '; cgroup.kill written' : ''}`,
      );
      return 0;
    } catch (err) {
      const e = err as NodeJS.ErrnoException & { pids?: number[] };
      if (e.code !== 'ETIMEDOUT') throw err;
      ctx.warn(`pidfd tree-kill: ${e.message}`);
      ctx.emit({ root: pid, error: { code: e.code, message: e.message }, running: e.pids ?? [] });
      return TIMED_OUT;
    } finally {
      p.close();
    }
  },
};
