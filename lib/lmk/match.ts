// CandidateMatcher: whether a matcher (a pid, a comm, a RegExp, a predicate) names a candidate. The one matcher of
// protect, prefer, avoid and trim.always.
import type { PidFd } from '../pidfd';
import { readChecked } from '../procfs';
import type { Candidate } from './candidates';
import type { CandidateMatcher } from './options';

const cmdlines = new WeakMap<PidFd, string>();

// What a RegExp matcher is tested against, read only when one is given.
export interface Texts {
  cmdline: string;
  cgroups: string[];
}

/**
 * Whether `c` is named by `m` (a matcher or a list of them); `texts` reads cmdline and cgroup paths on demand. A
 * predicate sees the candidate's measured fields (its `tier` and `protected` are decided from these answers).
 *
 * @example
 * if (matchCandidate(c, [/--batch/, 'ffmpeg'])) console.log(`${c.pid} is a batch job`);
 */
export function matchCandidate(
  c: Candidate,
  m: CandidateMatcher | CandidateMatcher[] | undefined,
  texts: () => Texts = () => readTexts(c.pidfd),
): boolean {
  if (m === undefined) return false;
  for (const x of Array.isArray(m) ? m : [m]) {
    if (
      typeof x === 'number'
        ? x === c.pid
        : typeof x === 'string'
          ? x === c.comm
          : typeof x === 'function' && x(c) === true
    )
      return true;
    if (x instanceof RegExp) {
      // search() ignores lastIndex, so a /g or /y RegExp gives the same answer every time.
      const t = texts();
      if (c.comm.search(x) !== -1 || t.cmdline.search(x) !== -1 || t.cgroups.some((g) => g.search(x) !== -1))
        return true;
    }
  }
  return false;
}

// The command line (joined with spaces; kept per PidFd: it names one process for good) and the cgroup paths.
export function readTexts(p: PidFd): Texts {
  let cmdline = cmdlines.get(p);
  if (cmdline === undefined) {
    cmdline = readChecked(p, 'cmdline')
      .split('\0')
      .filter((s) => s !== '')
      .join(' ');
    cmdlines.set(p, cmdline);
  }
  const cgroups = readChecked(p, 'cgroup', { allowExiting: true })
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => l.slice(l.indexOf(':', l.indexOf(':') + 1) + 1));
  return { cmdline, cgroups };
}
