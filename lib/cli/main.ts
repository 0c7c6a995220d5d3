// The `pidfd` command line: parses arguments with node:util parseArgs, prints help, and turns what a command
// throws into one line and an exit status (2 for bad arguments, 1 for everything else).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { commands } from './commands';
import { type Command, type Context, UsageError } from './command';

/** Where the CLI writes; tests and embedders may pass their own. */
export interface Io {
  stdout(text: string): void;
  stderr(text: string): void;
}

const processIo: Io = {
  stdout: (t) => process.stdout.write(t),
  stderr: (t) => process.stderr.write(t),
};

function topHelp(): string {
  const width = Math.max(...commands.map((c) => c.name.length));
  return [
    'Usage: pidfd <command> [options]',
    '',
    'Linux process file descriptors from the command line: wait for any process, signal it with no pid-reuse',
    "race, kill whole trees, free a killed process's memory at once.",
    '',
    'Commands:',
    ...commands.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    '',
    'Every command takes --help, and --json for output meant for programs.',
    'Exit status: 0 success, 1 failure (e.g. no such process), 2 bad arguments.',
    '',
  ].join('\n');
}

function commandHelp(c: Command): string {
  return `Usage: ${c.usage}\n\n${c.summary}\n\n${c.description}\n`;
}

/** Runs the CLI with `argv` (the words after `pidfd`); resolves with the exit status. Never throws. */
export async function main(argv: string[], io: Io = processIo): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    const target = name === 'help' && rest[0] ? commands.find((c) => c.name === rest[0]) : undefined;
    io.stdout(target ? commandHelp(target) : topHelp());
    return name === undefined ? 2 : 0;
  }
  if (name === '--version' || name === '-v') {
    const pkg = JSON.parse(readFileSync(join(__dirname, '..', '..', 'package.json'), 'utf8')) as { version: string };
    io.stdout(`${pkg.version}\n`);
    return 0;
  }
  const command = commands.find((c) => c.name === name);
  if (!command) {
    io.stderr(
      `pidfd: unknown command ${JSON.stringify(name)}\n` +
        'Usage: pidfd <command> [options]   (pidfd --help lists the commands)\n',
    );
    return 2;
  }

  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({
      args: rest,
      options: { ...command.options, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
      allowPositionals: true,
      strict: true,
    });
  } catch (err) {
    // parseArgs explains at length how to pass a positional that starts with '-': keep its first sentence.
    // Some of its messages span lines (`--timeout -5`): one line it is.
    return usage(
      io,
      command,
      (err as Error).message.replace(/\. To specify a positional.*$/s, '').replace(/\s*\n\s*/g, ' '),
    );
  }
  if (parsed.values.help) {
    io.stdout(commandHelp(command));
    return 0;
  }

  const json = parsed.values.json === true;
  const abort = new AbortController();
  const onSignal = (): void => abort.abort(new Error('interrupted'));
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const ctx: Context = {
    positionals: parsed.positionals,
    values: parsed.values as Context['values'],
    json,
    print: (line) => {
      if (!json) io.stdout(`${line}\n`);
    },
    emit: (record) => {
      if (json) io.stdout(`${JSON.stringify(record, jsonValue)}\n`);
    },
    line: (text) => io.stdout(`${text}\n`),
    warn: (line) => io.stderr(`${line}\n`),
    signal: abort.signal,
  };
  try {
    return await command.run(ctx);
  } catch (err) {
    if (err instanceof UsageError) return usage(io, command, err.message);
    // System errors read like fs's ("ESRCH: no such process, pidfd_open"); coded errors get their code appended.
    const e = err as NodeJS.ErrnoException;
    const line = e.code && !e.message.includes(e.code) ? `${e.message} (${e.code})` : e.message;
    io.stderr(`pidfd ${command.name}: ${line}\n`);
    if (json) io.stdout(`${JSON.stringify({ error: { message: e.message, code: e.code ?? null } })}\n`);
    return 1;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

function usage(io: Io, command: Command, message: string): number {
  io.stderr(`pidfd ${command.name}: ${message}\nUsage: ${command.usage}\n`);
  return 2;
}

// BigInts (addresses in maps, for instance) become strings in JSON.
function jsonValue(_key: string, value: unknown): unknown {
  return typeof value === 'bigint' ? value.toString() : value;
}

/** The `bin` entry point: runs `main` on the process's arguments and exits with its status. */
export function run(): void {
  main(process.argv.slice(2)).then(
    (status) => {
      process.exitCode = status;
    },
    (err) => {
      process.stderr.write(`pidfd: internal error: ${(err as Error)?.stack ?? err}\n`);
      process.exitCode = 1;
    },
  );
}
