import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { codedError } from './errors';

/** Raw fields of struct pidfd_info; only those whose bit is set in `mask` are meaningful. */
export interface RawPidfdInfo {
  mask: number;
  cgroupid: bigint;
  pid: number;
  tgid: number;
  ppid: number;
  ruid: number;
  rgid: number;
  euid: number;
  egid: number;
  suid: number;
  sgid: number;
  fsuid: number;
  fsgid: number;
  exitCode: number;
  coredumpMask: number;
}

/** Numeric constants read from the kernel and libc headers at build time. */
export interface NativeConstants {
  readonly [name: string]: number;
}

/**
 * The native module (src/). Every call returns its result or a negative errno; nothing here throws for a kernel
 * failure. Arguments must already be validated: the native side only guards against wrong JS types.
 */
export interface Native {
  constants: NativeConstants;
  open(pid: number, flags: number): number;
  sendSignal(fd: number, signo: number, flags: number, value?: number): number;
  getfd(fd: number, targetFd: number): number;
  /** si_code << 8 | si_status, 0 when nothing to report (WNOHANG), or -errno. */
  waitid(fd: number, options: number): number;
  info(fd: number, mask: number): RawPidfdInfo | number;
  /** The wait(2)-style status from PIDFD_INFO_EXIT, -ENODATA when the kernel has none yet, or -errno. */
  exitStatus(fd: number): number;
  /** ranges: [address0, length0, address1, length1, ...] */
  madvise(fd: number, ranges: BigUint64Array, advice: number): number;
  mrelease(fd: number): number;
  poll(fd: number): number;
  close(fd: number): number;
  openReaped(): number;
  /** Which runtime this is, as napi_get_node_version reports it ("node", "Deno", ...). */
  release?: string;
  /** The watcher's shared Int32Array: `maxEvents` slots of `slot` int32s (token, events, waited, status), then at
   *  `refCell` JS's count of ref'd waits. */
  watcherLayout: { maxEvents: number; slot: number; refCell: number };
  /** thread: poll on the helper thread (src/thread.cc) instead of a libuv poll. → the slots | -errno */
  watcherStart(onReady: (count: number) => void, thread: boolean): Int32Array | number;
  watch(fd: number, events: number, token: number): number;
  unwatch(fd: number): number;
  watcherRef(ref: boolean): void;
  /** One poll on `fd` (uv events: UV_READABLE, UV_PRIORITIZED ...), by libuv or on the helper thread → id > 0 |
   *  -errno. The poll works on its own duplicate of `fd` (closed in pollStop); `fd` stays the caller's to close.
   *  `onEvent(status, events)`: status < 0 on
   *  an error (the poll has stopped). */
  pollStart(fd: number, events: number, onEvent: (status: number, events: number) => void, thread: boolean): number;
  pollStop(id: number): number;
  pollRef(id: number, ref: boolean): number;
  /** A threshold sampler on the helper thread (src/sampler.cc): opens `path`, reads it once (-ENODATA: no number
   *  after `key`), then samples it at once and every clamp(|value - bound| / rate, minMs, maxMs) ms, and calls
   *  `onEvent(0, value)` once when value > bound (`above`) or < bound, or `onEvent(-errno, 0)` on a read error;
   *  either disarms it. Units are the file's. → id > 0 | -errno (-ENOTSUP: no threadsafe functions here). */
  samplerStart?(
    path: string,
    key: string,
    above: boolean,
    bound: number,
    minMs: number,
    maxMs: number,
    rate: number,
    onEvent: (status: number, value: number) => void,
  ): number;
  /** Re-arms with these parameters and samples at once → 0 | -EBADF. */
  samplerUpdate?(id: number, bound: number, minMs: number, maxMs: number, rate: number): number;
  samplerStop?(id: number): number;
  samplerRef?(id: number, ref: boolean): number;
  /** mlock2 on each [address, length] pair → ranges locked | -errno of the first failure. */
  mlock(ranges: BigUint64Array, flags: number): number;
}

function unsupportedPlatform(): never {
  throw codedError(
    'ERR_PIDFD_UNSUPPORTED_PLATFORM',
    `pidfd needs Linux; this is ${process.platform}. The package loads here, but every call fails.`,
  );
}

/** The C library node-gyp-build matches prebuilds against: `LIBC` if set, else musl on Alpine or without glibc. */
function libc(): string {
  if (process.env.LIBC) return process.env.LIBC;
  if (existsSync('/etc/alpine-release')) return 'musl';
  const report = process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined;
  return report?.header?.glibcVersionRuntime ? 'glibc' : 'musl';
}

/** Prebuilt binaries ship for these; everything else is compiled at install time. */
const PREBUILT = new Set(['x64', 'arm64']);

/**
 * The error when no native binary loads: what was looked for, why none fits, and the exact commands that fix it
 * (a source build needs a C++ toolchain, make and python3; on musl also the kernel headers).
 */
export function nativeLoadError(cause: Error, dir: string, arch: string = process.arch, lib = libc()): Error {
  const target = `linux-${arch} (${lib})`;
  const toolchain =
    lib === 'musl'
      ? 'apk add --no-cache g++ make python3 linux-headers'
      : 'apt-get install g++ make python3 (Debian/Ubuntu) or dnf install gcc-c++ make python3 (Fedora/RHEL)';
  const inDocker = '(in a Dockerfile: install them before `npm install`)';
  const rebuild = `${toolchain}, then \`npm rebuild pidfd\` ${inDocker}`;
  let what: string;
  if (!/No native build was found/.test(cause.message)) {
    what =
      `the native binary for ${target} was found but could not be loaded. Prebuilt binaries need glibc 2.17 or ` +
      `later and the libstdc++ of GCC 4.8 or later. Build it from source: ${toolchain}, then ` +
      `\`npm rebuild pidfd --build-from-source\` ${inDocker}.`;
  } else if (lib === 'musl') {
    what =
      `no native binary for ${target}. The prebuilt binaries are for glibc (linux-x64, linux-arm64); on musl ` +
      `(Alpine) the addon is compiled when the package is installed, and that build did not happen or failed. ` +
      `Install a C++ toolchain and rebuild: ${rebuild}.`;
  } else if (!PREBUILT.has(arch)) {
    what =
      `no native binary for ${target}. Prebuilt binaries ship for linux-x64 and linux-arm64; on ${arch} the ` +
      `addon is compiled when the package is installed, and that build did not happen or failed. Install a C++ ` +
      `toolchain and rebuild: ${rebuild}.`;
  } else {
    what =
      `no native binary for ${target}: neither prebuilds/linux-${arch}/ nor build/Release/ in ${dir} has one. ` +
      `In a git checkout run \`npm install\` (it compiles the addon); for an installed package reinstall it, or ` +
      `build it: ${rebuild}.`;
  }
  const err = codedError('ERR_PIDFD_NATIVE_LOAD', `pidfd: ${what} Cause: ${cause.message.trim()}`);
  (err as Error & { cause?: unknown }).cause = cause;
  return err;
}

function load(): { native: Native; supported: boolean } {
  if (process.platform !== 'linux') {
    const layout = { maxEvents: 0, slot: 0, refCell: 0 };
    const stub: Record<string, unknown> = { constants: Object.freeze({}), watcherLayout: layout };
    for (const name of [
      'open',
      'sendSignal',
      'getfd',
      'waitid',
      'info',
      'exitStatus',
      'madvise',
      'mrelease',
      'poll',
      'close',
      'openReaped',
      'watcherStart',
      'watch',
      'unwatch',
      'watcherRef',
      'pollStart',
      'pollStop',
      'pollRef',
      'mlock',
      'samplerStart',
      'samplerUpdate',
      'samplerStop',
      'samplerRef',
    ]) {
      stub[name] = unsupportedPlatform;
    }
    return { native: stub as unknown as Native, supported: false };
  }
  // lib/ (tests, through tap's TypeScript loader) and dist/ (the published build) both sit one level below the
  // package root, where node-gyp-build looks for build/Release and prebuilds/.
  const dir = join(__dirname, '..');
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const nodeGypBuild = require('node-gyp-build') as (dir: string) => Native;
  try {
    return { native: nodeGypBuild(dir), supported: true };
  } catch (cause) {
    throw nativeLoadError(cause as Error, dir);
  }
}

const loaded = load();
export const native: Native = loaded.native;
/** False off Linux, where every call throws ERR_PIDFD_UNSUPPORTED_PLATFORM. */
export const platformSupported: boolean = loaded.supported;
export const C: NativeConstants = native.constants;
