// Reading a fixture's output line by line, and waiting for a child's end without risking a hung test.
import { ChildProcess } from 'node:child_process';
import { Readable } from 'node:stream';
import { exited } from './procs';

/** Collects a stream's lines; `waitFor` resolves with the first line matching, or rejects when the stream ends
 *  without one (or after a generous guard, so a broken fixture fails the test instead of hanging it). */
export class Lines {
  readonly all: string[] = [];
  #partial = '';
  #ended = false;
  #wake: Array<() => void> = [];

  constructor(stream: Readable) {
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => {
      const parts = (this.#partial + chunk).split('\n');
      this.#partial = parts.pop() as string;
      this.all.push(...parts);
      this.#notify();
    });
    stream.on('end', () => {
      this.#ended = true;
      this.#notify();
    });
  }

  #notify(): void {
    const wake = this.#wake;
    this.#wake = [];
    for (const w of wake) w();
  }

  waitFor(match: (line: string) => boolean, what: string, guardMs = 20_000): Promise<string> {
    return new Promise((resolve, reject) => {
      const guard = setTimeout(
        () => reject(new Error(`no line ${what} within ${guardMs} ms: ${JSON.stringify(this.all)}`)),
        guardMs,
      );
      const check = (): void => {
        const line = this.all.find(match);
        if (line !== undefined) {
          clearTimeout(guard);
          resolve(line);
        } else if (this.#ended) {
          clearTimeout(guard);
          reject(new Error(`stream ended without a line ${what}: ${JSON.stringify(this.all)}`));
        } else {
          this.#wake.push(check);
        }
      };
      check();
    });
  }
}

/** The child's exit as [code, signal]; SIGKILLed after the guard, so a missing exit fails instead of hanging. */
export function ended(child: ChildProcess, guardMs = 30_000): Promise<[number | null, NodeJS.Signals | null]> {
  const guard = setTimeout(() => child.kill('SIGKILL'), guardMs);
  return exited(child).finally(() => clearTimeout(guard));
}
