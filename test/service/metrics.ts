// The killer's Prometheus metrics over real kills: a LowMemoryKiller in a cgroup v1 memory budget of the test's
// own kills real mem-worker processes; its events feed LmkMetrics; /metrics is scraped over HTTP and its counters
// and histograms must match the kill events seen, and `promtool check metrics` must accept the text. The kernel's
// own OOM killer is made to act in a second budget, and its kill counted. The textfile is rewritten many times
// while another process reads it in a tight loop: every read must be one whole document that was written.
import t, { type Test } from 'tap';
import { missingTool } from '../helpers/prebuilds';
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KillEvent, LowMemoryKiller } from '../../lib/index';
import {
  LmkMetrics,
  parseListenAddress,
  serveMetrics,
  startMetricsFile,
  writeMetricsFile,
} from '../../lib/service/metrics';
import { exited, track, until } from '../helpers/procs';
import { budgetWorker, makeV1MemoryGroup, memoryV1Root, removeAllGroups, Worker } from '../helpers/mem-helpers';

const MiB = 2 ** 20;
const workers: Worker[] = [];
t.teardown(async () => {
  for (const w of workers) await w.kill();
  await removeAllGroups();
});

const noV1 = !memoryV1Root() && 'no cgroup v1 memory controller: the budget cannot be made';
const promtool = spawnSync('promtool', ['--version']).error === undefined;

/** GET (or another method) over HTTP: status, content type and body. */
function fetchText(
  port: number,
  path: string,
  method = 'GET',
): Promise<{ status: number; type: string; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode!, type: String(res.headers['content-type']), body }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** The samples of a text exposition: `name{labels}` -> value. */
function samples(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    out.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return out;
}

/** Sum of every sample of `name` (all label sets). */
const total = (s: Map<string, number>, name: string): number =>
  [...s].filter(([k]) => k === name || k.startsWith(`${name}{`)).reduce((a, [, v]) => a + v, 0);

function checkPromtool(t: Test, text: string, what: string): void {
  if (!promtool) {
    missingTool(t, `promtool check metrics (${what})`, 'apt-get install prometheus');
    return;
  }
  const r = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
  t.equal(r.status, 0, `promtool check metrics accepts ${what}: ${(r.stdout + r.stderr).trim() || 'no complaint'}`);
}

t.test('real kills, scraped over HTTP: counters and histograms match the kill events', { skip: noV1 }, async (t) => {
  const LIMIT = 512 * MiB;
  const g = makeV1MemoryGroup('metrics', LIMIT)!;
  const w1 = await budgetWorker(workers, g, 0, 64);
  const w2 = await budgetWorker(workers, g, 800, 48);
  const w3 = await budgetWorker(workers, g, 300, 40);
  const lmk = new LowMemoryKiller({ candidates: { cgroup: g }, memory: { cgroup: g }, minAvailable: 128 * MiB });
  t.teardown(() => lmk.stop());
  const records: { event: string; [k: string]: unknown }[] = [];
  for (const event of ['pressure', 'kill', 'recovered', 'reclaim', 'trim', 'kernel-oom'] as const)
    lmk.on(event, (e: object) => records.push(JSON.parse(JSON.stringify({ event, ...e }))));
  lmk.on('error', (err) => records.push({ event: 'error', message: err.message }));
  const metrics = new LmkMetrics({ headroom: () => lmk.headroom(), threshold: () => lmk.threshold() });
  metrics.attach(lmk);
  const server = await serveMetrics(metrics, '127.0.0.1:0');
  t.teardown(() => void server.close());
  const { port } = server.address() as AddressInfo;

  const before = samples((await fetchText(port, '/metrics')).body);
  t.equal(total(before, 'pidfd_lmk_kills_total'), 0, 'no kill yet');
  t.equal(before.get('pidfd_lmk_kills_total{reason="memory",mode="process"}'), 0, 'the label pairs exist from 0');

  // Two episodes, one kill each (driven by check() once each allocation is done, as test/lmk/killer.ts does):
  // 392 MiB used of 512 (w2 goes: 48 MiB at oom_score_adj 800), then 444 (w1 or w3 goes, whichever the kernel's
  // badness ranks first); each kill lifts the headroom past 128 MiB plus the hysteresis, and the episode ends.
  const t0 = Date.now() / 1000;
  await w1.ask('a 240', 'anon');
  await lmk.check();
  await lmk.check();
  await w3.ask('a 100', 'anon');
  await lmk.check();
  await lmk.check();
  const kills = records.filter((r) => r.event === 'kill') as unknown as KillEvent[];
  const pressures = records.filter((r) => r.event === 'pressure');
  t.equal(kills.length, 2, 'two kills');
  t.equal(kills[0]?.pid, w2.pid, 'w2 first');
  t.ok([w1.pid, w3.pid].includes(kills[1]?.pid), 'then w1 or w3');
  t.same(
    records.filter((r) => r.event === 'recovered').map((r) => r.episode),
    [1, 2],
    'each episode ended',
  );
  if (kills[0]?.pid === w2.pid) t.same(await exited(w2.proc), [null, 'SIGKILL'], 'w2 died of SIGKILL');
  t.same(
    kills.map((k) => k.triggered),
    [['memory'], ['memory']],
    'each kill event says the memory rule triggered it',
  );
  t.same(
    pressures.map((p) => p.triggered),
    [['memory'], ['memory']],
    'so does each pressure event',
  );

  const res = await fetchText(port, '/metrics');
  const headroom = lmk.headroom();
  t.equal(res.status, 200);
  t.match(res.type, /^text\/plain; version=0\.0\.4/);
  const s = samples(res.body);
  t.equal(s.get('pidfd_lmk_kills_total{reason="memory",mode="process"}'), kills.length, 'kills by reason and mode');
  t.equal(total(s, 'pidfd_lmk_kills_total'), kills.length, 'and no kill counted elsewhere');
  t.equal(total(s, 'pidfd_lmk_dry_run_kills_total'), 0);
  t.equal(s.get('pidfd_lmk_episodes_total{reason="memory"}'), pressures.length, 'episodes');
  t.equal(
    s.get('pidfd_lmk_killed_processes_total'),
    kills.reduce((a, k) => a + k.killed.length, 0),
  );
  const freed = kills.reduce((a, k) => a + Math.max(0, k.bytesFreed), 0);
  t.equal(s.get('pidfd_lmk_freed_bytes_total'), freed, `bytes freed: ${(freed / MiB).toFixed(1)} MiB`);
  for (const [name, field] of [
    ['kill_death_seconds', 'deathMs'],
    ['kill_memory_regained_seconds', 'memoryMs'],
    ['kill_decision_seconds', 'decisionMs'],
  ] as const) {
    const sum = kills.reduce((a, k) => a + k[field] / 1000, 0);
    t.equal(s.get(`pidfd_lmk_${name}_count`), kills.length, `${name}: one observation per kill`);
    t.ok(Math.abs(s.get(`pidfd_lmk_${name}_sum`)! - sum) < 1e-9, `${name}: sum ${sum.toFixed(4)} s`);
    t.equal(s.get(`pidfd_lmk_${name}_bucket{le="+Inf"}`), kills.length);
    t.ok(s.has(`pidfd_lmk_${name}_bucket{le="0.005"}`) && s.has(`pidfd_lmk_${name}_bucket{le="10"}`), '5 ms .. 10 s');
  }
  const last = s.get('pidfd_lmk_last_decision_timestamp_seconds')!;
  t.ok(last >= t0 && last <= Date.now() / 1000, 'the last decision is timestamped');
  t.equal(s.get('pidfd_lmk_pressured'), 0, 'recovered');
  t.equal(s.get('pidfd_lmk_total_bytes'), LIMIT, 'total: the group limit');
  t.equal(s.get('pidfd_lmk_threshold_bytes'), 128 * MiB);
  // The workers are idle: what the scrape read and what the killer reads now differ by a few pages at most.
  t.ok(
    Math.abs(s.get('pidfd_lmk_available_bytes')! - headroom.available) < 4 * MiB,
    `available read at scrape time: ${(s.get('pidfd_lmk_available_bytes')! / MiB).toFixed(1)} MiB`,
  );
  t.equal(s.get('pidfd_lmk_swap_total_bytes'), headroom.swapTotal);
  checkPromtool(t, res.body, 'the scraped text');

  // The same records as `pidfd lmk --json` prints them (JSON lines) give the same counts.
  const replay = new LmkMetrics({ psi: false });
  for (const r of records) replay.record(r);
  const rs = samples(await replay.text());
  for (const name of ['pidfd_lmk_kills_total', 'pidfd_lmk_episodes_total', 'pidfd_lmk_freed_bytes_total'])
    t.equal(total(rs, name), total(s, name), `${name} from the JSON records`);

  t.equal((await fetchText(port, '/')).status, 404, 'elsewhere: 404');
  t.equal((await fetchText(port, '/metricsx')).status, 404);
  t.equal((await fetchText(port, '/metrics?x=1')).status, 200, 'a query string is ignored');
  t.equal((await fetchText(port, '/metrics', 'POST')).status, 405, 'POST: 405');
  const head = await fetchText(port, '/metrics', 'HEAD');
  t.equal(head.status, 200);
  t.equal(head.body, '');
});

t.test("the kernel's OOM kills in the budget are counted", { skip: noV1 }, async (t) => {
  const LIMIT = 64 * MiB;
  const g = makeV1MemoryGroup('metrics-oom', LIMIT)!;
  // With swap turned on (by another test) the group would swap instead: limit memory+swap too where v1 has it.
  if (existsSync(join(g, 'memory.memsw.limit_in_bytes')))
    writeFileSync(join(g, 'memory.memsw.limit_in_bytes'), String(LIMIT));
  // The killer does not run on its own (no start()), so only the kernel acts; check() then reads its counter.
  const lmk = new LowMemoryKiller({ candidates: { cgroup: g }, memory: { cgroup: g }, minAvailable: MiB });
  t.teardown(() => lmk.stop());
  const seen: number[] = [];
  lmk.on('kernel-oom', (e) => seen.push(e.count));
  const metrics = new LmkMetrics({ psi: false });
  metrics.attach(lmk);
  const hog = await budgetWorker(workers, g, 0, 0);
  hog.proc.stdin!.write('a 256\n');
  t.same(await exited(hog.proc), [null, 'SIGKILL'], 'the kernel killed the hog');
  await lmk.check();
  const s = samples(await metrics.text());
  t.same(seen, [1], 'one kernel-oom event, one kill');
  t.equal(s.get('pidfd_lmk_kernel_oom_kills_total'), 1, 'counted');
  t.equal(total(s, 'pidfd_lmk_kills_total'), 0, 'not as a kill of the killer');
});

t.test('memory PSI gauges are read at scrape time where PSI can be read', async (t) => {
  const psi = existsSync('/proc/pressure/memory');
  const s = samples(await new LmkMetrics().text());
  if (!psi) {
    t.notOk(s.has('pidfd_lmk_memory_pressure_avg10_ratio{kind="some"}'), 'no PSI here: left out');
    return;
  }
  const some = s.get('pidfd_lmk_memory_pressure_avg10_ratio{kind="some"}');
  t.ok(some !== undefined && some >= 0 && some <= 1, `some avg10 as a ratio: ${some}`);
  t.ok(s.has('pidfd_lmk_memory_pressure_avg10_ratio{kind="full"}'), 'and full');
  const none = samples(await new LmkMetrics({ psi: false }).text());
  t.notOk(
    [...none.keys()].some((k) => k.includes('memory_pressure')),
    'psi: false leaves them out',
  );
  checkPromtool(t, await new LmkMetrics().text(), 'the text without providers');
});

t.test('a provider that throws fails the scrape with 500, not the server', async (t) => {
  let fail = true;
  const m = new LmkMetrics({
    psi: false,
    headroom: () => {
      if (fail) throw new Error('ENOENT: the budget is gone');
      return { available: 1, total: 2, source: 'meminfo', swapFree: 0, swapTotal: 0, limitedBy: 'MemAvailable' };
    },
  });
  const server = await serveMetrics(m, '127.0.0.1:0');
  t.teardown(() => void server.close());
  const { port } = server.address() as AddressInfo;
  const r = await fetchText(port, '/metrics');
  t.equal(r.status, 500);
  t.match(r.body, /the budget is gone/);
  fail = false;
  t.equal(samples((await fetchText(port, '/metrics')).body).get('pidfd_lmk_available_bytes'), 1, 'then it answers');
});

t.test('prom-client is loaded by the first LmkMetrics, not by the library or the killer', async (t) => {
  const lib = JSON.stringify(join(__dirname, '..', '..', 'lib', 'index.ts'));
  const mod = JSON.stringify(join(__dirname, '..', '..', 'lib', 'service', 'metrics.ts'));
  const loader = process.execArgv.filter((a) => a.includes('@tapjs/typescript'));
  const script = `
    const loaded = () => Object.keys(require.cache).some((k) => k.includes('/prom-client/'));
    const out = [];
    require(${lib}); out.push(loaded());
    const { LmkMetrics } = require(${mod}); out.push(loaded());
    new LmkMetrics({ psi: false }); out.push(loaded());
    console.log(JSON.stringify(out));`;
  const child = track(spawn(process.execPath, [...loader, '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] }));
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
  const r = { code, stdout, stderr };
  t.equal(r.code, 0, r.stderr);
  t.same(JSON.parse(r.stdout), [false, false, true], 'library: no; metrics module: no; first LmkMetrics: yes');
});

t.test('the textfile is replaced atomically: a reader polling it sees only whole documents', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'pidfd-metrics-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'pidfd-lmk.prom');
  const stop = join(dir, 'stop');
  const m = new LmkMetrics({ psi: false });
  const written = new Set<string>();
  const hash = (s: string): string => createHash('sha256').update(s).digest('hex');
  written.add(hash(await writeMetricsFile(m, path)));
  // The reader: another process reading the file as fast as it can until told to stop, then once more.
  const reader = `
    const fs = require('fs'), crypto = require('crypto');
    const [path, stop] = process.argv.slice(1);
    const seen = new Map(); let reads = 0, missing = 0;
    const once = () => {
      try {
        const h = crypto.createHash('sha256').update(fs.readFileSync(path, 'utf8')).digest('hex');
        reads++; seen.set(h, (seen.get(h) || 0) + 1);
      } catch (e) { if (e.code !== 'ENOENT') throw e; missing++; }
    };
    once(); console.log('reading');
    while (!fs.existsSync(stop)) once();
    once();
    console.log(JSON.stringify({ reads, missing, seen: [...seen.keys()] }));`;
  const child = track(spawn(process.execPath, ['-e', reader, path, stop], { stdio: ['ignore', 'pipe', 'inherit'] }));
  let out = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  await until(() => out.includes('reading'), 'the reader reading');
  const REWRITES = 400;
  for (let i = 0; i < REWRITES; i++) {
    // Each document differs from the last (and grows): a torn one would not hash like any written.
    m.record({ event: 'kill', triggered: ['memory'], killMode: 'process', killed: [{}], bytesFreed: i * 4096 });
    m.record({ event: 'error', code: `ERR_TEST_${i}` });
    written.add(hash(await writeMetricsFile(m, path)));
  }
  writeFileSync(stop, '');
  await new Promise((resolve) => child.once('close', resolve));
  const r = JSON.parse(out.split('\n')[1]) as { reads: number; missing: number; seen: string[] };
  t.equal(written.size, REWRITES + 1, `${REWRITES + 1} distinct documents written`);
  t.equal(r.missing, 0, 'the file never went missing');
  t.equal(
    r.seen.filter((h) => !written.has(h)).length,
    0,
    `${r.reads} reads, ${r.seen.length} distinct documents seen, each one written whole`,
  );
  t.ok(r.seen.includes([...written].pop()!), 'the last read saw the last document');
  t.same(readdirSync(dir).sort(), ['pidfd-lmk.prom', 'stop'], 'no temporary file left behind');
  checkPromtool(t, readFileSync(path, 'utf8'), 'the textfile');
});

t.test('startMetricsFile rewrites the file until stopped; a failed write goes to onError', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'pidfd-metrics-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'lmk.prom');
  const m = new LmkMetrics({ psi: false });
  const errors: Error[] = [];
  const w = startMetricsFile(m, path, 100, (e) => errors.push(e));
  await until(() => existsSync(path), 'the first write');
  m.record({ event: 'kernel-oom', count: 3 });
  await until(() => readFileSync(path, 'utf8').includes('pidfd_lmk_kernel_oom_kills_total 3'), 'a later write');
  await w.stop();
  t.same(errors, []);
  t.ok(existsSync(path), 'the file stays after stop()');
  const bad = startMetricsFile(m, join(dir, 'no-such-dir', 'lmk.prom'), 100, (e) => errors.push(e));
  await until(() => errors.length > 0, 'the failed write reported');
  await bad.stop();
  t.equal((errors[0] as NodeJS.ErrnoException).code, 'ENOENT');
});

t.test('bad input', async (t) => {
  const m = new LmkMetrics({ psi: false });
  t.same(parseListenAddress('127.0.0.1:9101'), { host: '127.0.0.1', port: 9101 });
  t.same(parseListenAddress('[::1]:0'), { host: '::1', port: 0 });
  t.same(parseListenAddress(':9101'), { host: undefined, port: 9101 });
  t.throws(() => void serveMetrics(m, 'localhost'), { name: 'TypeError', code: 'ERR_INVALID_ARG_VALUE' });
  t.throws(() => parseListenAddress('127.0.0.1:70000', 'metrics'), {
    code: 'ERR_INVALID_ARG_VALUE',
    message: /'metrics' has a port above 65535. Received type string \('127\.0\.0\.1:70000'\)/,
  });
  t.throws(() => void serveMetrics({} as LmkMetrics, ':0'), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' });
  t.throws(() => new LmkMetrics({ headroom: 3 as never }), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' });
  t.throws(() => new LmkMetrics({ psi: { cgroup: 1 as never } }), { code: 'ERR_INVALID_ARG_TYPE' });
  t.throws(() => startMetricsFile(m, '/tmp/x.prom', 10), { name: 'RangeError', code: 'ERR_OUT_OF_RANGE' });
  await t.rejects(writeMetricsFile(m, ''), { code: 'ERR_INVALID_ARG_TYPE' });
  const a = await serveMetrics(m, '127.0.0.1:0');
  t.teardown(() => void a.close());
  await t.rejects(serveMetrics(m, `127.0.0.1:${(a.address() as AddressInfo).port}`), { code: 'EADDRINUSE' });
});
