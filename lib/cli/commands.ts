// The registry of `pidfd` subcommands, in the order `pidfd --help` lists them.
import type { Command } from './command';
import { caps } from './caps';
import { memory } from './memory';
import { reclaim } from './reclaim';
import { pressure } from './pressure';
import { lmk } from './lmk';

export const commands: Command[] = [caps, memory, reclaim, pressure, lmk];
