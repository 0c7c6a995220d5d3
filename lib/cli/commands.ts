// The registry of `pidfd` subcommands, in the order `pidfd --help` lists them.
import type { Command } from './command';
import { caps } from './caps';
import { info } from './info';
import { kill } from './kill';
import { treeKill } from './tree-kill';
import { wait } from './wait';

export const commands: Command[] = [caps, wait, kill, treeKill, info];
