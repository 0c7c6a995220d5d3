#!/usr/bin/env node
// Every public export has a doc comment with an `@example`: values (functions, classes, constants) and types
// (interfaces, type aliases) alike, the example of a type showing where a user meets it (the call that takes or
// returns it). The API reference (`npm run docs`, TypeDoc) is generated from them. "Public" is whatever the entry
// module exports (lib/index.ts by default), so a new export is checked as soon as it is exported. Public members of
// exported classes (methods, accessors) need a doc comment too; members marked @internal, private or #private are
// skipped.
//
//   node scripts/check-doc-examples.mjs [entry.ts]
import { createRequire } from 'node:module';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
const ts = require('typescript');

const { positionals } = parseArgs({ allowPositionals: true });
const entry = positionals[0] ?? join(ROOT, 'lib', 'index.ts');

const program = ts.createProgram([entry], {
  target: ts.ScriptTarget.ES2022,
  module: ts.ModuleKind.CommonJS,
  moduleResolution: ts.ModuleResolutionKind.Node10,
  lib: ['lib.es2022.d.ts', 'lib.esnext.disposable.d.ts'],
  types: ['node'],
  strict: true,
  noEmit: true,
  skipLibCheck: true,
});
const checker = program.getTypeChecker();
const source = program.getSourceFile(entry);
if (!source) {
  console.error(`check-doc-examples: cannot read ${entry}`);
  process.exit(1);
}
const moduleSymbol = checker.getSymbolAtLocation(source);
const exports = moduleSymbol ? checker.getExportsOfModule(moduleSymbol) : [];

const VALUE = ts.SymbolFlags.Function | ts.SymbolFlags.Class | ts.SymbolFlags.Variable | ts.SymbolFlags.Enum;

function resolve(symbol) {
  return symbol.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(symbol) : symbol;
}

function where(symbol) {
  const decl = symbol.declarations?.[0];
  if (!decl) return '?';
  const file = decl.getSourceFile();
  const { line } = file.getLineAndCharacterOfPosition(decl.getStart());
  return `${relative(process.cwd(), file.fileName)}:${line + 1}`;
}

const hasDoc = (symbol) => ts.displayPartsToString(symbol.getDocumentationComment(checker)).trim().length > 0;
const tags = (symbol) => symbol.getJsDocTags(checker).map((t) => t.name);

function isPublicMember(member) {
  const decl = member.valueDeclaration ?? member.declarations?.[0];
  if (!decl) return false;
  if (member.name.startsWith('#') || member.name.startsWith('__')) return false;
  if (ts.getCombinedModifierFlags(decl) & (ts.ModifierFlags.Private | ts.ModifierFlags.Protected)) return false;
  if (tags(member).includes('internal')) return false;
  return !!(member.flags & (ts.SymbolFlags.Method | ts.SymbolFlags.Accessor | ts.SymbolFlags.Property));
}

const problems = [];
let values_ = 0;
let types = 0;
for (const exported of exports) {
  const symbol = resolve(exported);
  const name = exported.name;
  const isValue = (symbol.flags & VALUE) !== 0;
  if (isValue) values_++;
  else types++;
  if (!hasDoc(symbol)) {
    problems.push(`${name} (${where(symbol)}): no doc comment`);
    continue;
  }
  if (!tags(symbol).includes('example')) {
    problems.push(`${name} (${where(symbol)}): no @example`);
  }
  if (symbol.flags & ts.SymbolFlags.Class) {
    const members = [...(symbol.members?.values() ?? []), ...(symbol.exports?.values() ?? [])];
    for (const member of members) {
      if (member.flags & ts.SymbolFlags.Constructor || member.name === 'prototype') continue;
      if (!isPublicMember(member)) continue;
      // Well-known symbols such as [Symbol.dispose] are named __@dispose@123 and skipped above; they are
      // documented where written but TypeScript reports them by their internal name.
      if (!hasDoc(member)) problems.push(`${name}.${member.name} (${where(member)}): no doc comment`);
    }
  }
}

console.log(
  `check-doc-examples: ${relative(process.cwd(), entry)} exports ${values_} values and ${types} types; ` +
    'checked that each has a doc comment with an @example',
);
for (const p of problems) console.log(`  ${p}`);
if (problems.length) {
  console.log(`check-doc-examples: ${problems.length} problem(s)`);
  process.exitCode = 1;
}
