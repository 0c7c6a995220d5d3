import { type ExitInfo, ExitWatcher, PidFd } from '../index';
import { type Command, parseMs, parsePid, UsageError } from './command';
import { describeExit, INTERRUPTED, ms, openPid, str, TIMED_OUT } from './describe';

/** `pidfd wait <pid>...`: block until processes exit, any process, not only children. */
export const wait: Command = {
  name: 'wait',
  summary: 'wait for processes to exit (any process, not only children), printing each exit as it happens',
  usage: 'pidfd wait <pid>... [--any] [--timeout ms] [--json]',
  description: [
    'Opens a pidfd for every pid first (so a pid recycled later cannot be mistaken for the process), then waits',
    'for the exits on one epoll set: no polling. Like `tail --pid`, but exact, and for many processes. The exit',
    'status of a process that is not a child of this command is known once its own parent has reaped it',
    '(Linux 6.15+); otherwise it is reported as unknown, never guessed.',
    '',
    'Options:',
    '  --any           return as soon as one of them has exited',
    '  -t, --timeout MS  give up after MS (500, 500ms, 1.5s, 2m)',
    '  --json          one JSON line per exit: {"event":"exit","pid","code","signal","source","elapsedMs"},',
    '                  and {"event":"timeout","running":[pids]} on timeout',
    '',
    'Exit status: 0 when they have exited (one of them, with --any), 124 on timeout, 130 when interrupted,',
    '1 when a pid names no process (nothing is waited for then), 2 for bad arguments.',
    '',
    'Examples:',
    '  pidfd wait 1234 && echo "1234 is gone"',
    '  pidfd wait --any --timeout 30s $(pgrep -d " " worker)',
  ].join('\n'),
  options: { any: { type: 'boolean' }, timeout: { type: 'string', short: 't' } },
  async run(ctx) {
    if (ctx.positionals.length === 0) throw new UsageError('at least one pid is required');
    const pids = ctx.positionals.map((s) => parsePid(s));
    const timeoutText = str(ctx, 'timeout');
    const timeout = timeoutText === undefined ? undefined : parseMs(timeoutText, '--timeout');
    const any = ctx.values.any === true;
    const handles: PidFd[] = [];
    try {
      for (const pid of new Set(pids)) handles.push(openPid(pid));
    } catch (err) {
      for (const p of handles) p.close();
      throw err;
    }
    const t0 = performance.now();
    const watcher = new ExitWatcher();
    for (const p of handles) watcher.add(p);
    const running = new Set(handles.map((p) => p.pid));
    return await new Promise<number>((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      const finish = (status: number): void => {
        if (timer) clearTimeout(timer);
        ctx.signal.removeEventListener('abort', onAbort);
        watcher.close();
        for (const p of handles) p.close();
        resolve(status);
      };
      const onAbort = (): void => finish(INTERRUPTED);
      ctx.signal.addEventListener('abort', onAbort, { once: true });
      if (timeout !== undefined) {
        timer = setTimeout(() => {
          const left = [...running];
          ctx.print(`timed out after ${ms(timeout)}: still running: ${left.join(' ')}`);
          ctx.emit({ event: 'timeout', running: left, elapsedMs: performance.now() - t0 });
          finish(TIMED_OUT);
        }, timeout);
      }
      watcher.on('exit', (info: ExitInfo) => {
        running.delete(info.pid);
        const elapsedMs = performance.now() - t0;
        ctx.print(`${info.pid} ${describeExit(info)} (after ${ms(elapsedMs)})`);
        ctx.emit({
          event: 'exit',
          pid: info.pid,
          code: info.code,
          signal: info.signal,
          source: info.source,
          elapsedMs,
        });
        if (any || running.size === 0) finish(0);
      });
    });
  },
};
