// The killer's fast path between samples: a native threshold sampler (lib/sampler.ts) watches the one counter that
// moves the budget's headroom (MemAvailable, or the usage of the cgroup level that bounds it) and wakes the killer
// when it crosses the value at which the headroom would reach the threshold. The killer then measures everything
// itself and re-arms it. Between crossings no JavaScript runs, so sampling every 10 ms near the threshold costs
// what a C loop costs; where the runtime cannot run the sampler's thread the killer samples with timers instead.
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { ThresholdSampler } from '../sampler';
import type { MemoryHeadroom } from './budget';
import { ASSUMED_RATE } from './rules';

/** The sampler of one budget, re-armed after each of the killer's own measurements. */
export class HeadroomWatch {
  #sampler: ThresholdSampler | undefined;
  #file = '';
  #limit: { min: number; max: number };
  #onCross: () => void;
  #ref: boolean;
  /** Why there is no sampler (the killer samples with timers), once `arm` tried. */
  unsupported: string | undefined;
  /** Why the sampler is paused (the killer samples with timers until the next `arm`). */
  paused: string | undefined;

  constructor(limit: { min: number; max: number }, ref: boolean, onCross: () => void) {
    this.#limit = limit;
    this.#ref = ref;
    this.#onCross = onCross;
  }

  /** Whether a sampler is watching (so the killer's own timer may run at its longest period). */
  get active(): boolean {
    return this.#sampler !== undefined && !this.#sampler.closed;
  }

  /** Arms the sampler for the headroom just measured and the threshold in bytes. */
  arm(m: MemoryHeadroom, threshold: number): void {
    if (this.unsupported !== undefined) return;
    this.paused = undefined;
    // The counter that moves this headroom, and the value of it at which the headroom reaches the threshold: the
    // other terms (the limit, inactive file pages) are taken as they are now; the killer's own measurement on
    // the wake-up is exact, and its timer still samples everything at the longest period.
    let path: string;
    let op: 'below' | 'above';
    let bound: number;
    let scale = 1;
    let key = '';
    if (m.limitedBy === 'MemAvailable') {
      path = '/proc/meminfo';
      key = 'MemAvailable:';
      scale = 1024;
      op = 'below';
      bound = threshold;
    } else {
      const dir = dirname(m.limitedBy);
      path = join(dir, m.source === 'cgroup-v1' ? 'memory.usage_in_bytes' : 'memory.current');
      op = 'above';
      let usage: number;
      try {
        usage = Number(readFileSync(path, 'latin1'));
      } catch {
        return; // the group is going away: the killer's next measurement says so
      }
      bound = usage + (m.available - threshold);
    }
    const arming = { bound, minMs: this.#limit.min, maxMs: this.#limit.max, rate: ASSUMED_RATE };
    try {
      if (this.#sampler !== undefined && this.#file === `${path} ${key}` && !this.#sampler.closed) {
        this.#sampler.update(arming);
        return;
      }
      this.#sampler?.close();
      this.#file = `${path} ${key}`;
      const s = new ThresholdSampler({ path, key, scale, op, ref: this.#ref, ...arming });
      s.on('cross', () => this.#onCross());
      // A read error (the group removed) disarms it; the killer's timer goes on and reports what it finds.
      s.on('error', () => s.close());
      this.#sampler = s.start();
    } catch (err) {
      this.#sampler = undefined;
      const code = (err as NodeJS.ErrnoException).code;
      // A runtime without the thread: timers from now on. Anything else (EMFILE...): try again at the next arming.
      if (code === 'ERR_PIDFD_UNSUPPORTED') this.unsupported = (err as Error).message;
    }
  }

  /** Stops sampling until the next `arm`, saying why. */
  pause(reason: string): void {
    this.close();
    this.paused = reason;
  }

  close(): void {
    this.#sampler?.close();
    this.#sampler = undefined;
  }
}
