// The low-memory killer: one file per job (options, budget, candidates, steps, events, the class, lockMemory).
export { type MemoryHeadroom, readHeadroom, readOomKills } from './budget';
export type { Candidate } from './candidates';
export type {
  KernelOomEvent,
  KillEvent,
  KilledProcess,
  LowMemoryKillerEvents,
  PreKillResult,
  PreKillVictim,
  PressureStartEvent,
  ReclaimEvent,
  RecoveredEvent,
  TrimEvent,
} from './events';
export { LowMemoryKiller } from './killer';
export type { PressureRule } from './rules';
export { type LockResult, lockMemory } from './lock';
export type { CandidateMatcher, CandidateSource, KillerPsiOptions, KillMode, LowMemoryKillerOptions } from './options';
