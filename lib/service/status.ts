// The status socket: a unix socket that answers each connection with one JSON document (what the caller's
// provider returns at that moment) and closes it; and queryStatus, the client that reads it back.
import { chmodSync, lstatSync, unlinkSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { codedError, E, systemError } from '../errors';
import { invalidType, invalidValue, validateInteger, validateObject } from '../validate';

/**
 * Options of `serveStatus`.
 *
 * @example
 * const server = await serveStatus('/run/pidfd-lmk/status.sock', () => status(), { mode: 0o660 });
 */
export interface StatusServerOptions {
  /** The socket file's mode: 0o600 (default: its owner only) or 0o660 (its group too). */
  mode?: 0o600 | 0o660;
}

/** A client that never reads its answer does not hold a connection for longer than this. */
const CLIENT_MS = 5000;

const connectable = (path: string): Promise<boolean> =>
  new Promise((resolve, reject) => {
    const s = connect(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', (err: NodeJS.ErrnoException) => (err.code === 'ECONNREFUSED' ? resolve(false) : reject(err)));
  });

/** Removes a socket file nobody listens on (a server that died without closing); anything else stays. */
async function clearStale(path: string): Promise<void> {
  let st;
  try {
    st = lstatSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  if (!st.isSocket()) throw systemError(-E.EEXIST, 'bind', `${path} exists and is not a socket: it is left alone`);
  if (await connectable(path)) throw systemError(-E.EADDRINUSE, 'bind', `a status server already answers on ${path}`);
  unlinkSync(path);
}

function answer(sock: Socket, provide: () => unknown): void {
  sock.on('error', () => {}); // a client that went away: nothing to tell it
  sock.setTimeout(CLIENT_MS, () => sock.destroy());
  sock.resume(); // what a client sends is not read
  Promise.resolve()
    .then(provide)
    .then((doc) => {
      const text = JSON.stringify(doc);
      if (typeof text !== 'string' || doc === null || typeof doc !== 'object')
        throw new TypeError('the status provider must return an object');
      return text;
    })
    .catch((err: unknown) => {
      const e = err as { message?: unknown; code?: unknown };
      const message = typeof e?.message === 'string' ? e.message : String(err);
      return JSON.stringify({ error: { message, code: typeof e?.code === 'string' ? e.code : null } });
    })
    .then((text) => sock.end(`${text}\n`))
    .catch(() => sock.destroy());
}

/**
 * Serves a status document on the unix socket `path`: each connection gets one JSON document (the object
 * `provide` returns or resolves to, as it is then) followed by a newline, and is closed. If `provide` throws, the
 * document is `{"error":{"message","code"}}` (queryStatus rejects with it). The socket file is made with `mode`
 * (0o600 by default); a stale one (nobody listening) is replaced, while a live one (EADDRINUSE) or a file that is
 * not a socket (EEXIST) is an error. Resolves to the listening server; `server.close()` removes the socket file.
 *
 * @example
 * const server = await serveStatus('/run/pidfd-lmk/status.sock', async () => ({
 *   episodes: lmk.episodes,
 *   candidates: (await lmk.candidates()).map((c) => ({ pid: c.pid, comm: c.comm })),
 * }));
 * process.once('SIGTERM', () => server.close());
 */
export async function serveStatus(
  path: string,
  provide: () => Promise<object> | object,
  options: StatusServerOptions = {},
): Promise<Server> {
  if (typeof path !== 'string' || path === '') throw invalidType('path', 'a non-empty string', path);
  if (typeof provide !== 'function') throw invalidType('provide', 'a function', provide);
  validateObject(options, 'options');
  const mode = options.mode ?? 0o600;
  if (mode !== 0o600 && mode !== 0o660) throw invalidValue('options.mode', mode, 'must be 0o600 or 0o660');
  await clearStale(path);
  const server = createServer((sock) => answer(sock, provide));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    // The socket is made by bind(2) inside listen(), with the process umask: set for that call, it gives the
    // file its mode from the start, so no client can connect in a moment when it is wider. (Workers cannot set
    // the umask: there the chmod below alone sets it, and the directory's mode is what guards the gap.)
    let old: number | undefined;
    try {
      old = process.umask(~mode & 0o777);
    } catch {
      /* a worker thread */
    }
    try {
      server.listen(path, () => {
        server.off('error', reject);
        resolve();
      });
    } finally {
      if (old !== undefined) process.umask(old);
    }
  });
  chmodSync(path, mode);
  const ino = lstatSync(path).ino;
  server.once('close', () => {
    try {
      if (lstatSync(path).ino === ino) unlinkSync(path); // only our own: a newer server may have replaced it
    } catch {
      /* already gone */
    }
  });
  return server;
}

const HINTS: Record<string, (path: string) => string> = {
  ENOENT: (p) => `no status socket at ${p}: is the killer running with status-socket set to it?`,
  ECONNREFUSED: (p) => `nothing listens on ${p}: the killer that made it has stopped`,
  EACCES: (p) => `not allowed to connect to ${p}: run as its owner (or its group, with mode 0660)`,
};

function connectError(err: NodeJS.ErrnoException, path: string): Error {
  const code = err.code ?? '';
  const errno = (E as Record<string, number | undefined>)[code];
  if (errno === undefined) return err;
  const e = systemError(-errno, 'connect', (HINTS[code] ?? ((p: string) => p))(path)) as Error & {
    address?: string;
    cause?: unknown;
  };
  e.address = path;
  e.cause = err;
  return e;
}

/**
 * Reads the status document from the socket `path` (see `serveStatus`). Rejects with a Node system error:
 * ENOENT (no such socket), ECONNREFUSED (nobody listens), EACCES, ETIMEDOUT after `timeoutMs` (default 5000);
 * with ERR_PIDFD_STATUS when the server's provider failed or the answer is not a JSON object.
 *
 * @example
 * const status = await queryStatus('/run/pidfd-lmk/status.sock', 2000);
 * console.log(JSON.stringify(status, null, 2));
 */
export function queryStatus(path: string, timeoutMs = 5000): Promise<Record<string, unknown>> {
  if (typeof path !== 'string' || path === '') throw invalidType('path', 'a non-empty string', path);
  validateInteger(timeoutMs, 'timeoutMs', 1, 2 ** 31 - 1);
  return new Promise((resolve, reject) => {
    const sock = connect(path);
    let text = '';
    const fail = (err: Error): void => {
      clearTimeout(timer);
      sock.destroy();
      reject(err);
    };
    const timer = setTimeout(
      () => fail(systemError(-E.ETIMEDOUT, 'read', `no status from ${path} within ${timeoutMs} ms`)),
      timeoutMs,
    );
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => (text += d));
    sock.on('error', (err: NodeJS.ErrnoException) => fail(connectError(err, path)));
    sock.on('end', () => {
      clearTimeout(timer);
      let doc: unknown;
      try {
        doc = JSON.parse(text);
      } catch {
        reject(codedError('ERR_PIDFD_STATUS', `${path} answered something that is not JSON: ${text.slice(0, 80)}`));
        return;
      }
      if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) {
        reject(codedError('ERR_PIDFD_STATUS', `${path} answered ${text.slice(0, 80)}, not a JSON object`));
        return;
      }
      const error = (doc as { error?: { message?: unknown; code?: unknown } }).error;
      if (Object.keys(doc).length === 1 && error !== null && typeof error === 'object') {
        const why = typeof error.code === 'string' ? ` (${error.code})` : '';
        reject(codedError('ERR_PIDFD_STATUS', `the status server at ${path} failed: ${String(error.message)}${why}`));
        return;
      }
      resolve(doc as Record<string, unknown>);
    });
  });
}
