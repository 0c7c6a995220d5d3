#!/usr/bin/env node
// Writes what the settings table of `pidfd lmk` (lib/cli/lmk/settings.ts) publishes: config/lmk.schema.json (the
// config file's JSON Schema), config/lmk.toml (an example with every key), and in docs/low-memory-killer.md the
// settings reference and the hooks' environment (lib/service/hooks.ts HOOK_ENV), each between its markers. Run after changing a setting (needs dist/: npm run
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
const { HOOK_ENV } = require(join(ROOT, 'dist', 'service', 'hooks.js'));

const SECTIONS = {
  'lmk-settings': () => referenceMarkdown(),
  'lmk-hook-env': () =>
    [
      '| variable | hooks | what it holds |',
      '| --- | --- | --- |',
      ...Object.entries(HOOK_ENV).map(([name, { hooks, text }]) => `| \`${name}\` | ${hooks.join(', ')} | ${text} |`),
    ].join('\n') + '\n',
};

/** The doc with each marked section written anew. */
function withSections(doc) {
  for (const [name, make] of Object.entries(SECTIONS)) {
    const begin = `<!-- ${name}: written by scripts/write-lmk-config.mjs -->`;
    const end = `<!-- /${name} -->`;
    const a = doc.indexOf(begin);
    const b = doc.indexOf(end);
    if (a < 0 || b < a) throw new Error(`docs/low-memory-killer.md has no ${begin} ... ${end} section`);
    doc = `${doc.slice(0, a + begin.length)}\n${make()}${doc.slice(b)}`;
  }
  return doc;
}

export function expected() {
  const docPath = join(ROOT, 'docs', 'low-memory-killer.md');
  return {
    [join(ROOT, 'config', 'lmk.schema.json')]: `${JSON.stringify(configSchema(), null, 2)}\n`,
    [join(ROOT, 'config', 'lmk.toml')]: exampleToml(),
    [docPath]: withSections(readFileSync(docPath, 'utf8')),
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
