// The `pidfd` CLI's dispatcher and `caps`, run as a child process the way a user runs it.
import t from 'tap';
import { capabilities } from '../../lib/index';
import { cli } from '../helpers/cli';

t.test('no command: the help on stdout, status 2; --help: status 0', async (t) => {
  const none = cli();
  t.equal(none.status, 2);
  t.match(none.stdout, /^Usage: pidfd <command>/);
  t.match(none.stdout, /\n {2}caps /);
  const help = cli('--help');
  t.equal(help.status, 0);
  t.equal(help.stdout, none.stdout);
});

t.test('bad arguments: one line and the usage on stderr, status 2, nothing on stdout', async (t) => {
  // A pid no process has (pid_max is at most 2^22): were the arguments ever taken, nothing could be signalled.
  for (const args of [['nope'], ['caps', '--bogus'], ['caps', 'extra'], ['kill', '4194303', '--timeout', '-5']]) {
    const r = cli(...args);
    t.equal(r.status, 2, args.join(' '));
    t.equal(r.stdout, '', args.join(' '));
    const lines = r.stderr.trimEnd().split('\n');
    t.equal(lines.length, 2, `${args.join(' ')}: ${r.stderr}`);
    t.match(lines[1], /^Usage: pidfd /);
  }
});

t.test('caps: one line per feature matching capabilities(); --json parses to the same', async (t) => {
  const caps = capabilities();
  const human = cli('caps');
  t.equal(human.status, caps.pidfdOpen ? 0 : 1);
  const lines = human.stdout.trimEnd().split('\n');
  t.equal(lines.length, 1 + Object.keys(caps).length);
  t.match(
    lines.find((l) => l.includes('process_mrelease')),
    caps.processMrelease ? /^\s+yes\s+process_mrelease\s+Linux 5\.15\+$/ : /^\s+no/,
  );
  const json = cli('caps', '--json');
  t.equal(json.status, human.status);
  const doc = JSON.parse(json.stdout);
  t.equal(doc.arch, process.arch);
  t.same(
    Object.fromEntries(doc.features.map((f: { name: string; supported: boolean }) => [f.name, f.supported])),
    caps,
  );
  const help = cli('caps', '--help');
  t.equal(help.status, 0);
  t.match(help.stdout, /^Usage: pidfd caps/);
});
