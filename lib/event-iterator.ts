// The async iteration of ExitWatcher and PressureWatcher, with the rule Node's events.on() follows: an iterator
// buffers what is emitted after it was made; leaving the loop (return()) ends that iterator and drops its buffer
// but leaves the watcher running, as events.on removes only its own listener. Closing the watcher ends them all.

interface Iter<T> {
  queue: T[];
  wake: { resolve(r: IteratorResult<T>): void; reject(e: unknown): void } | undefined;
}

const DONE: IteratorResult<never> = Object.freeze({ value: undefined, done: true });

/** The iterators of one watcher. */
export class EventIterators<T> {
  #iters = new Set<Iter<T>>();
  #ended = false;
  #failed = false;
  #failure: unknown;

  /** Hands `value` to every live iterator. */
  push(value: T): void {
    for (const it of this.#iters) {
      const wake = it.wake;
      if (wake === undefined) it.queue.push(value);
      else {
        it.wake = undefined;
        wake.resolve({ value, done: false });
      }
    }
  }

  /** The watcher has failed: pending and later next() calls reject with `err` (once each buffer is read).
   *  Returns how many pending next() calls it rejected. */
  fail(err: unknown): number {
    this.#failed = true;
    this.#failure = err;
    let rejected = 0;
    for (const it of this.#iters) {
      const wake = it.wake;
      it.wake = undefined;
      if (wake !== undefined) {
        wake.reject(err);
        rejected++;
      }
    }
    return rejected;
  }

  /** The watcher is closed: every iterator ends once its buffer is read; new ones are done at once. */
  end(): void {
    this.#ended = true;
    for (const it of this.#iters) {
      const wake = it.wake;
      it.wake = undefined;
      wake?.resolve(DONE);
    }
    this.#iters.clear();
  }

  /** A new iterator. */
  iterator(): AsyncIterableIterator<T> {
    const it: Iter<T> = { queue: [], wake: undefined };
    const iters = this.#iters;
    if (!this.#ended) iters.add(it);
    const failed = (): boolean => this.#failed;
    const failure = (): unknown => this.#failure;
    return {
      next(): Promise<IteratorResult<T>> {
        if (it.queue.length > 0) return Promise.resolve({ value: it.queue.shift() as T, done: false });
        if (failed()) return Promise.reject(failure());
        if (!iters.has(it)) return Promise.resolve(DONE);
        return new Promise((resolve, reject) => {
          it.wake = { resolve, reject };
        });
      },
      return(): Promise<IteratorResult<T>> {
        iters.delete(it);
        it.queue.length = 0;
        const wake = it.wake;
        it.wake = undefined;
        wake?.resolve(DONE);
        return Promise.resolve(DONE);
      },
      [Symbol.asyncIterator]() {
        return this;
      },
    };
  }
}
