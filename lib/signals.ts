import { constants } from 'node:os';
import { codedError } from './errors';
import { invalidType, outOfRange } from './validate';

const byName = constants.signals as Record<string, number>;
const byNumber = new Map<number, NodeJS.Signals>();
// First name wins, so 6 is SIGABRT (not SIGIOT) and 29 is SIGIO (not SIGPOLL), as Node names them.
for (const [name, num] of Object.entries(byName)) if (!byNumber.has(num)) byNumber.set(num, name as NodeJS.Signals);

/** The signals the toolkit sends itself. */
export const SIGKILL = byName.SIGKILL;
export const SIGSTOP = byName.SIGSTOP;
export const SIGCONT = byName.SIGCONT;

/** Highest signal number on Linux (SIGRTMAX). */
export const SIGNAL_MAX = 64;

/** The signal's name, e.g. `SIGTERM`; real-time signals, which have no name in Node, read `SIGRTMIN+n`. */
export function signalName(signo: number): NodeJS.Signals {
  return byNumber.get(signo) ?? (`SIGRTMIN+${signo - 34}` as NodeJS.Signals);
}

/** Validates a signal given as a name (`'SIGTERM'`) or a number (0 to 64) and returns its number. */
export function toSignalNumber(signal: unknown, name = 'signal'): number {
  if (typeof signal === 'string') {
    const num = byName[signal];
    if (num === undefined) throw codedError('ERR_UNKNOWN_SIGNAL', `Unknown signal: ${signal}`, TypeError);
    return num;
  }
  if (typeof signal === 'number') {
    if (!Number.isInteger(signal) || signal < 0 || signal > SIGNAL_MAX) {
      throw outOfRange(name, `an integer >= 0 and <= ${SIGNAL_MAX}`, signal);
    }
    return signal;
  }
  throw invalidType(name, 'of type string or number', signal);
}
