// Which JavaScript runtime loaded the addon, and so which native wake-up mechanism this environment uses.
//
// Node: libuv polls on the environment's own loop. Anywhere else a helper thread in epoll_wait hands wake-ups over
// through a threadsafe function (src/thread.cc): Bun 1.4 returns a loop from napi_get_uv_event_loop but aborts the
// process on every uv_* call (uncatchable); Deno 2.9's uv_poll_start fires once, ignores UV_PRIORITIZED, runs
// uv_close callbacks synchronously. One mechanism for every non-Node runtime rather than one workaround each.
import { native, platformSupported } from './binding';
import { codedError, CodedError } from './errors';

/** The runtime's name and version, as the error messages name it. */
function describe(): { name: string; node: boolean } {
  const v = process.versions as Record<string, string | undefined>;
  if (v.bun !== undefined) return { name: `Bun ${v.bun}`, node: false };
  if (v.deno !== undefined) return { name: `Deno ${v.deno}`, node: false };
  // The runtime's own answer through N-API ("node" from Node; Deno says "Deno" there too).
  const release = platformSupported ? (native as { release?: string }).release : 'node';
  if (release !== undefined && release !== 'node') {
    return { name: `${release} (Node-API ${process.version})`, node: false };
  }
  return { name: `Node.js ${process.version}`, node: true };
}

const self = describe();

/** `Node.js v22.1.0`, `Bun 1.4.5`, `Deno 2.9.6`, ... */
export const runtimeName: string = self.name;

/** Whether libuv's polls can be used here (Node only). */
export const hasLibuv: boolean = self.node;

/**
 * Whether this environment polls on the helper thread: everywhere but Node, and on Node too with
 * `PIDFD_WATCHER=thread` (so the test suite can run that path under Node). `PIDFD_WATCHER=uv` asks for libuv.
 */
export const threadPath: boolean =
  process.env.PIDFD_WATCHER === 'thread' || (!self.node && process.env.PIDFD_WATCHER !== 'uv');

/** ERR_PIDFD_UNSUPPORTED for a native mechanism this runtime cannot serve, naming the runtime. */
export function runtimeUnsupported(what: string, why: string): CodedError {
  return codedError('ERR_PIDFD_UNSUPPORTED', `${what} is not available in ${runtimeName}: ${why}`);
}

/** Throws before any libuv call where libuv is not really there (it would abort the process, not fail). */
export function requireLoop(what: string): void {
  if (!threadPath && !hasLibuv) {
    throw runtimeUnsupported(what, 'it needs libuv polls (PIDFD_WATCHER=uv), which this runtime does not provide');
  }
}
