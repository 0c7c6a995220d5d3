// The registry of `pidfd` subcommands, in the order `pidfd --help` lists them.
import type { Command } from './command';
import { caps } from './caps';
import { info } from './info';
import { kill } from './kill';
import { lmk } from './lmk';
import { memory } from './memory';
import { pressure } from './pressure';
import { reclaim } from './reclaim';
import { treeKill } from './tree-kill';
import { wait } from './wait';

export const commands: Command[] = [wait, kill, treeKill, info, memory, reclaim, pressure, lmk, caps];
