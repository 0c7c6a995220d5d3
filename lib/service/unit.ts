// The systemd unit of `pidfd lmk`. The shipped file systemd/pidfd-lmk.service is the one source of its text (its
// comments say why each setting is there); renderUnit() only rewrites its ExecStart line for the Node and the
// package it runs from.
import { readFileSync } from 'node:fs';
import { isAbsolute, join } from 'node:path';
import { invalidValue, validateObject } from '../validate';

const ROOT = join(__dirname, '..', '..');

/** The unit's name, as `systemctl` knows it. */
export const UNIT_NAME = 'pidfd-lmk.service';

/** Where the package keeps the unit file (shipped in the tarball). */
export const UNIT_FILE = join(ROOT, 'systemd', UNIT_NAME);

/** The config file the unit passes to `pidfd lmk --config`. */
export const DEFAULT_CONFIG = '/etc/pidfd/lmk.toml';

/**
 * The paths ExecStart names, each absolute (systemd runs the first without a PATH search).
 *
 * @example
 * const paths: UnitPaths = { node: '/usr/local/bin/node', config: '/etc/pidfd/workers.toml' };
 */
export interface UnitPaths {
  /** The Node executable (default: the one running now, `process.execPath`). */
  node?: string;
  /** The package's `bin/pidfd.js` (default: this package's). */
  script?: string;
  /** The config file (default: /etc/pidfd/lmk.toml). */
  config?: string;
}

// A command-line word as systemd.service(5) reads it: `%` starts a specifier, so it is doubled, and so is `$` in an
// argument (variables are expanded in arguments, not in the command); a word with blanks, quotes or backslashes is
// double-quoted, with C escapes for `\` and `"`.
function word(text: string, command: boolean): string {
  let w = text.replace(/%/g, '%%');
  if (!command) w = w.replace(/\$/g, '$$$$');
  return /[\s"'\\;]/.test(w) ? `"${w.replace(/[\\"]/g, (c) => `\\${c}`)}"` : w;
}

function absolutePath(value: unknown, name: string): string {
  if (typeof value !== 'string' || !isAbsolute(value)) throw invalidValue(name, value, 'must be an absolute path');
  // eslint-disable-next-line no-control-regex
  if (/[\x00-\x1f\x7f]/.test(value)) throw invalidValue(name, value, 'must not hold control characters');
  return value;
}

/**
 * The ExecStart command line: `NODE SCRIPT lmk --config CONFIG`, quoted and escaped for a unit file.
 *
 * @example
 * unitExecStart({ node: '/usr/bin/node', script: '/opt/pidfd/bin/pidfd.js' });
 * // '/usr/bin/node /opt/pidfd/bin/pidfd.js lmk --config /etc/pidfd/lmk.toml'
 */
export function unitExecStart(paths: UnitPaths = {}): string {
  validateObject(paths, 'paths');
  const node = absolutePath(paths.node ?? process.execPath, 'paths.node');
  // systemd refuses an executable name with quotes or backslashes ("contains special characters").
  if (/["'\\]/.test(node)) throw invalidValue('paths.node', node, 'must not hold quotes or backslashes');
  const script = absolutePath(paths.script ?? join(ROOT, 'bin', 'pidfd.js'), 'paths.script');
  const config = absolutePath(paths.config ?? DEFAULT_CONFIG, 'paths.config');
  return [node, script, 'lmk', '--config', config].map((w, i) => word(w, i === 0)).join(' ');
}

/**
 * The unit file's text for this install: the shipped systemd/pidfd-lmk.service with its ExecStart naming `paths`
 * (by default the running Node and this package), everything else as shipped. Throws ERR_INVALID_ARG_VALUE for a
 * path that is not absolute. Paths under /tmp are hidden from the service by its PrivateTmp=.
 *
 * @example
 * import { writeFileSync } from 'node:fs';
 * writeFileSync('/etc/systemd/system/pidfd-lmk.service', renderUnit());
 */
export function renderUnit(paths: UnitPaths = {}): string {
  const exec = unitExecStart(paths);
  const text = readFileSync(UNIT_FILE, 'utf8');
  const lines = text.match(/^ExecStart=.*$/gm) ?? [];
  if (lines.length !== 1) throw new Error(`${UNIT_FILE} must have one ExecStart= line, not ${lines.length}`);
  return text.replace(/^ExecStart=.*$/m, () => `ExecStart=${exec}`);
}
