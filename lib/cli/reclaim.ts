import { type MappingKind, PidFd } from '../index';
import { type Command, parsePid, UsageError } from './command';
import { mib } from './format';

const KINDS = ['anon', 'file', 'stack', 'heap', 'shmem'];

/** `pidfd reclaim <pid>`: process_madvise pageout/cold over a process's mappings. */
export const reclaim: Command = {
  name: 'reclaim',
  summary: "ask the kernel to page out (or deactivate) a process's memory with process_madvise",
  usage: 'pidfd reclaim <pid> [--advice pageout|cold] [--kinds anon,file,...] [--json]',
  description: [
    "Reads the process's mappings and advises them with process_madvise(2) in batches: all but the special",
    'kernel mappings ([vdso], [vvar], [vsyscall], ...), which the kernel refuses. Prints the bytes advised and the',
    'RSS before and after. Advised is not reclaimed: without swap, anonymous pages stay in memory; file pages',
    'that are clean go. If the mappings change meanwhile, it says so and advises what is mapped now.',
    '',
    'Options:',
    '  --advice pageout|cold   pageout (default): reclaim now; cold: deactivate, reclaimed first under pressure',
    `  --kinds LIST            comma-separated mapping kinds (default all: ${KINDS.join(',')})`,
    '',
    'Exit status: 0, 1 when the process does not exist or the kernel refuses (e.g. EPERM).',
    '',
    'Example: pidfd reclaim 1234 --kinds file',
  ].join('\n'),
  options: { advice: { type: 'string' }, kinds: { type: 'string' } },
  async run(ctx) {
    if (ctx.positionals.length !== 1)
      throw new UsageError(ctx.positionals.length === 0 ? 'a pid is required' : 'one pid only');
    const pid = parsePid(ctx.positionals[0]);
    const advice = (ctx.values.advice as string | undefined) ?? 'pageout';
    if (advice !== 'pageout' && advice !== 'cold')
      throw new UsageError(`--advice must be pageout or cold, not ${advice}`);
    let kinds: Exclude<MappingKind, 'special'>[] | undefined;
    if (typeof ctx.values.kinds === 'string') {
      kinds = ctx.values.kinds.split(',').map((k) => k.trim()) as typeof kinds;
      for (const k of kinds!)
        if (!KINDS.includes(k)) throw new UsageError(`unknown mapping kind ${k} (${KINDS.join(', ')})`);
    }
    const p = PidFd.open(pid);
    try {
      const r = p.reclaim({ advice, kinds });
      ctx.emit({ pid, ...r });
      ctx.print(
        `${pid}: ${advice} advised ${mib(r.advised)} over ${r.ranges} mappings; ` +
          `RSS ${mib(r.rssBefore)} -> ${mib(r.rssAfter)}`,
      );
      if (r.mapsChanged)
        ctx.print(
          `  the mappings changed meanwhile (${r.retries} re-read${r.retries === 1 ? '' : 's'}): ` +
            'what is mapped now was advised',
        );
      return 0;
    } finally {
      p.close();
    }
  },
};
