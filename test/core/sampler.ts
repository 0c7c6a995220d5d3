// The threshold sampler (lib/sampler.ts over src/sampler.cc): a native thread samples a number in a real file and
// wakes JS only when it crosses a bound. Files the test writes (the number changes in place, same width, so a
// sample never sees a half-written file), /proc/meminfo, a memory cgroup removed under it, workers that end with
// samplers running, and the helper-thread path under Node.
import t from 'tap';
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readMeminfo } from '../../lib/procfs';
import { ThresholdSampler, ThresholdSamplerOptions } from '../../lib/sampler';
import { ensureDist } from '../helpers/dist';
import { makeV1MemoryGroup, removeAllGroups } from '../helpers/mem-helpers';
import { exited, track } from '../helpers/procs';

const ROOT = join(__dirname, '..', '..');
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const dir = mkdtempSync(join(tmpdir(), 'pidfd-sampler-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
t.teardown(removeAllGroups);

/** A file holding text the test rewrites in place (same length each time). */
function numberFile(name: string, text: string): { path: string; set(text: string): void; close(): void } {
  const path = join(dir, name);
  writeFileSync(path, text);
  const fd = openSync(path, 'r+');
  return {
    path,
    set: (s: string) => {
      if (s.length !== text.length) throw new Error('same length only');
      writeSync(fd, s, 0);
    },
    close: () => closeSync(fd),
  };
}

/** Records a sampler's events; next() waits (at most guardMs) for the next one. */
function record(s: ThresholdSampler): { events: (number | Error)[]; next(guardMs?: number): Promise<number | Error> } {
  const events: (number | Error)[] = [];
  let waiter: ((v: number | Error) => void) | undefined;
  const push = (v: number | Error): void => {
    events.push(v);
    waiter?.(v);
    waiter = undefined;
  };
  s.on('cross', push);
  s.on('error', push);
  return {
    events,
    next: (guardMs = 10_000) =>
      new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no sampler event within ${guardMs} ms`)), guardMs);
        waiter = (v) => {
          clearTimeout(timer);
          resolve(v);
        };
      }),
  };
}

const fast = { minMs: 10, maxMs: 10 };

t.test('a crossing fires once; no crossing, no call; update re-arms; close stops', async (t) => {
  const f = numberFile('a', '01000\n');
  t.teardown(() => f.close());
  const s = new ThresholdSampler({ path: f.path, op: 'below', bound: 500, ...fast });
  t.teardown(() => s.close());
  const r = record(s);
  s.start();
  t.equal(s.armed, true, 'armed once started');
  await sleep(150);
  t.same(r.events, [], '1000 is not below 500: no call in 15 periods');
  const crossed = r.next();
  f.set('00100\n');
  t.equal(await crossed, 100, 'the value that crossed is reported');
  t.equal(s.armed, false, 'and the sampler disarms');
  await sleep(150);
  t.same(r.events, [100], 'one-shot: still below 500 over 15 more periods, no second call');

  s.update({ bound: 50 });
  t.equal(s.armed, true, 'update re-arms');
  await sleep(150);
  t.same(r.events, [100], '100 is not below the new bound 50');
  const again = r.next();
  f.set('00010\n');
  t.equal(await again, 10, 'the re-armed sampler sees the next crossing');

  const atOnce = r.next();
  s.update({ bound: 500 });
  t.equal(await atOnce, 10, 'an update whose bound already holds fires at once');

  s.update({ bound: 5 });
  s.close();
  t.equal(s.closed, true);
  f.set('00001\n');
  await sleep(150);
  t.same(r.events, [100, 10, 10], 'closed: the crossing to 1 is not reported');
  t.throws(() => s.update({ bound: 1 }), { code: 'ERR_PIDFD_CLOSED' }, 'a closed sampler cannot be re-armed');
  s.close(); // idempotent
});

t.test("op 'above', the number after a key, and scale", async (t) => {
  // "value" must not match "value_max", nor "other_value"; "ratio:" ends in a separator and needs no blank.
  const f = numberFile('b', 'value_max 900\nother_value 900\nvalue  0010\nratio:30\n');
  t.teardown(() => f.close());
  const s = new ThresholdSampler({ path: f.path, key: 'value', scale: 1024, op: 'above', bound: 50 * 1024, ...fast });
  t.teardown(() => s.close());
  const r = record(s);
  s.start();
  await sleep(150);
  t.same(r.events, [], '10 (× 1024) is not above 50 × 1024: the lines value_max and other_value are not read');
  const crossed = r.next();
  f.set('value_max 900\nother_value 900\nvalue  0060\nratio:30\n');
  t.equal(await crossed, 60 * 1024, 'the value after the key, times the scale');

  const k = new ThresholdSampler({ path: f.path, key: 'ratio:', op: 'above', bound: 20 });
  t.teardown(() => k.close());
  const rk = record(k);
  k.start();
  t.equal(await rk.next(), 30, "a key ending in ':' takes the number right after it");

  const first = new ThresholdSampler({ path: f.path, op: 'below', bound: 1000 });
  t.teardown(() => first.close());
  const rf = record(first);
  first.start();
  t.equal(await rf.next(), 900, "key '': the first number in the file");
});

t.test('far from the bound it samples rarely, near it often', async (t) => {
  const f = numberFile('c', '1000\n');
  t.teardown(() => f.close());
  // rate 0.1/ms: 1000 units away means 10 s (clamped to maxMs, 3 s) before the next sample.
  const slow = new ThresholdSampler({ path: f.path, op: 'below', bound: 0, rate: 0.1, minMs: 10, maxMs: 3000 });
  const quick = new ThresholdSampler({ path: f.path, op: 'below', bound: 0, ...fast });
  t.teardown(() => slow.close());
  t.teardown(() => quick.close());
  const order: string[] = [];
  slow.on('cross', () => order.push('slow'));
  const quickCrossed = new Promise<void>((resolve) => quick.once('cross', () => resolve(void order.push('quick'))));
  const slowCrossed = new Promise<void>((resolve) => slow.once('cross', () => resolve()));
  slow.start();
  quick.start();
  await sleep(100); // both have taken their first sample
  f.set('-001\n');
  await quickCrossed;
  t.same(order, ['quick'], 'the sampler at 10 ms sees the crossing while the far one sleeps');
  await slowCrossed;
  t.same(order, ['quick', 'slow'], 'the far one sees it at its next sample');
});

t.test('MemAvailable in /proc/meminfo, with a bound above it: fires at once', async (t) => {
  const s = new ThresholdSampler({
    path: '/proc/meminfo',
    key: 'MemAvailable:',
    scale: 1024,
    op: 'below',
    bound: 2 ** 60,
  });
  t.teardown(() => s.close());
  const r = record(s);
  s.start();
  const v = await r.next();
  const now = readMeminfo().get('MemAvailable') ?? NaN; // bytes
  t.type(v, 'number');
  t.ok(Math.abs((v as number) - now) < 2 ** 30, `${v} B, about what /proc/meminfo says now (${now} B)`);
  t.ok((v as number) % 1024 === 0, 'in bytes (kB × 1024)');
});

t.test('errors: a missing file or key at start, a file that goes away, a key that goes away', async (t) => {
  const missing = new ThresholdSampler({ path: join(dir, 'none'), op: 'below', bound: 1 });
  t.throws(() => missing.start(), { code: 'ENOENT', syscall: 'open', path: join(dir, 'none') }, 'ENOENT from start');
  const f = numberFile('d', 'a 10\n');
  t.teardown(() => f.close());
  const nokey = new ThresholdSampler({ path: f.path, key: 'b', op: 'below', bound: 1 });
  t.throws(() => nokey.start(), { code: 'ERR_PIDFD_PROC_FORMAT', message: /no number after "b"/ }, 'no such key');

  const gone = new ThresholdSampler({ path: f.path, key: 'a', op: 'below', bound: 1, ...fast });
  t.teardown(() => gone.close());
  const rg = record(gone);
  gone.start();
  f.set('x 10\n');
  const e = (await rg.next()) as Error & { code?: string };
  t.equal(e.code, 'ERR_PIDFD_PROC_FORMAT', "the key disappeared: an 'error' event");
  t.equal(gone.armed, false, 'disarmed');
  f.set('a 00\n');
  t.equal(await (gone.update(), rg.next()), 0, 'update() re-arms after an error');

  const child = track(spawn('sleep', ['60'], { stdio: 'ignore' }));
  const statm = new ThresholdSampler({ path: `/proc/${child.pid}/statm`, op: 'above', bound: 2 ** 50, ...fast });
  t.teardown(() => statm.close());
  const rs = record(statm);
  statm.start();
  child.kill('SIGKILL');
  await exited(child);
  const esrch = (await rs.next()) as Error & { code?: string; syscall?: string };
  t.match(esrch, { code: 'ESRCH', syscall: 'read', path: `/proc/${child.pid}/statm` }, 'a reaped process: ESRCH');

  const group = makeV1MemoryGroup('sampler');
  if (group === undefined) {
    t.skip('a removed memory cgroup: no cgroup v1 memory controller here', () => {});
    return;
  }
  const usage = new ThresholdSampler({ path: join(group, 'memory.usage_in_bytes'), op: 'above', bound: 2 ** 50 });
  t.teardown(() => usage.close());
  const ru = record(usage);
  usage.start();
  await removeAllGroups();
  const enodev = (await (usage.update({ ...fast }), ru.next())) as Error & { code?: string };
  t.match(enodev, { code: 'ENODEV', syscall: 'read' }, 'a removed memory cgroup: ENODEV');
});

t.test('bad options', (t) => {
  const ok: ThresholdSamplerOptions = { path: '/proc/meminfo', op: 'below', bound: 1 };
  const bad: [unknown, string][] = [
    [undefined, 'ERR_INVALID_ARG_TYPE'],
    [[], 'ERR_INVALID_ARG_TYPE'],
    [{ ...ok, path: 1 }, 'ERR_INVALID_ARG_TYPE'],
    [{ ...ok, path: '' }, 'ERR_INVALID_ARG_VALUE'],
    [{ ...ok, path: 'a\0b' }, 'ERR_INVALID_ARG_VALUE'],
    [{ ...ok, key: 3 }, 'ERR_INVALID_ARG_TYPE'],
    [{ ...ok, key: 'a\nb' }, 'ERR_INVALID_ARG_VALUE'],
    [{ ...ok, key: 'k'.repeat(257) }, 'ERR_INVALID_ARG_VALUE'],
    [{ ...ok, scale: 0 }, 'ERR_OUT_OF_RANGE'],
    [{ ...ok, scale: NaN }, 'ERR_OUT_OF_RANGE'],
    [{ ...ok, scale: '1' }, 'ERR_INVALID_ARG_TYPE'],
    [{ ...ok, op: 'under' }, 'ERR_INVALID_ARG_VALUE'],
    [{ ...ok, bound: undefined }, 'ERR_INVALID_ARG_TYPE'],
    [{ ...ok, bound: Infinity }, 'ERR_OUT_OF_RANGE'],
    [{ ...ok, minMs: 0 }, 'ERR_OUT_OF_RANGE'],
    [{ ...ok, minMs: 100, maxMs: 50 }, 'ERR_OUT_OF_RANGE'],
    [{ ...ok, maxMs: 3_600_001 }, 'ERR_OUT_OF_RANGE'],
    [{ ...ok, maxMs: '10' }, 'ERR_INVALID_ARG_TYPE'],
    [{ ...ok, rate: -1 }, 'ERR_OUT_OF_RANGE'],
    [{ ...ok, ref: 1 }, 'ERR_INVALID_ARG_TYPE'],
  ];
  for (const [options, code] of bad) {
    t.throws(() => new ThresholdSampler(options as ThresholdSamplerOptions), { code }, JSON.stringify(options));
  }
  const s = new ThresholdSampler(ok);
  t.throws(() => s.update({ minMs: 2000 }), { code: 'ERR_OUT_OF_RANGE' }, 'update: minMs above maxMs');
  t.throws(() => s.update({ rate: NaN }), { code: 'ERR_OUT_OF_RANGE' }, 'update: rate NaN');
  t.throws(() => s.update(5 as never), { code: 'ERR_INVALID_ARG_TYPE' }, 'update: not an object');
  t.equal(s.arming.minMs, 10, 'a refused update changes nothing');
  t.end();
});

t.test("ref: a ref'd sampler keeps the process alive, an unref'd one does not", async (t) => {
  t.equal(ensureDist(), undefined, 'dist/ is current');
  const script = `
    const { ThresholdSampler } = require(${JSON.stringify(join(ROOT, 'dist', 'sampler.js'))});
    const s = new ThresholdSampler({ path: '/proc/meminfo', key: 'MemAvailable:', op: 'below', bound: 0 });
    s.start();
    const u = new ThresholdSampler({ path: '/proc/meminfo', op: 'below', bound: 0, ref: false });
    u.start();
    // Only the ref'd sampler can keep the process alive until this unref'd timer runs.
    setTimeout(() => { console.log('alive'); s.unref(); }, 300).unref();
  `;
  for (const watcher of ['default', 'thread']) {
    const env: NodeJS.ProcessEnv = { ...process.env, NODE_OPTIONS: '' };
    if (watcher === 'thread') env.PIDFD_WATCHER = 'thread';
    const r = spawnSync(process.execPath, ['-e', script], { env, encoding: 'utf8', timeout: 30_000 });
    t.equal(r.stdout.trim(), 'alive', `${watcher}: still running when the timer fired`);
    t.equal(r.status, 0, `${watcher}: then exits on its own, samplers open but unref'd (${r.signal}) ${r.stderr}`);
  }
});

t.test('workers that end with samplers running, terminated or exiting, 20 rounds each way', async (t) => {
  t.equal(ensureDist(), undefined, 'dist/ is current');
  const r = spawnSync(process.execPath, [join(__dirname, '..', 'fixtures', 'sampler-workers.js'), '20'], {
    encoding: 'utf8',
    env: { ...process.env, NODE_OPTIONS: '' },
    timeout: 120_000,
  });
  t.equal(r.signal, null, `no crash (stderr: ${r.stderr})`);
  t.equal(r.status, 0);
  t.equal(r.stdout.trim(), 'ok 20');
});

t.test('beside the watcher and a PSI trigger on one helper thread, under both watcher paths', async (t) => {
  t.equal(ensureDist(), undefined, 'dist/ is current');
  for (const watcher of ['default', 'thread']) {
    const env: NodeJS.ProcessEnv = { ...process.env, NODE_OPTIONS: '' };
    if (watcher === 'thread') env.PIDFD_WATCHER = 'thread';
    const r = spawnSync(process.execPath, [join(__dirname, '..', 'fixtures', 'sampler-thread.js'), dir], {
      encoding: 'utf8',
      env,
      timeout: 60_000,
    });
    t.equal(r.status, 0, `${watcher}: exits 0 (${r.signal}) ${r.stderr}`);
    const out = JSON.parse(r.stdout.trim() || '{}') as Record<string, unknown>;
    t.equal(out.cross, 7, `${watcher}: the sampler fired with the new value`);
    t.equal(out.signal, 'SIGKILL', `${watcher}: the wait settled`);
    t.equal(out.psi, 'trigger', `${watcher}: a kernel PSI trigger was polled meanwhile`);
    t.equal(out.during, (out.before as number) + 1, `${watcher}: one helper thread serves it all`);
  }
});

t.test('many samplers started, re-armed and closed while the thread samples them', async (t) => {
  const f = numberFile('e', '5\n');
  t.teardown(() => f.close());
  const open = new Set<ThresholdSampler>();
  let crossings = 0;
  for (let round = 0; round < 20; round++) {
    for (let i = 0; i < 15; i++) {
      const s = new ThresholdSampler({ path: f.path, op: 'above', bound: 0, minMs: 1, maxMs: 1 });
      s.on('cross', () => {
        crossings++;
        if (crossings % 3 === 0) s.close();
        else s.update();
      });
      s.start();
      open.add(s);
    }
    await sleep(5);
    for (const s of [...open].slice(0, 10)) {
      s.close();
      open.delete(s);
    }
  }
  for (const s of open) s.close();
  t.ok(crossings >= 300, `every sampler fired at least once (${crossings} crossings)`);
});
