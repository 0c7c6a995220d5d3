// The JS half of the readiness watcher (src/watcher.cc): one native epoll set per environment, and here the table
// from registration token to handler. Registrations are one-shot: a handler runs at most once, and is gone before
// it runs, so re-arming from inside a handler is allowed.
import { native } from './binding';
import { E, systemError } from './errors';
import { requireLoop, runtimeUnsupported, threadPath } from './runtime';

/**
 * Called with the epoll events and what the kernel said of the exit at wake-up: `waited` as `native.waitid` (with
 * WEXITED | WNOHANG | WNOWAIT) returns it, `status` as `native.exitStatus` returns it.
 */
export type ReadyHandler = (events: number, waited: number, status: number) => void;

// The shared slots' layout, as the addon states it: per fired event `SLOT` int32s (token, events, waited, status);
// at REF_CELL the count of ref'd waits, which the native side applies after each dispatch, so settling a wait
// from a wake-up needs no call into the addon to drop its ref.
const { slot: SLOT, refCell: REF_CELL } = native.watcherLayout;

const handlers = new Map<number, ReadyHandler>();
let slots: Int32Array | undefined;
let nextToken = 1;
let refs = 0;

let dispatching = false;

function onReady(count: number): void {
  const s = slots as Int32Array;
  dispatching = true;
  try {
    dispatch(s, count);
  } finally {
    dispatching = false;
  }
}

function dispatch(s: Int32Array, count: number): void {
  for (let i = 0; i < count * SLOT; i += SLOT) {
    const token = s[i];
    const handler = handlers.get(token);
    if (handler !== undefined) {
      handlers.delete(token);
      handler(s[i + 1], s[i + 2], s[i + 3]);
    }
  }
}

function start(): Int32Array {
  requireLoop('The exit watcher');
  const r = native.watcherStart(onReady, threadPath);
  if (r === -E.ENOTSUP) throw runtimeUnsupported('The exit watcher', 'it has no Node-API threadsafe functions');
  if (typeof r === 'number') throw systemError(r, threadPath ? 'pthread_create' : 'epoll_create1');
  return (slots = r);
}

/**
 * Calls `handler(events, waited, status)` once, when `fd` reports `events` (EPOLLIN: the process exited; 0: only
 * EPOLLHUP, which pidfds report once the process has been reaped). Returns the token that `unwatch` takes.
 */
export function watch(fd: number, events: number, handler: ReadyHandler): number {
  if (slots === undefined) start();
  const token = nextToken;
  nextToken = nextToken === 0x7fffffff ? 1 : nextToken + 1;
  const r = native.watch(fd, events, token);
  if (r < 0) throw systemError(r, 'epoll_ctl');
  handlers.set(token, handler);
  return token;
}

/** Cancels a registration that has not fired yet; harmless if it has. */
export function unwatch(fd: number, token: number): void {
  if (handlers.delete(token)) native.unwatch(fd);
}

/** Keeps the event loop alive while at least one retained wait is pending (like a ref'd Node handle). */
export function retain(): void {
  const s = slots ?? start();
  s[REF_CELL] = ++refs;
  if (refs === 1 && !dispatching) native.watcherRef(true);
}

export function release(): void {
  (slots as Int32Array)[REF_CELL] = --refs;
  if (refs === 0 && !dispatching) native.watcherRef(false);
}

/** Pending registrations in this environment (for leak checks in tests and diagnostics). */
export function pendingWatches(): number {
  return handlers.size;
}
