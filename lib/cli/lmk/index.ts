// `pidfd lmk`: the low-memory killer as a command and a service. Its settings (settings.ts) come from flags and an
// optional TOML file (config.ts); run.ts runs it. `pidfd lmk status` asks a running one over its status socket.
import { resolve } from 'node:path';
import { queryStatus } from '../../service/status';
import { renderUnit } from '../../service/unit';
import { mib } from '../format';
import type { Command } from '../command';
import { UsageError } from '../command';
import { loadSettings, runService } from './run';
import { toToml } from './config';
import { parseArgsOptions, SETTINGS } from './settings';

const GROUPS: [string, string][] = [
  ['candidates', 'Candidates (one of):'],
  ['when', 'When to act (rules; none given: --min-available 10%):'],
  ['who', 'Who (LIST: comma-separated pids, command names and /regexps/ over comm, cmdline and cgroup):'],
  ['what', 'What and how:'],
  ['service', 'The service:'],
];

const VALUE: Record<string, string> = {
  amount: 'X',
  duration: 'T',
  interval: 'T|MIN..MAX',
  psi: "'some T/W'",
  list: 'LIST',
  signal: 'SIG',
  path: 'PATH',
  address: 'HOST:PORT',
  command: 'CMD',
  integer: 'N',
  number: 'F',
  enum: 'WORD',
};

function optionHelp(): string[] {
  const out: string[] = [];
  for (const [group, title] of GROUPS) {
    out.push(title);
    for (const s of SETTINGS.filter((x) => x.group === group)) {
      const flag =
        s.kind === 'boolean'
          ? s.default
            ? `--no-${s.key}`
            : `--${s.key}`
          : `--${s.key} ${s.kind === 'enum' ? s.values!.join('|') : VALUE[s.kind]}`;
      const def = s.shows && s.kind !== 'boolean' ? ` (default ${s.shows})` : '';
      const help = s.kind === 'boolean' && s.default ? s.off! : s.help;
      out.push(...wrap(`  ${flag}`, `${help}${def}`));
    }
  }
  return out;
}

const WIDTH = 112;
const INDENT = 28;

/** A flag and its help in two columns, the help wrapped at WIDTH. */
function wrap(flag: string, help: string): string[] {
  const lines: string[] = [];
  let line = flag.length + 2 <= INDENT ? flag.padEnd(INDENT) : '';
  if (line === '') lines.push(flag);
  for (const word of help.split(' ')) {
    const pad = line === '' ? ' '.repeat(INDENT) : line;
    if (line !== '' && line.trimEnd().length > INDENT - 1 && `${line}${word}`.length > WIDTH) {
      lines.push(line.trimEnd());
      line = `${' '.repeat(INDENT)}${word} `;
    } else {
      line = `${pad}${word} `;
    }
  }
  lines.push(line.trimEnd());
  return lines;
}

/** Where `pidfd lmk status` looks when --status-socket is not given: the shipped unit's RuntimeDirectory. */
const STATUS_SOCKET = '/run/pidfd-lmk/status.sock';

/** The status document as the service makes it (run.ts). */
interface StatusDocument {
  pid: number;
  since: string;
  config: { file: string | null; settings: Record<string, unknown> };
  headroom: { available: number; total: number; source: string };
  threshold: number | null;
  episodes: number;
  kills: number;
  kernelOomKills: number;
  candidates: { pid: number; comm: string; oomScoreAdj: number; size: number; badness: number; protected: boolean }[];
  lastKills: { pid: number; comm: string; pss: number; bytesFreed: number; deathMs: number; dryRun: boolean }[];
}

function statusText(d: StatusDocument): string[] {
  const out = [
    `pidfd lmk, pid ${d.pid}, running since ${d.since}${d.config.file ? `, config ${d.config.file}` : ''}`,
    `available ${mib(d.headroom.available)} of ${mib(d.headroom.total)} (${d.headroom.source})` +
      `${d.threshold !== null ? `, acting below ${mib(d.threshold)}` : ''}`,
    `episodes ${d.episodes}, kills ${d.kills}, kernel OOM kills ${d.kernelOomKills}`,
    `candidates, first to die first (${d.candidates.length}):`,
    ...d.candidates.map(
      (c) =>
        `  ${String(c.pid).padStart(7)} ${c.comm.padEnd(16)} adj ${String(c.oomScoreAdj).padStart(5)}  ` +
        `${mib(c.size).padStart(12)}${c.protected ? '  protected' : ''}`,
    ),
    `last kills (${d.lastKills.length}):`,
    ...d.lastKills.map(
      (k) =>
        `  ${String(k.pid).padStart(7)} ${k.comm.padEnd(16)} PSS ${mib(k.pss)}` +
        (k.dryRun ? ' (dry run)' : `, ${mib(k.bytesFreed)} back, dead after ${k.deathMs.toFixed(1)} ms`),
    ),
    'settings:',
    ...Object.entries(d.config.settings).map(([key, v]) => `  ${key} = ${JSON.stringify(v)}`),
  ];
  return out;
}

/** `pidfd lmk`: the low-memory killer in the foreground, or as a service. */
export const lmk: Command = {
  name: 'lmk',
  summary: 'run the low-memory killer (in the foreground or as a service), logging each decision',
  usage:
    'pidfd lmk [--config FILE] (--cgroup DIR | --children-of PID) [--min-available 10%] [options]\n' +
    '       pidfd lmk --check-config [--config FILE] [options]   |   pidfd lmk --print-unit\n' +
    '       pidfd lmk status [--status-socket PATH]',
  description: [
    "Watches available memory (MemAvailable, or a memory cgroup's headroom), free swap and/or memory pressure",
    '(PSI), sampling faster as the headroom nears the threshold (10 ms to 1 s), and answers pressure in steps:',
    'reclaim (process_madvise pageout of file pages; anonymous ones too where swap can take them), trim (a signal,',
    'only to candidates that catch it), kill (the candidate the kernel OOM killer would pick for this budget;',
    'SIGKILL through its pidfd, process_mrelease, and the next decision as soon as its memory is gone). It only',
    'ever acts on the candidates; never on itself, its ancestors or pid 1. Kills made by the',
    "kernel's own OOM killer in the budget are logged too (kernel-oom). See docs/low-memory-killer.md.",
    '',
    'Every setting is a flag and a key of the --config file (TOML: min-available = "10%"); flags win over the',
    'file. SIGHUP reads the file again; a bad file is reported and the running settings stay.',
    'Sizes: 10% of the budget, 512M, 1.5GiB. Durations: 500 (ms), 500ms, 2s, 5m. Negative numbers: --nice=-5.',
    '',
    ...optionHelp(),
    '',
    'Runs until interrupted (SIGINT/SIGTERM). Exit status: 0; 1 on a failure to start or a bad config file;',
    '2 on bad flags.',
    '',
    'Example: pidfd lmk --cgroup /sys/fs/cgroup/memory/workers --min-available 10% --dry-run',
  ].join('\n'),
  options: parseArgsOptions(),
  async run(ctx) {
    const [sub, ...extra] = ctx.positionals;
    if (sub === 'status') {
      if (extra.length > 0) throw new UsageError(`unexpected argument: ${extra[0]}`);
      const socket = typeof ctx.values['status-socket'] === 'string' ? ctx.values['status-socket'] : STATUS_SOCKET;
      const doc = await queryStatus(socket, 5000);
      if (ctx.json) ctx.emit(doc);
      else for (const line of statusText(doc as unknown as StatusDocument)) ctx.print(line);
      return 0;
    }
    if (sub !== undefined) throw new UsageError(`unexpected argument: ${sub}`);
    const v = ctx.values as Record<string, unknown>;
    if (v['print-unit'] === true) {
      const config = typeof v.config === 'string' ? resolve(v.config) : undefined;
      ctx.line(renderUnit({ config }).trimEnd());
      return 0;
    }
    if (v['check-config'] === true) {
      const { view } = loadSettings(v);
      ctx.line(toToml(view.settings).trimEnd());
      return 0;
    }
    return runService(ctx, v);
  },
};
