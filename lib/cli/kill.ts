import { terminate } from '../index';
import { type Command, parsePid } from './command';
import {
  describeExit,
  ms,
  onePid,
  openPid,
  TERMINATE_HELP,
  TERMINATE_OPTIONS,
  terminateOptions,
  TIMED_OUT,
} from './describe';

/** `pidfd kill <pid>`: terminate with escalation. */
export const kill: Command = {
  name: 'kill',
  summary: 'terminate a process: signal, wait, escalate to SIGKILL, free its memory; never hits a recycled pid',
  usage:
    'pidfd kill <pid> [-s SIG] [--timeout ms] [--kill-signal SIG|none] [--kill-timeout ms] [--no-release] [--json]',
  description: [
    'Sends the signal (default SIGTERM) through a pidfd, continuing the process first if it is stopped, waits for',
    'the grace period, then sends the kill signal (default SIGKILL) and process_mrelease, and returns once the',
    'kernel says the process has exited. A pidfd names the process, not its pid: if it exits and its pid is',
    'reused during the grace period, the new process is never signalled.',
    '',
    ...TERMINATE_HELP,
    '',
    'Exit status: 0 when the process has exited, 124 when it is still running after the grace period with',
    '--kill-signal none (or after --kill-timeout, e.g. stuck in state D), 1 when there is no such process,',
    '2 for bad arguments.',
    '',
    'Examples:',
    '  pidfd kill 1234                       # SIGTERM, SIGKILL after 5 s',
    '  pidfd kill -s INT --timeout 10s 1234',
    '  pidfd kill --kill-signal none --timeout 2s 1234 || echo "still running"',
  ].join('\n'),
  options: { ...TERMINATE_OPTIONS },
  async run(ctx) {
    const pid = onePid(ctx, (s) => parsePid(s));
    const options = terminateOptions(ctx);
    const p = openPid(pid);
    try {
      const r = await terminate(p, options);
      ctx.emit(r);
      const steps = r.signals.length > 0 ? r.signals.join(', ') : 'no signal needed';
      ctx.print(
        `${pid}: ${steps} → ${describeExit(r.exit)} in ${ms(r.elapsedMs)}` +
          `${r.escalated ? ' (escalated after the grace period)' : ''}${r.released ? '; memory released' : ''}`,
      );
      return 0;
    } catch (err) {
      const e = err as NodeJS.ErrnoException & { signals?: string[] };
      if (e.code !== 'ETIMEDOUT') throw err;
      ctx.warn(`pidfd kill: ${e.message}`);
      ctx.emit({ pid, error: { code: e.code, message: e.message }, signals: e.signals ?? [] });
      return TIMED_OUT;
    } finally {
      p.close();
    }
  },
};
