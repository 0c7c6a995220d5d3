// Reading small kernel files (/proc, cgroupfs) whole, either afresh or through descriptors kept open between reads.
// A sampler that reads the same few files 100 times a second pays for open+fstat+close every time with
// readFileSync (12-16 µs per file here) against 1.5-8 µs for a pread at offset 0 on a kept descriptor: seq_file
// and kernfs files regenerate their text when read again from offset 0.
import { closeSync, openSync, readFileSync, readSync } from 'node:fs';

/** Reads a file whole; `undefined` when it does not exist (ENOENT, ENOTDIR) or no longer does (ENODEV: a removed
 *  cgroup's file). Any other failure (EMFILE, EACCES, ...) is thrown as itself. */
export type ReadFile = (path: string) => string | undefined;

const ABSENT = new Set(['ENOENT', 'ENOTDIR', 'ENODEV']);

function absent(err: unknown): boolean {
  return ABSENT.has((err as NodeJS.ErrnoException).code ?? '');
}

/** The one-shot reader: open, read, close. */
export const readFresh: ReadFile = (path) => {
  try {
    return readFileSync(path, 'latin1');
  } catch (err) {
    if (absent(err)) return undefined;
    throw err;
  }
};

/**
 * A reader that keeps each file open after its first read and reads it again from offset 0. A file found absent
 * stays absent for this object's life (a sampler probes the same missing files each time: v1 vs v2 names, the
 * parent above the top of a hierarchy). A read that fails on a kept descriptor closes it and opens the file once
 * more. `close()` closes every descriptor; the object can be used again afterwards.
 */
export class KeptFiles {
  #fds = new Map<string, number | undefined>();
  #buf = Buffer.allocUnsafe(8192);

  readonly read: ReadFile = (path) => {
    let fd = this.#fds.get(path);
    if (fd === undefined) {
      if (this.#fds.has(path)) return undefined;
      fd = this.#open(path);
      if (fd === undefined) return undefined;
    }
    try {
      return this.#readAll(fd);
    } catch (err) {
      this.#drop(path);
      if (!absent(err)) throw err;
      fd = this.#open(path);
      return fd === undefined ? undefined : this.#readAll(fd);
    }
  };

  /** Closes every kept descriptor and forgets what was absent. */
  close(): void {
    for (const path of [...this.#fds.keys()]) this.#drop(path);
    this.#fds.clear();
  }

  #open(path: string): number | undefined {
    try {
      const fd = openSync(path, 'r');
      this.#fds.set(path, fd);
      return fd;
    } catch (err) {
      if (!absent(err)) throw err;
      this.#fds.set(path, undefined);
      return undefined;
    }
  }

  #drop(path: string): void {
    const fd = this.#fds.get(path);
    this.#fds.delete(path);
    if (fd !== undefined) closeSync(fd);
  }

  // seq_file hands out what it generated up to the buffer's size, so a short read is the end of the file.
  #readAll(fd: number): string {
    let n = readSync(fd, this.#buf, 0, this.#buf.length, 0);
    while (n === this.#buf.length) {
      const bigger = Buffer.allocUnsafe(this.#buf.length * 2);
      this.#buf.copy(bigger);
      this.#buf = bigger;
      n += readSync(fd, this.#buf, n, this.#buf.length - n, n);
    }
    return this.#buf.toString('latin1', 0, n);
  }
}
