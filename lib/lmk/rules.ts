// When the killer acts: one rule per signal that is set (available memory, free swap, PSI events), combined with
// `when` ('all' or 'any'), plus the critical PSI level that acts alone; and how long to wait before the next
// sample. Pure arithmetic over measurements, so that each decision can be explained in its `reason`.
import type { MemoryHeadroom } from './budget';
import { LowMemoryKillerOptions, toBytes } from './options';

const MiB = 2 ** 20;
const fmt = (b: number): string => `${(b / MiB).toFixed(1)} MiB`;

/**
 * The fastest a budget is assumed to shrink when nothing faster has been seen: one thread touching fresh anonymous
 * pages on current hardware (earlyoom assumes 6000 MiB/s too). The next sample comes no later than the time the
 * headroom needs to reach the threshold at that rate, so a hog is seen within one short sample of the crossing.
 */
export const ASSUMED_RATE = (6000 * MiB) / 1000; // bytes per ms
/** Bounds of the adaptive sampling period (ms). */
export const DEFAULT_INTERVAL = { min: 10, max: 1000 };
/** With a critical PSI level the period stays short enough to see a one-second stall within about a second. */
const CRITICAL_MAX = 500;

/**
 * A rule that can start an episode: `memory` (minAvailable), `swap` (minSwapFree), `psi` (a PSI event) or
 * `critical` (the critical PSI level, which acts alone).
 *
 * @example
 * lmk.on('kill', (e) => { if (e.triggered.includes('critical')) console.warn('memory stalled: killed', e.pid); });
 */
export type PressureRule = 'memory' | 'swap' | 'psi' | 'critical';

/** One rule's verdict: `low` (act), `ok` (recovered, past the hysteresis) and how it reads in a reason. */
interface Verdict {
  rule: PressureRule;
  low: boolean;
  ok: boolean;
  text: string;
  /** Bytes left before this rule says low (memory and swap rules). */
  distance?: number;
}

/** What the rules say about one measurement. */
export interface RuleState {
  /** The rules that are set say act now (before the pressure state's hysteresis). */
  enter: boolean;
  /** The rules that are set say the pressure is over (past the hysteresis). */
  ok: boolean;
  /** The critical PSI level was reached: act whatever the other rules say. */
  critical: boolean;
  threshold: number | undefined;
  reason: string;
  /** The rules that say act, `critical` first: with `enter`, each rule that says low; with `critical`, that. */
  triggered: PressureRule[];
  /** Bytes left before the memory rules say low (the one that decides, per `when`); undefined: no memory rule. */
  distance: number | undefined;
}

/** Inputs the rules read besides the headroom. */
export interface RuleInputs {
  /** A PSI event is recent (within its window). */
  psiLow: boolean;
  /** Its description, for the reason. */
  psiText: string | undefined;
  /** Full stall on memory in the last second, in ms (undefined: no critical level set). */
  fullStallMs: number | undefined;
}

/** Evaluates the rules that are set over one measurement. */
export function evaluateRules(o: Readonly<LowMemoryKillerOptions>, m: MemoryHeadroom, x: RuleInputs): RuleState {
  const h = 1 + (o.hysteresis ?? 0.1);
  const rules: Verdict[] = [];
  const threshold = o.minAvailable === undefined ? undefined : toBytes(o.minAvailable, m.total);
  if (threshold !== undefined) {
    const low = m.available < threshold;
    rules.push({
      rule: 'memory',
      low,
      ok: m.available >= threshold * h,
      text: `available ${fmt(m.available)} ${low ? '<' : '>='} ${fmt(threshold)}`,
      distance: m.available - threshold,
    });
  }
  // Without swap the swap rule has nothing to watch: it is left out, not counted as "low" or "ok".
  if (o.minSwapFree !== undefined && m.swapTotal > 0) {
    const t = toBytes(o.minSwapFree, m.swapTotal);
    const low = m.swapFree < t;
    rules.push({
      rule: 'swap',
      low,
      ok: m.swapFree >= t * h,
      text: `swap free ${fmt(m.swapFree)} ${low ? '<' : '>='} ${fmt(t)}`,
      distance: m.swapFree - t,
    });
  }
  if (o.psi !== undefined) {
    rules.push({ rule: 'psi', low: x.psiLow, ok: !x.psiLow, text: x.psiLow && x.psiText ? x.psiText : 'no PSI event' });
  }
  const all = (o.when ?? 'all') === 'all';
  const enter = rules.length > 0 && (all ? rules.every((r) => r.low) : rules.some((r) => r.low));
  const ok = rules.length === 0 || (all ? rules.some((r) => r.ok) : rules.every((r) => r.ok));
  const critical = o.critical !== undefined && x.fullStallMs !== undefined && x.fullStallMs >= o.critical.stall;
  const texts = rules.map((r) => r.text);
  if (o.critical !== undefined && x.fullStallMs !== undefined) {
    const what = `${o.critical.resource ?? 'memory'} ${o.critical.kind ?? 'full'}`;
    texts.push(`${what} stall ${x.fullStallMs.toFixed(0)} ms in 1 s${critical ? ' (critical)' : ''}`);
  }
  // The memory rules' distance that decides: with 'all' the last rule to cross (the largest), with 'any' the first.
  const ds = rules.map((r) => r.distance).filter((d): d is number => d !== undefined);
  const distance = ds.length === 0 ? undefined : all ? Math.max(...ds) : Math.min(...ds);
  const triggered: PressureRule[] = critical ? ['critical'] : [];
  if (enter) triggered.push(...rules.filter((r) => r.low).map((r) => r.rule));
  return { enter, ok, critical, threshold, reason: texts.join(', '), triggered, distance };
}

/** The adaptive period's bounds in ms (a fixed `interval` is both). */
export function intervalBounds(o: Readonly<LowMemoryKillerOptions>): { min: number; max: number } {
  const iv = o.interval;
  if (typeof iv === 'number') return { min: iv, max: iv };
  const min = iv?.min ?? DEFAULT_INTERVAL.min;
  let max = iv?.max ?? DEFAULT_INTERVAL.max;
  if (o.critical !== undefined) max = Math.max(min, Math.min(max, CRITICAL_MAX));
  return { min, max };
}

/**
 * The next sampling delay in ms: the shortest while in pressure; otherwise the time the headroom needs to reach
 * the threshold at the faster of the assumed rate and the rate just seen, within the bounds.
 */
export function nextDelay(
  o: Readonly<LowMemoryKillerOptions>,
  state: { pressured: boolean; distance: number | undefined; rate: number },
): number {
  const iv = o.interval;
  if (typeof iv === 'number') return iv;
  const { min, max } = intervalBounds(o);
  if (state.pressured) return min;
  if (state.distance === undefined) return max; // PSI alone: events wake the killer; sampling only ends episodes
  const rate = Math.max(ASSUMED_RATE, state.rate * 1.25);
  return Math.min(max, Math.max(min, state.distance / rate));
}
