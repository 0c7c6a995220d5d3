// The registry of `pidfd` subcommands, in the order `pidfd --help` lists them.
import type { Command } from './command';
import { caps } from './caps';

export const commands: Command[] = [caps];
