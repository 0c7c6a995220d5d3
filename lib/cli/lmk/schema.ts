// What settings.ts's table publishes: the config file's JSON Schema (for editors and validators), an example file
// with every key, and the reference table of docs/low-memory-killer.md. scripts/write-lmk-config.mjs writes them
// into the package; a test checks that the shipped copies are current.
import { type Kind, type Setting, SETTINGS } from './settings';

const DURATION = '^\\d+(\\.\\d+)?(ms|s|m|h)?$';
const DURATION_IN = '\\d+(\\.\\d+)?(ms|s|m|h)?';

function kindSchema(s: Setting): Record<string, unknown> {
  const k: Kind = s.kind;
  switch (k) {
    case 'amount':
      return {
        oneOf: [
          { type: 'integer', minimum: 0 },
          { type: 'string', pattern: '^\\s*(100(\\.0+)?|\\d{1,2}(\\.\\d+)?)\\s*%\\s*$' },
          { type: 'string', pattern: '^\\s*\\d+(\\.\\d+)?\\s*([KMGTkmgt]?([Ii]?[Bb])?)?\\s*$' },
        ],
      };
    case 'duration':
      return {
        oneOf: [
          { type: 'integer', minimum: 0, maximum: 2 ** 31 - 1 },
          { type: 'string', pattern: DURATION },
        ],
      };
    case 'interval':
      return {
        oneOf: [
          { type: 'integer', minimum: 1, maximum: 2 ** 31 - 1 },
          { type: 'string', pattern: `^\\s*${DURATION_IN}(\\s*\\.\\.\\s*${DURATION_IN})?\\s*$` },
        ],
      };
    case 'psi':
      return { type: 'string', pattern: `^\\s*(some|full)\\s+${DURATION_IN}\\s*/\\s*${DURATION_IN}\\s*$` };
    case 'list': {
      const item = {
        oneOf: [
          { type: 'integer', minimum: 1, maximum: 4194304 },
          { type: 'string', minLength: 1 },
        ],
      };
      return { oneOf: [{ type: 'array', items: item }, { type: 'string' }] };
    }
    case 'signal':
      return {
        oneOf: [
          { type: 'integer', minimum: 0, maximum: 64 },
          { type: 'string', pattern: '^([Ss][Ii][Gg])?[A-Za-z0-9+]+$|^\\d+$' },
        ],
      };
    case 'boolean':
      return { type: 'boolean', default: s.default };
    case 'integer':
    case 'number': {
      const n = { type: k, minimum: s.min, maximum: s.max };
      return s.keep ? { oneOf: [n, { const: 'keep' }] } : n;
    }
    case 'enum':
      return { enum: [...s.values!] };
    case 'address':
      return { type: 'string', pattern: '^(\\[[0-9a-fA-F:.]+\\]|[^:[\\]\\s]*):\\d{1,5}$' };
    default:
      return { type: 'string', minLength: 1 };
  }
}

/** The JSON Schema (2020-12) of the config file. */
export function configSchema(): Record<string, unknown> {
  const properties: Record<string, unknown> = {};
  for (const s of SETTINGS) {
    if (s.cliOnly) continue;
    properties[s.key] = { description: s.help + (s.shows ? ` (default ${s.shows})` : ''), ...kindSchema(s) };
  }
  return {
    $schema: 'https://json-schema.org/draft/2020-12/schema',
    $id: 'https://www.npmjs.com/package/pidfd/lmk.schema.json',
    title: 'pidfd lmk config file',
    description: 'The settings of `pidfd lmk --config FILE` (TOML): each key is also a command-line flag.',
    type: 'object',
    additionalProperties: false,
    properties,
  };
}

/** An example value per kind, for the example file. */
const EXAMPLE: Record<string, string> = {
  cgroup: '"/sys/fs/cgroup/workers"',
  'children-of': '1234',
  'min-available': '"10%"',
  'min-swap-free': '"10%"',
  psi: '"some 150ms/2s"',
  'psi-resource': '"memory"',
  'psi-cgroup': '"/sys/fs/cgroup/workers"',
  when: '"all"',
  critical: '"200ms"',
  interval: '"10ms..1s"',
  hysteresis: '0.1',
  'memory-cgroup': '"/sys/fs/cgroup/workers"',
  protect: '["sshd", "/^systemd/"]',
  prefer: '["/^chrome --type=renderer/"]',
  avoid: '["postgres"]',
  'min-victim': '"64M"',
  'kill-mode': '"process"',
  grace: '"5s"',
  'grace-signal': '"SIGTERM"',
  'grace-critical': '"5%"',
  'trim-signal': '"SIGUSR2"',
  'trim-always': '["my-cache"]',
  'trim-deadline': '"1s"',
  reclaim: 'true',
  'reclaim-anon': 'false',
  'kill-timeout': '"5s"',
  release: 'true',
  'pre-kill': '"logger -t pidfd-lmk about to kill $PIDFD_LMK_PID $PIDFD_LMK_NAME"',
  'pre-kill-timeout': '"2s"',
  'post-kill': '"logger -t pidfd-lmk killed $PIDFD_LMK_PID, $PIDFD_LMK_BYTES_FREED bytes back"',
  'post-kill-timeout': '"10s"',
  'dry-run': 'false',
  'oom-score-adj': '-1000',
  nice: '-20',
  lock: 'true',
  'log-format': '"auto"',
  report: '"5m"',
  metrics: '"127.0.0.1:9464"',
  'metrics-file': '"/var/lib/prometheus/node-exporter/pidfd_lmk.prom"',
  'metrics-interval': '"15s"',
  'status-socket': '"/run/pidfd-lmk/status.sock"',
};

/** Keys the example leaves commented out: one of each pair that cannot be set together. */
const COMMENTED = new Set(['children-of']);

/** The example config file: every key, each with its help; the values are defaults or examples. */
export function exampleToml(): string {
  const out = [
    '#:schema ./lmk.schema.json',
    '# pidfd lmk --config FILE: every setting of `pidfd lmk` (each key is also a flag: --KEY, flags win).',
    '# Sizes: "10%" of the budget, "512M", "1.5GiB" or bytes; durations: "500ms", "2s", "5m" or ms.',
    '# Lists: pids, command names and "/regexps/" over comm, cmdline and cgroup.',
    '',
  ];
  let group = '';
  for (const s of SETTINGS) {
    if (s.cliOnly) continue;
    if (s.group !== group) {
      group = s.group;
      out.push(`# --- ${GROUP_TITLE[group]} ---`);
    }
    out.push(`# ${s.help}${s.shows ? ` (default ${s.shows})` : ''}`);
    const ex = EXAMPLE[s.key];
    if (ex === undefined) throw new Error(`no example value for ${s.key}`);
    out.push(`${COMMENTED.has(s.key) ? '# ' : ''}${s.key} = ${ex}`);
  }
  return `${out.join('\n')}\n`;
}

const GROUP_TITLE: Record<string, string> = {
  candidates: 'who may be killed (one of)',
  when: 'when to act',
  who: 'who dies first',
  what: 'what a kill takes, and how',
  service: 'the service itself',
};

const KIND_TEXT: Record<Kind, string> = {
  amount: 'size or %',
  duration: 'duration',
  interval: 'duration or MIN..MAX',
  psi: "'some|full T/W'",
  list: 'list',
  signal: 'signal',
  path: 'path',
  address: 'HOST:PORT',
  command: 'command',
  boolean: 'boolean',
  integer: 'integer',
  number: 'number',
  enum: 'one of',
};

/** The reference table (Markdown) of every key, for docs/low-memory-killer.md. */
export function referenceMarkdown(): string {
  const rows = ['| key / flag | value | default | what it does |', '| --- | --- | --- | --- |'];
  for (const s of SETTINGS) {
    const flag = s.cliOnly
      ? `\`--${s.key}\` (flag only)`
      : s.kind === 'boolean' && s.default
        ? `\`${s.key}\` / \`--no-${s.key}\``
        : `\`${s.key}\` / \`--${s.key}\``;
    let value = KIND_TEXT[s.kind];
    if (s.kind === 'enum') value = s.values!.map((x) => `\`${x}\``).join(', ');
    if (s.kind === 'integer' || s.kind === 'number') value += ` ${s.min}..${s.max}${s.keep ? ' or `keep`' : ''}`;
    const def = s.shows ?? (s.kind === 'boolean' ? String(s.default) : '');
    rows.push(`| ${flag} | ${value} | ${def} | ${s.help.replace(/\|/g, '\\|')} |`);
  }
  return `${rows.join('\n')}\n`;
}
