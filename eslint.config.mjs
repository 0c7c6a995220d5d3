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
    // An async function that does not await is deliberate here: a throw inside it becomes a rejection, which is
    // what callers of a promise-returning API (and tap's callbacks) expect.
    files: ['lib/**/*.ts', 'test/**/*.ts'],
    rules: {
      '@typescript-eslint/require-await': 'off',
      // Abort reasons and a watcher's stored failure are whatever value the caller gave: passed on as they are.
      '@typescript-eslint/prefer-promise-reject-errors': ['error', { allowThrowingUnknown: true }],
    },
  },
  {
    // tap tracks the promise of every t.test() itself (a subtest that rejects fails the file): not floating.
    // Tests read JSON that child processes print and assert on its fields: the assertions are the type check, so
    // the rules against `any` flow are off here (they stay on in lib/).
    files: ['test/**/*.ts'],
    rules: {
      '@typescript-eslint/no-explicit-any': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
      '@typescript-eslint/no-floating-promises': [
        'error',
        { allowForKnownSafePromises: [{ from: 'package', name: 'PromiseWithSubtest', package: '@tapjs/core' }] },
      ],
    },
  },
  {
    // Consumers that test/10-package.ts compiles against the packed tarball's types: 'pidfd' resolves only there.
    // pkg-ts.cts tests the `import x = require()` form on purpose; `void a, b` marks values used only for types.
    files: ['test/fixtures/*.{mts,cts}'],
    extends: [js.configs.recommended, tseslint.configs.recommended],
    rules: { '@typescript-eslint/no-require-imports': 'off', '@typescript-eslint/no-unused-expressions': 'off' },
  },
);
