// The systemd unit: the shipped file is what renderUnit() gives for its own paths, a rendered unit differs from it
// in ExecStart alone, `systemd-analyze verify` accepts it (with awkward paths too), and its system-call filter is a
// deny-list that keeps the four pidfd calls allowed, checked against this host's systemd groups.
import t from 'tap';
import { missingTool } from '../helpers/prebuilds';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_CONFIG, renderUnit, UNIT_FILE, UNIT_NAME, unitExecStart } from '../../lib/service/unit';

const ROOT = join(__dirname, '..', '..');
const SHIPPED = readFileSync(join(ROOT, 'systemd', 'pidfd-lmk.service'), 'utf8');
const SHIPPED_PATHS = { node: '/usr/bin/node', script: '/usr/lib/node_modules/pidfd/bin/pidfd.js' };
const FOUR = ['pidfd_open', 'pidfd_send_signal', 'process_madvise', 'process_mrelease'];
const CAPS = ['CAP_KILL', 'CAP_SYS_PTRACE', 'CAP_SYS_NICE', 'CAP_SYS_RESOURCE', 'CAP_IPC_LOCK'];

const analyze = spawnSync('systemd-analyze', ['--version'], { encoding: 'utf8' });
const noAnalyze =
  analyze.status === 0 ? false : 'systemd-analyze is not installed here (it comes with systemd): cannot verify';
if (noAnalyze) t.test('systemd-analyze', async (t) => missingTool(t, 'systemd-analyze', 'apt-get install systemd'));

/** The values of `key=` in the unit, in order. */
const values = (text: string, key: string): string[] =>
  [...text.matchAll(new RegExp(`^${key}=(.*)$`, 'gm'))].map((m) => m[1]);

/** A command line's words as systemd.service(5) reads them: quotes, C escapes, `%%`, and `$$` in arguments. */
function words(line: string): string[] {
  const out: string[] = [];
  for (const m of line.matchAll(/"((?:[^"\\]|\\.)*)"|(\S+)/g)) {
    const w = (m[1] !== undefined ? m[1].replace(/\\(.)/g, '$1') : m[2]).replace(/%%/g, '%');
    out.push(out.length === 0 ? w : w.replace(/\$\$/g, '$'));
  }
  return out;
}

/** `systemd-analyze verify` on `text` saved as pidfd-lmk.service: its status and the lines it printed. */
function verify(text: string): { status: number | null; lines: string[] } {
  const dir = mkdtempSync(join(tmpdir(), 'pidfd-unit-'));
  try {
    const file = join(dir, UNIT_NAME);
    writeFileSync(file, text);
    const r = spawnSync('systemd-analyze', ['verify', file], { encoding: 'utf8' });
    return { status: r.status, lines: (r.stdout + r.stderr).split('\n').filter((l) => l.trim() !== '') };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// A host whose systemd or libseccomp predates one of the four calls warns that it skips the name: harmless by
// design (a deny-list lets an unknown call through). Any other line is a problem in the unit.
const harmless = (line: string): boolean =>
  FOUR.some((c) => line.endsWith(`Failed to parse system call, ignoring: ${c}`));

t.test('the shipped file is the template: rendered with its own paths it is the same text', async (t) => {
  t.equal(UNIT_FILE, join(ROOT, 'systemd', UNIT_NAME));
  t.equal(values(SHIPPED, 'ExecStart').length, 1, 'one ExecStart line');
  t.same(words(values(SHIPPED, 'ExecStart')[0]), [
    SHIPPED_PATHS.node,
    SHIPPED_PATHS.script,
    'lmk',
    '--config',
    DEFAULT_CONFIG,
  ]);
  t.equal(renderUnit(SHIPPED_PATHS), SHIPPED, 'byte for byte');
});

t.test('rendered for this install: only ExecStart differs, and it names this Node and this package', async (t) => {
  const text = renderUnit();
  const a = SHIPPED.split('\n');
  const b = text.split('\n');
  t.equal(b.length, a.length, 'as many lines');
  const differ = a.flatMap((line, i) => (line === b[i] ? [] : [b[i]]));
  const exec = words(values(text, 'ExecStart')[0]);
  t.same(exec, [process.execPath, join(ROOT, 'bin', 'pidfd.js'), 'lmk', '--config', DEFAULT_CONFIG]);
  t.ok(
    differ.every((l) => l.startsWith('ExecStart=')),
    `differing lines: ${JSON.stringify(differ)}`,
  );
  t.ok(existsSync(exec[0]) && existsSync(exec[1]), 'both paths exist');
  t.equal(
    values(renderUnit({ config: '/etc/pidfd/other.toml' }), 'ExecStart')[0]
      .split(' ')
      .pop(),
    '/etc/pidfd/other.toml',
  );
});

t.test('systemd-analyze verify accepts the rendered unit, silently', { skip: noAnalyze }, async (t) => {
  t.comment(analyze.stdout.split('\n')[0]);
  const r = verify(renderUnit());
  t.equal(r.status, 0, 'exit status 0');
  t.same(
    r.lines.filter((l) => !harmless(l)),
    [],
    'no warning',
  );
});

t.test(
  'paths with blanks, quotes, % and $ are escaped: verify finds the executable',
  { skip: noAnalyze },
  async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'pidfd-unit-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    // The command may hold blanks, % and $ (systemd refuses quotes and backslashes there); an argument anything.
    const bin = join(dir, 'a b 100%x $HOME');
    const lib = join(dir, `a b "c" 'd' 100%x $HOME\\e`);
    mkdirSync(bin);
    mkdirSync(lib);
    const node = join(bin, 'node');
    symlinkSync(process.execPath, node);
    const script = join(lib, 'pidfd.js');
    const text = renderUnit({ node, script });
    t.same(words(values(text, 'ExecStart')[0]).slice(0, 2), [node, script], 'the words read back as the paths');
    const r = verify(text);
    t.equal(r.status, 0, `verify: ${r.lines.join('\n')}`);
    t.same(
      r.lines.filter((l) => !harmless(l)),
      [],
    );
    // Unescaped, `%x` is an unknown specifier and verify refuses the unit: the check above can fail.
    const raw = text.replace(/^ExecStart=.*$/m, `ExecStart=${process.execPath} /opt/100%x/pidfd.js`);
    t.not(verify(raw).status, 0, 'an unescaped % is refused');
  },
);

t.test('the system-call filter: a deny-list, EPERM, and the four calls listed and allowed', async (t) => {
  const filters = values(SHIPPED, 'SystemCallFilter');
  t.ok(filters[0].startsWith('~'), 'the first filter line is a deny-list (so unknown calls stay allowed)');
  const allow = filters.filter((f) => !f.startsWith('~')).flatMap((f) => f.split(/\s+/));
  t.same(allow.sort(), [...FOUR].sort(), 'its allow line lists the four calls');
  t.same(values(SHIPPED, 'SystemCallErrorNumber'), ['EPERM'], 'a filtered call fails with EPERM, not SIGSYS');
  t.same(values(SHIPPED, 'SystemCallArchitectures'), ['native']);

  t.test('against the groups of this host’s systemd', { skip: noAnalyze }, async (t) => {
    const denied = new Set<string>();
    const expand = (name: string): void => {
      if (!name.startsWith('@')) return void denied.add(name);
      const r = spawnSync('systemd-analyze', ['syscall-filter', name], { encoding: 'utf8' });
      t.equal(r.status, 0, `systemd-analyze syscall-filter ${name}`);
      for (const l of r.stdout.split('\n').slice(1)) {
        const w = l.trim();
        if (w !== '' && !w.startsWith('#')) expand(w);
      }
    };
    for (const f of filters.filter((f) => f.startsWith('~'))) for (const g of f.slice(1).split(/\s+/)) expand(g);
    t.ok(denied.size > 50, `${denied.size} calls denied`);
    for (const c of allow) denied.delete(c);
    // What the daemon itself calls: the pidfd calls, mlock2 (lock), setpriority (nice), prlimit64 (Node at start),
    // waitid and clone (hooks), timerfd and epoll (the sampler thread).
    const needed = [...FOUR, 'mlock2', 'setpriority', 'prlimit64', 'waitid', 'clone', 'clone3', 'execve'];
    for (const c of [...needed, 'timerfd_settime', 'epoll_wait', 'pread64', 'ioctl', 'socket', 'bind']) {
      t.notOk(denied.has(c), `${c} is allowed`);
    }
    t.ok(denied.has('ptrace') && denied.has('mount') && denied.has('reboot'), 'ptrace, mount, reboot are denied');
  });
});

t.test('capabilities, OOM, memory floor and priority', async (t) => {
  t.same(values(SHIPPED, 'CapabilityBoundingSet')[0].split(' '), CAPS, 'exactly the five capabilities');
  t.same(values(SHIPPED, 'AmbientCapabilities')[0].split(' '), CAPS);
  for (const cap of CAPS) t.match(SHIPPED, new RegExp(`^#\\s+${cap}\\s+\\S`, 'm'), `${cap}: a comment says why`);
  t.same(values(SHIPPED, 'OOMScoreAdjust'), ['-1000']);
  t.ok(values(SHIPPED, 'MemoryMin').length === 1 && values(SHIPPED, 'MemoryLow').length === 1, 'a memory floor');
  t.same(values(SHIPPED, 'Nice'), ['-20']);
  t.same(values(SHIPPED, 'RuntimeDirectory'), ['pidfd-lmk']);
  t.same(values(SHIPPED, 'NoNewPrivileges'), ['yes']);
  t.same(values(SHIPPED, 'ProtectControlGroups'), [], 'cgroupfs stays writable (cgroup.kill)');
  t.same(values(SHIPPED, 'ProtectProc'), [], "every process's /proc stays readable");
});

t.test('bad paths: ERR_INVALID_ARG_VALUE naming the path', async (t) => {
  t.throws(() => renderUnit({ node: 'node' }), {
    name: 'TypeError',
    code: 'ERR_INVALID_ARG_VALUE',
    message: /paths\.node/,
  });
  t.throws(() => unitExecStart({ node: '/opt/"node"/bin/node' }), {
    code: 'ERR_INVALID_ARG_VALUE',
    message: /quotes or backslashes/,
  });
  t.throws(() => unitExecStart({ script: './bin/pidfd.js' }), {
    code: 'ERR_INVALID_ARG_VALUE',
    message: /paths\.script/,
  });
  t.throws(() => unitExecStart({ config: '/etc/a\nExecStartPre=/bin/sh' }), {
    code: 'ERR_INVALID_ARG_VALUE',
    message: /control characters/,
  });
  t.throws(() => unitExecStart({ node: 42 as unknown as string }), { code: 'ERR_INVALID_ARG_VALUE' });
  t.throws(() => renderUnit(null as unknown as object), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' });
});
