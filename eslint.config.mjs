// ESLint: typescript-eslint's type-checked recommended rules for the TypeScript of lib/ and test/ (through
// tsconfig.eslint.json), ESLint's recommended rules for every JavaScript file. Formatting is Prettier's job
// (.prettierrc.json); none of these rules is about layout.
import js from '@eslint/js';
import { defineConfig } from 'eslint/config';
import globals from 'globals';
import tseslint from 'typescript-eslint';

export default defineConfig(
  {
    // Build output, prebuilt binaries, generated API docs, tap's cache.
    ignores: ['**/node_modules/', 'dist/', 'types/', 'build/', 'prebuilds/', 'coverage/', 'docs/api/', '.tap/'],
  },
  { linterOptions: { reportUnusedDisableDirectives: 'error' } },
  {
    files: ['**/*.{js,cjs,mjs}'],
    extends: [js.configs.recommended],
    languageOptions: { globals: globals.node },
  },
  { files: ['**/*.{js,cjs}'], languageOptions: { sourceType: 'commonjs' } },
  {
    files: ['lib/**/*.ts', 'test/**/*.ts'],
    extends: [js.configs.recommended, tseslint.configs.recommendedTypeChecked],
    languageOptions: {
      parserOptions: { project: './tsconfig.eslint.json', tsconfigRootDir: import.meta.dirname },
    },
  },
  {
    // tap tracks the promise of every t.test() itself (a subtest that rejects fails the file): not floating.
    files: ['test/**/*.ts'],
    rules: {
      '@typescript-eslint/no-floating-promises': [
        'error',
        { allowForKnownSafePromises: [{ from: 'package', name: 'PromiseWithSubtest', package: '@tapjs/core' }] },
      ],
    },
  },
  {
    // Consumers that test/10-package.ts compiles against the packed tarball's types: 'pidfd' resolves only there.
    files: ['test/fixtures/*.{mts,cts}'],
    extends: [js.configs.recommended, tseslint.configs.recommended],
  },
);
