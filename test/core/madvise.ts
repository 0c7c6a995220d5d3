// process_madvise on another process's memory: the byte count for every advice, ranges batched
// within the kernel's limits, errors with codes for wrong advice, unaligned and unmapped ranges, and an exited
// process. The target is a C fixture that maps known regions and prints their addresses.
import t from 'tap';
import { ChildProcess, spawn } from 'node:child_process';
import {
  closeSync,
  fsyncSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readSync,
  rmSync,
  statfsSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { constants, PidFd } from '../../lib/index';
import { native } from '../../lib/binding';
import { exited, fixture, track } from '../helpers/procs';

const PAGE = constants.PAGE_SIZE;
const BIG_PAGE = BigInt(PAGE);
const FILE_PAGES = 1024; // 4 MiB with 4 KiB pages
const bin = fixture('madv-child');
// The data file must live on a disk filesystem: tmpfs pages are swap-backed, and without swap pageout cannot drop
// them. Prefer the temp directory, else build/ in the repository.
const TMPFS_MAGIC = 0x01021994;
const onTmpfs = (path: string): boolean => statfsSync(path).type === TMPFS_MAGIC;
const base = [tmpdir(), join(__dirname, '..', '..', 'build')].find((d) => !onTmpfs(d)) ?? tmpdir();
const dir = mkdtempSync(join(base, 'pidfd-madv-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

interface Region {
  address: bigint;
  length: number;
}
interface Target {
  proc: ChildProcess;
  p: PidFd;
  pid: number;
  r: Record<'anon' | 'big' | 'file' | 'hole' | 'thp' | 'huge', Region>;
}

let files = 0;
const targets = new Set<Target>();

/** Starts the fixture on a fresh, fsync'ed (so clean, droppable) data file and reads its region list. */
async function start(): Promise<Target> {
  const file = join(dir, `data-${files++}`);
  const fd = openSync(file, 'w');
  const chunk = Buffer.alloc(PAGE * 64, 0x5a);
  for (let i = 0; i < FILE_PAGES / 64; i++) writeSync(fd, chunk);
  fsyncSync(fd);
  closeSync(fd);
  const proc = track(spawn(bin, [file], { stdio: ['ignore', 'pipe', 'inherit'] }));
  const r = await new Promise<Target['r']>((resolve, reject) => {
    let out = '';
    const onExit = (code: number | null, sig: string | null): void =>
      reject(new Error(`fixture died: ${code} ${sig}\n${out}`));
    proc.once('exit', onExit);
    proc.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (!out.includes('ready\n')) return;
      proc.off('exit', onExit);
      const regions: Record<string, Region> = {};
      for (const line of out.split('\n')) {
        const [name, addr, len] = line.split(' ');
        if (len !== undefined) regions[name] = { address: BigInt(addr), length: Number(len) };
      }
      resolve(regions);
    });
  });
  const target: Target = { proc, p: PidFd.fromChild(proc), pid: proc.pid!, r };
  targets.add(target);
  return target;
}

async function stop(target: Target): Promise<void> {
  target.p.close();
  target.proc.kill('SIGKILL');
  await exited(target.proc);
  targets.delete(target);
}
t.teardown(async () => {
  for (const target of targets) await stop(target);
});

/** Pages of [address, address + pages * PAGE) present in the target's page tables (/proc/<pid>/pagemap bit 63). */
function presentPages(pid: number, address: bigint, pages: number): number {
  const fd = openSync(`/proc/${pid}/pagemap`, 'r');
  try {
    const buf = Buffer.alloc(pages * 8);
    const n = readSync(fd, buf, 0, buf.length, Number((address / BIG_PAGE) * 8n));
    let present = 0;
    for (let i = 0; i < n / 8; i++) if (buf.readBigUInt64LE(i * 8) & (1n << 63n)) present++;
    return present;
  } finally {
    closeSync(fd);
  }
}

/** A field (in kB) of the /proc/<pid>/smaps entry of the mapping that contains `address`. */
function smapsField(pid: number, address: bigint, field: string): { kb: number; start: bigint; end: bigint } {
  const blocks = readFileSync(`/proc/${pid}/smaps`, 'utf8').split(/\n(?=[0-9a-f]+-[0-9a-f]+ )/);
  for (const block of blocks) {
    const [range] = block.split(' ', 1);
    const [start, end] = range.split('-').map((h) => BigInt(`0x${h}`));
    if (address < start || address >= end) continue;
    const m = new RegExp(`^${field}:\\s+(\\d+) kB$`, 'm').exec(block);
    if (!m) throw new Error(`no ${field} in smaps entry ${range}`);
    return { kb: Number(m[1]), start, end };
  }
  throw new Error(`no mapping contains 0x${address.toString(16)}`);
}

/** Single pages: every other page of `region`, `count` of them. */
function everyOtherPage(region: Region, count: number): { address: bigint; length: number }[] {
  return Array.from({ length: count }, (_, i) => ({
    address: region.address + BigInt(2 * i) * BIG_PAGE,
    length: PAGE,
  }));
}

function thpMode(): string {
  try {
    return /\[(\w+)\]/.exec(readFileSync('/sys/kernel/mm/transparent_hugepage/enabled', 'utf8'))![1];
  } catch {
    return 'never'; // no THP support at all
  }
}

function noSwap(): boolean {
  return readFileSync('/proc/swaps', 'utf8').trim().split('\n').length <= 1;
}

t.test('each advice returns the bytes advised', async (t) => {
  const target = await start();
  const { p, r } = target;
  t.equal(p.madvise('cold', [r.anon]), r.anon.length, 'cold over the anonymous region');
  t.equal(p.madvise('willneed', [r.file]), r.file.length, 'willneed over the file mapping');
  t.equal(p.madvise('willneed', [r.anon]), r.anon.length, 'willneed over the anonymous region');
  t.equal(p.madvise('pageout', [r.anon, r.file]), r.anon.length + r.file.length, 'pageout over two ranges: the sum');
  t.equal(p.madvise('cold', [{ address: r.anon.address, length: BigInt(8 * PAGE) }]), 8 * PAGE, 'a bigint length');
  t.equal(
    p.madvise('cold', [{ address: r.anon.address, length: 100 }]),
    100,
    'a length that is not a page multiple covers the partial page and counts as given',
  );
  t.equal(p.madvise('cold', []), 0, 'no ranges: nothing advised');
  t.equal(p.madvise('cold', [{ address: r.anon.address, length: 0 }]), 0, 'an empty range: nothing advised');

  // Collapse needs transparent huge pages: with THP 'never' the kernel refuses with EINVAL.
  const mode = thpMode();
  if (mode === 'never') {
    t.throws(
      () => p.madvise('collapse', [r.thp]),
      { code: 'EINVAL', syscall: 'process_madvise', errno: -22 },
      `THP is '${mode}': collapse is refused with EINVAL`,
    );
  } else {
    const before = smapsField(target.pid, r.thp.address, 'AnonHugePages').kb;
    if (mode !== 'always') t.equal(before, 0, `THP '${mode}': no huge page before the collapse`);
    t.equal(p.madvise('collapse', [r.thp]), r.thp.length, `THP '${mode}': collapse of an aligned 2 MiB region`);
    t.ok(smapsField(target.pid, r.thp.address, 'AnonHugePages').kb >= 2048, 'the region is now one huge page');
  }
  await stop(target);
});

t.test('many ranges are sent in batches and the total is right', async (t) => {
  const target = await start();
  const { p, r } = target;
  t.equal(constants.UIO_MAXIOV, 1024, 'at most 1024 ranges per call, so 3000 take three calls');
  const ranges = everyOtherPage(r.big, 3000);
  t.equal(p.madvise('cold', ranges), 3000 * PAGE, '3000 single pages (three batches of at most 1024)');
  t.equal(p.madvise('willneed', ranges), 3000 * PAGE, 'again with another advice');

  // One range larger than the per-call byte cap (INT_MAX rounded down to a page) is split across calls.
  t.ok(r.huge.length > 2 ** 31, 'the huge region is larger than one call can advise');
  t.equal(p.madvise('cold', [r.huge]), r.huge.length, '3 GiB + 3 pages in one range');
  t.equal(
    p.madvise('cold', [r.anon, r.huge, r.big]),
    r.anon.length + r.huge.length + r.big.length,
    'the huge range between two ordinary ones',
  );
  await stop(target);
});

t.test('an unmapped range stops the list: ENOMEM with the bytes advised before it', async (t) => {
  const target = await start();
  const { p, r } = target;
  const gap = { address: r.hole.address + BIG_PAGE, length: PAGE }; // the unmapped middle page of the hole
  const shape = { code: 'ENOMEM', errno: -12, syscall: 'process_madvise' };

  t.throws(() => p.madvise('cold', [gap]), { ...shape, bytesAdvised: 0 }, 'an unmapped page alone');
  t.throws(
    () => p.madvise('cold', [r.hole]),
    { ...shape, bytesAdvised: 0 },
    'a range with an unmapped page inside it counts nothing',
  );
  const err = t.throws(
    () =>
      p.madvise('cold', [
        { address: r.anon.address, length: 4 * PAGE },
        { address: r.file.address, length: 4 * PAGE },
        gap,
        { address: r.anon.address + 8n * BIG_PAGE, length: 4 * PAGE },
      ]),
    { ...shape, bytesAdvised: 8 * PAGE },
    'third of four ranges unmapped: the first two counted',
  ) as Error;
  t.match(err?.message, /^ENOMEM: .*, process_madvise$/, 'a Node-style message');

  // In the third batch of a long list: the two full batches before it and the part of the third before the gap.
  const ranges = everyOtherPage(r.big, 3000);
  ranges[2500] = gap;
  t.throws(() => p.madvise('cold', ranges), { ...shape, bytesAdvised: 2500 * PAGE }, 'range 2500 of 3000 unmapped');
  ranges[2500] = { address: r.big.address, length: PAGE };
  ranges[3] = gap;
  t.throws(() => p.madvise('pageout', ranges), { ...shape, bytesAdvised: 3 * PAGE }, 'range 3 of 3000 unmapped');

  t.throws(() => p.madvise('cold', [{ address: 0n, length: PAGE }]), { ...shape, bytesAdvised: 0 }, 'page zero');
  await stop(target);
});

t.test('wrong advice and unaligned ranges are refused', async (t) => {
  const target = await start();
  const { p, r } = target;
  for (const advice of ['dontneed', 'free', 'COLD', '', 'toString', 'constructor', '__proto__']) {
    t.throws(
      () => p.madvise(advice as 'cold', [r.anon]),
      { name: 'TypeError', code: 'ERR_INVALID_ARG_VALUE' },
      `advice '${advice}'`,
    );
  }
  t.throws(
    () => p.madvise(21 as unknown as 'cold', [r.anon]),
    { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' },
    'advice as a number (MADV_PAGEOUT)',
  );
  for (const offset of [1n, 8n, BIG_PAGE / 2n, BIG_PAGE - 1n]) {
    t.throws(
      () => p.madvise('cold', [{ address: r.anon.address + offset, length: PAGE }]),
      { name: 'TypeError', code: 'ERR_INVALID_ARG_VALUE', message: /ranges\[0\]\.address.*multiple of the page size/ },
      `address + ${offset} is not page-aligned`,
    );
  }
  t.throws(
    () => p.madvise('cold', [r.anon, { address: r.anon.address + 1n, length: PAGE }]),
    { code: 'ERR_INVALID_ARG_VALUE', message: /ranges\[1\]\.address/ },
    'the error names the range',
  );

  // Below the API the kernel refuses them too: advice process_madvise does not take, and unaligned starts.
  const raw = (addr: bigint, advice: number): number =>
    native.madvise(p.fd, BigUint64Array.from([addr, BIG_PAGE]), advice);
  t.equal(raw(r.anon.address, constants.MADV_COLD), PAGE, 'the raw call works with good arguments');
  t.equal(raw(r.anon.address, 4 /* MADV_DONTNEED */), -22, 'MADV_DONTNEED: EINVAL from the kernel');
  t.equal(raw(r.anon.address + 1n, constants.MADV_COLD), -22, 'an unaligned address: EINVAL from the kernel');
  await stop(target);
});

t.test('pageout drops the resident pages of a file mapping; anonymous pages need swap', async (t) => {
  const target = await start();
  const { p, r, pid } = target;
  const pages = r.file.length / PAGE;
  t.equal(pages, FILE_PAGES);
  const before = smapsField(pid, r.file.address, 'Rss');
  t.equal(before.start, r.file.address, 'the smaps entry is the file mapping');
  t.equal(before.end, r.file.address + BigInt(r.file.length));
  t.equal(before.kb, r.file.length / 1024, 'every page of the file is resident after the fixture read it');
  t.equal(presentPages(pid, r.file.address, pages), pages, 'and mapped');

  t.equal(p.madvise('pageout', [r.file]), r.file.length);
  const after = smapsField(pid, r.file.address, 'Rss').kb;
  if (onTmpfs(dir)) {
    t.comment(`the data file is on tmpfs (${dir}): its pages are swap-backed, not checked`);
  } else {
    t.ok(after < before.kb / 4, `Rss of the file mapping fell from ${before.kb} kB to ${after} kB`);
    t.ok(presentPages(pid, r.file.address, pages) < pages / 4, 'its pages are unmapped');
  }

  const anonPages = r.anon.length / PAGE;
  t.equal(presentPages(pid, r.anon.address, anonPages), anonPages, 'the anonymous region is resident');
  t.equal(p.madvise('pageout', [r.anon]), r.anon.length, 'pageout of anonymous memory reports its bytes');
  if (noSwap()) {
    t.equal(
      presentPages(pid, r.anon.address, anonPages),
      anonPages,
      'no swap here: anonymous pages cannot be paged out, so they all stay resident',
    );
  } else {
    t.ok(presentPages(pid, r.anon.address, anonPages) <= anonPages, 'with swap, some may have gone');
  }
  await stop(target);
});

t.test('an exited process: ESRCH with a code; a closed PidFd: ERR_PIDFD_CLOSED', async (t) => {
  const target = await start();
  const { p, r, proc } = target;
  t.equal(p.madvise('cold', [r.anon]), r.anon.length, 'works while it runs');
  t.equal(p.kill('SIGKILL'), true);
  const info = await p.waitExit();
  t.equal(info.signal, 'SIGKILL');
  const esrch = { code: 'ESRCH', errno: -3, syscall: 'process_madvise', message: /^ESRCH: / };
  t.throws(() => p.madvise('cold', [r.anon]), { ...esrch, bytesAdvised: 0 }, 'exited (zombie or reaped)');
  await exited(proc);
  t.throws(() => p.madvise('pageout', [r.file]), esrch, 'exited and reaped');
  t.throws(() => p.madvise('willneed', everyOtherPage(r.big, 3000)), { ...esrch, bytesAdvised: 0 }, 'a long list');

  p.close();
  t.throws(() => p.madvise('cold', [r.anon]), { code: 'ERR_PIDFD_CLOSED' }, 'closed');
  t.throws(() => p.madvise('cold', []), { code: 'ERR_PIDFD_CLOSED' }, 'closed, even with no ranges');
  t.throws(() => p.madvise('bogus' as 'cold', [r.anon]), { code: 'ERR_PIDFD_CLOSED' }, 'closed is reported first');
  await stop(target);
});
