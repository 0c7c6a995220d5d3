import { capabilities, FEATURES } from '../index';
import { type Command, UsageError } from './command';

/** `pidfd caps`: what this kernel and this build support, with the kernel each feature needs. */
export const caps: Command = {
  name: 'caps',
  summary: 'what this kernel and build support, and the kernel version each feature needs',
  usage: 'pidfd caps [--json]',
  description: [
    'Probes each kernel feature once with a harmless call (never from the version string) and prints',
    'one line per feature: supported or not, the kernel call, and the first Linux release that has it.',
    '',
    'Exit status: 0 when pidfd_open works, 1 when it does not (nothing else can work then).',
  ].join('\n'),
  options: {},
  async run(ctx) {
    if (ctx.positionals.length > 0) throw new UsageError(`unexpected argument: ${ctx.positionals[0]}`);
    const found = capabilities();
    const kernel = process.platform === 'linux' ? (await import('node:os')).release() : process.platform;
    const rows = (Object.keys(FEATURES) as (keyof typeof FEATURES)[]).map((name) => ({
      name,
      supported: found[name],
      feature: FEATURES[name][0],
      since: FEATURES[name][1],
    }));
    ctx.emit({ kernel, arch: process.arch, node: process.version, features: rows });
    ctx.print(`kernel ${kernel} (${process.arch}), node ${process.version}`);
    const width = Math.max(...rows.map((r) => r.feature.length));
    for (const r of rows) ctx.print(`  ${r.supported ? 'yes' : 'no '}  ${r.feature.padEnd(width)}  Linux ${r.since}+`);
    return found.pidfdOpen ? 0 : 1;
  },
};
