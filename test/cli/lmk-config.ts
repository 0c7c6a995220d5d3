// `pidfd lmk --config FILE`: the TOML file with every setting, each kind of bad value refused with a message that
// names the key, flags over the file, the published schema in step with the loader, and SIGHUP: a good new file
// changes what the running killer decides, a bad one is reported and the running settings stay.
import t from 'tap';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Ajv2020 from 'ajv/dist/2020';
import { parse as parseToml } from 'smol-toml';
import { cli, startCli } from '../helpers/cli';
import { ended } from '../helpers/lines';
import { makeV1MemoryGroup, memoryV1Root, removeAllGroups, Worker } from '../helpers/mem-helpers';

const ROOT = join(__dirname, '..', '..');
const MiB = 2 ** 20;
const dir = mkdtempSync(join(tmpdir(), 'pidfd-lmk-config-'));
let n = 0;
const file = (text: string): string => {
  const p = join(dir, `c${n++}.toml`);
  writeFileSync(p, text);
  return p;
};
const workers: Worker[] = [];
t.teardown(async () => {
  for (const w of workers) await w.kill();
  await removeAllGroups();
});

t.test('the shipped schema, example and reference are current', async (t) => {
  const r = cli('lmk', '--help'); // dist/ is current (the helper builds it)
  t.equal(r.status, 0);
  const { spawnSync } = await import('node:child_process');
  const check = spawnSync(process.execPath, [join(ROOT, 'scripts', 'write-lmk-config.mjs'), '--check'], {
    encoding: 'utf8',
  });
  t.equal(check.status, 0, check.stderr);
});

t.test(
  'the example file sets every setting, and loads',
  { skip: !memoryV1Root() && 'no cgroup v1 memory' },
  async (t) => {
    const g = makeV1MemoryGroup('lmk-config-example', 256 * MiB)!;
    const example = readFileSync(join(ROOT, 'config', 'lmk.toml'), 'utf8');
    const schema = JSON.parse(readFileSync(join(ROOT, 'config', 'lmk.schema.json'), 'utf8'));
    const keys = Object.keys(schema.properties);
    const set = Object.keys(parseToml(example));
    t.same(
      keys.filter((k) => !set.includes(k)),
      ['children-of'],
      'every key is set but children-of (it excludes cgroup)',
    );
    // The example's directories made real: a memory cgroup of the test's own.
    const real = example.replaceAll('/sys/fs/cgroup/workers', g).replace(/^psi-cgroup = .*$/m, '');
    const r = cli('lmk', '--check-config', '--config', file(real));
    t.equal(r.status, 0, r.stderr);
    const effective = parseToml(r.stdout);
    t.equal(effective['kill-mode'], 'process');
    t.same(effective.protect, ['sshd', '/^systemd/']);
    t.equal(effective['oom-score-adj'], -1000);
    t.equal(effective['metrics'], '127.0.0.1:9464');
    t.equal(Object.keys(effective).length, set.length - 1, 'every key set comes back (psi-cgroup removed)');
  },
);

t.test('bad files are refused, naming the file, the key, the value and the reason', async (t) => {
  const cases: [string, string, RegExp][] = [
    [
      'unknown key',
      'cgroup = "/x"\nmin-availabel = "5%"\n',
      /unknown key "min-availabel" \(did you mean min-available\?\)/,
    ],
    [
      'wrong type',
      'cgroup = "/x"\nkill-mode = 3\n',
      /kill-mode must be process, group, tree or cgroup, not a number \(3\)/,
    ],
    ['wrong type (boolean)', 'cgroup = "/x"\nreclaim = "no"\n', /reclaim must be true or false, not a string \("no"\)/],
    ['out of range', 'cgroup = "/x"\nnice = -30\n', /nice must be from -20 to 19, not -30/],
    ['out of range (%)', 'cgroup = "/x"\nmin-available = "120%"\n', /min-available must be at most 100%/],
    ['bad regex', 'cgroup = "/x"\nprotect = ["sshd", "/(/"]\n', /protect: \/\(\/ is not a valid regular expression/],
    [
      'bad duration',
      'cgroup = "/x"\ngrace = "soon"\n',
      /grace must be a duration such as 500, 500ms, 1.5s or 2m, not "soon"/,
    ],
    ['a table', 'cgroup = "/x"\n[kill]\nmode = "tree"\n', /kill must be a value, not a table/],
    ['not TOML', 'cgroup = "/x\n', /not valid TOML at line 1/],
    [
      'keys that exclude each other',
      'cgroup = "/x"\nchildren-of = 1\n',
      /cgroup \(in .*\) or children-of \(in .*\), not both/,
    ],
  ];
  for (const [what, text, re] of cases) {
    const p = file(text);
    const r = cli('lmk', '--check-config', '--config', p);
    t.equal(r.status, 1, `${what}: status 1`);
    t.match(r.stderr, new RegExp(`^pidfd lmk: config ${p.replace(/[.]/g, '\\.')}: `), `${what}: names the file`);
    t.match(r.stderr, re, `${what}: ${r.stderr.trim()}`);
    t.match(r.stderr, /\(ERR_PIDFD_CONFIG\)$/m, `${what}: code`);
  }
  const missing = join(dir, 'none.toml');
  const r = cli('lmk', '--check-config', '--config', missing);
  t.equal(r.status, 1);
  t.match(r.stderr, /cannot be read: ENOENT: no such file or directory/, 'unreadable file');
  // A directory is not readable as a file either.
  t.match(cli('lmk', '--check-config', '--config', dir).stderr, /cannot be read: EISDIR/);
  // Flags keep their own error style: a usage error, status 2.
  const flag = cli('lmk', '--check-config', '--cgroup', '/x', '--nice=-30');
  t.equal(flag.status, 2);
  t.match(flag.stderr, /--nice must be from -20 to 19, not -30/);
});

t.test('flags win over the file; --no-KEY turns a default-true setting off', async (t) => {
  const p = file('cgroup = "/x"\nmin-available = "5%"\nkill-mode = "tree"\nreclaim = true\n');
  const r = cli('lmk', '--check-config', '--config', p, '--kill-mode', 'group', '--no-reclaim');
  t.equal(r.status, 0, r.stderr);
  const e = parseToml(r.stdout);
  t.same([e['min-available'], e['kill-mode'], e.reclaim], ['5%', 'group', false]);
  t.equal(cli('lmk', '--check-config', '--cgroup', '/x', '--reclaim', '--no-reclaim').status, 2, 'not both');
});

t.test('the schema accepts what the loader accepts and refuses what it refuses', async (t) => {
  const schema = JSON.parse(readFileSync(join(ROOT, 'config', 'lmk.schema.json'), 'utf8'));
  const validate = new Ajv2020({ allErrors: true }).compile(schema);
  const docs = [
    'cgroup = "/x"\nmin-available = "5%"\ninterval = "20ms..500ms"\nprotect = ["a", 12, "/b/i"]\n',
    'cgroup = "/x"\nmin-available = 536870912\ngrace = 1500\ngrace-signal = "TERM"\nnice = "keep"\n',
    'cgroup = "/x"\npsi = "full 100ms/1s"\nmetrics = "[::1]:9464"\nlog-format = "json"\n',
    'cgroup = "/x"\nmin-availabel = "5%"\n',
    'cgroup = "/x"\nkill-mode = 3\n',
    'cgroup = "/x"\nnice = -30\n',
    'cgroup = "/x"\nmin-available = "120%"\n',
    'cgroup = "/x"\ngrace = "soon"\n',
    'cgroup = "/x"\nmetrics = "localhost"\n',
    'cgroup = "/x"\noom-score-adj = 1001\n',
  ];
  for (const text of docs) {
    const loader = cli('lmk', '--check-config', '--config', file(text)).status === 0;
    t.equal(validate(parseToml(text)), loader, `${JSON.stringify(text)}: loader ${loader ? 'accepts' : 'refuses'}`);
  }
});

t.test(
  'SIGHUP: a good file changes the decision of the running killer; a bad one is reported and changes nothing',
  { skip: !memoryV1Root() && 'no cgroup v1 memory' },
  async (t) => {
    const g = makeV1MemoryGroup('lmk-config-hup', 512 * MiB)!;
    const procs = [join(g, 'cgroup.procs')];
    const a = await new Worker(procs).ready();
    const b = await new Worker(procs).ready();
    workers.push(a, b);
    await a.ask('a 32', 'anon');
    await b.ask('a 16', 'anon');
    // Always in pressure (100 %), deciding without acting; `prefer` says who would die.
    const settings = (prefer: number): string =>
      `cgroup = "${g}"\nmin-available = "100%"\ndry-run = true\nreclaim = false\nprefer = [${prefer}]\n`;
    const p = file(settings(a.pid));
    const run = startCli('lmk', '--config', p, '--json', '--oom-score-adj', 'keep', '--nice', 'keep');
    const records = (): any[] => run.out.all.filter((l) => l.startsWith('{')).map((l) => JSON.parse(l));
    const kills = (): any[] => records().filter((r) => r.event === 'kill');
    await run.out.waitFor(() => kills().length >= 1, 'the first decision');
    t.equal(kills()[0].pid, a.pid, 'the first file prefers a');
    t.equal(kills()[0].dryRun, true);

    writeFileSync(p, settings(b.pid));
    run.child.kill('SIGHUP');
    await run.out.waitFor(() => records().some((r) => r.event === 'reload'), 'the reload');
    await run.out.waitFor(() => kills().length >= 2, 'a decision after the reload');
    t.equal(kills().at(-1).pid, b.pid, 'the new file prefers b: the running killer decides differently');

    writeFileSync(p, 'cgroup = "/x"\nkill-mode = "everything"\n');
    const before = kills().length;
    run.child.kill('SIGHUP');
    const bad = JSON.parse(await run.out.waitFor((l) => l.includes('"config-error"'), 'the refusal'));
    t.match(bad.message, /kill-mode must be process, group, tree or cgroup, not "everything"/);
    t.equal(records().filter((r) => r.event === 'reload').length, 1, 'no second reload');
    t.equal(run.child.exitCode, null, 'it runs on');
    t.equal(kills().length, before, 'and no new episode started');
    t.same([a.proc.exitCode, b.proc.exitCode], [null, null], 'dry run: nobody died');
    run.child.kill('SIGTERM');
    t.same(await ended(run.child), [0, null]);
  },
);
