#!/usr/bin/env node
'use strict';
// The package's install script. On Linux it is node-gyp-build: nothing to do when a prebuild fits (linux-x64 and
// linux-arm64 with glibc), otherwise a source build with node-gyp (musl, other architectures). Off Linux there is
// nothing to build (binding.gyp has no target there; the package loads and every call throws
// ERR_PIDFD_UNSUPPORTED_PLATFORM), so no compiler is needed to install it.
const { spawnSync } = require('node:child_process');

if (process.platform !== 'linux') process.exit(0);
const r = spawnSync(process.execPath, [require.resolve('node-gyp-build/bin.js')], { stdio: 'inherit' });
process.exit(r.status === null ? 1 : r.status);
