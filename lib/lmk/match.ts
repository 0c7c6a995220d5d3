// CandidateMatcher: whether a matcher (a pid, a comm, a RegExp, a predicate) names a candidate.
import { cgroupOf } from '../cgroup';
import { readChecked } from '../procfs';
import type { Candidate } from './candidates';
import type { CandidateMatcher } from './options';

/** Whether any of the matchers names `c`: a pid, a comm (exact), a RegExp tested against comm, the command line
 *  joined with spaces and the cgroup v2 path (each read only when a RegExp asks), or a predicate. */
export function matches(c: Candidate, matchers: CandidateMatcher | CandidateMatcher[] | undefined): boolean {
  if (matchers === undefined) return false;
  let texts: string[] | undefined;
  for (const m of Array.isArray(matchers) ? matchers : [matchers]) {
    if (typeof m === 'number' ? m === c.pid : typeof m === 'string' ? m === c.comm : false) return true;
    if (typeof m === 'function' && m(c) === true) return true;
    if (m instanceof RegExp) {
      texts ??= [c.comm, cmdlineOf(c), cgroupOf(c.pidfd) ?? ''];
      if (texts.some((t) => m.test(t))) return true;
    }
  }
  return false;
}

function cmdlineOf(c: Candidate): string {
  try {
    return readChecked(c.pidfd, 'cmdline', { allowExiting: true }).split('\0').filter(Boolean).join(' ');
  } catch {
    return '';
  }
}
