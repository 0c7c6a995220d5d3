#!/usr/bin/env node
// Writes what the settings table of `pidfd lmk` (lib/cli/lmk/settings.ts) publishes: config/lmk.schema.json (the
// config file's JSON Schema), config/lmk.toml (an example with every key) and the settings reference in
// docs/low-memory-killer.md (between its lmk-settings markers). Run after changing a setting (needs dist/: npm run
// build:ts); test/cli/lmk-config.ts fails while a copy is stale.
//
//   node scripts/write-lmk-config.mjs [--check]   (--check: exit 1 if a file would change, write nothing)
import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
const { configSchema, exampleToml, referenceMarkdown } = require(join(ROOT, 'dist', 'cli', 'lmk', 'schema.js'));

const BEGIN = '<!-- lmk-settings: written by scripts/write-lmk-config.mjs -->';
const END = '<!-- /lmk-settings -->';

export function expected() {
  const docPath = join(ROOT, 'docs', 'low-memory-killer.md');
  const doc = readFileSync(docPath, 'utf8');
  const a = doc.indexOf(BEGIN);
  const b = doc.indexOf(END);
  if (a < 0 || b < a) throw new Error(`docs/low-memory-killer.md has no ${BEGIN} ... ${END} section`);
  return {
    [join(ROOT, 'config', 'lmk.schema.json')]: `${JSON.stringify(configSchema(), null, 2)}\n`,
    [join(ROOT, 'config', 'lmk.toml')]: exampleToml(),
    [docPath]: `${doc.slice(0, a + BEGIN.length)}\n${referenceMarkdown()}${doc.slice(b)}`,
  };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const check = process.argv.includes('--check');
  let stale = 0;
  for (const [path, text] of Object.entries(expected())) {
    let now = '';
    try {
      now = readFileSync(path, 'utf8');
    } catch {
      /* new */
    }
    if (now === text) continue;
    stale++;
    if (check) console.error(`stale: ${path.slice(ROOT.length + 1)}`);
    else writeFileSync(path, text);
  }
  if (check && stale > 0) {
    console.error('run: npm run build:ts && node scripts/write-lmk-config.mjs');
    process.exit(1);
  }
}
