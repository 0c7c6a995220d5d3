// pidfd.reclaim() on real processes: a child's large file-backed mapping leaves memory;
// anonymous memory cannot here (no swap on this machine: MADV_PAGEOUT has nowhere to write anonymous pages, so they
// stay resident, and the test says so); the special mappings are never advised; a mapping that disappears while
// reclaim() runs is reported and worked around.
import t from 'tap';
import { closeSync, fsyncSync, mkdtempSync, openSync, readFileSync, rmSync, statfsSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PidFd } from '../../lib/index';
import { Worker } from '../helpers/mem-helpers';

const MIB = 1024 * 1024;
const FILE_MIB = 64;
// The data file must be on a disk filesystem: tmpfs pages are swap-backed and cannot be paged out without swap.
const TMPFS_MAGIC = 0x01021994;
const base =
  [tmpdir(), join(__dirname, '..', '..', 'build')].find((d) => statfsSync(d).type !== TMPFS_MAGIC) ?? tmpdir();
const dir = mkdtempSync(join(base, 'pidfd-reclaim-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const swapOn = readFileSync('/proc/swaps', 'utf8').trim().split('\n').length > 1;

function dataFile(name: string): string {
  const file = join(dir, name);
  const fd = openSync(file, 'w');
  const chunk = Buffer.alloc(MIB, 0x5a);
  for (let i = 0; i < FILE_MIB; i++) writeSync(fd, chunk);
  fsyncSync(fd); // clean pages: droppable without writeback
  closeSync(fd);
  return file;
}

const workers: Worker[] = [];
t.teardown(async () => {
  for (const w of workers) await w.kill();
});
async function worker(): Promise<{ w: Worker; p: PidFd }> {
  const w = await new Worker().ready();
  workers.push(w);
  const p = PidFd.fromChild(w.proc);
  t.teardown(() => p.close());
  return { w, p };
}

t.test('pageout drops a large file mapping from RSS', async (t) => {
  const { w, p } = await worker();
  await w.ask(`f ${dataFile('a')}`, 'file');
  const before = p.memory();
  t.ok(before.file >= (FILE_MIB - 2) * MIB, `file RSS ${(before.file / MIB).toFixed(1)} MiB after reading the mapping`);
  const r = p.reclaim();
  t.equal(r.advice, 'pageout');
  t.equal(r.mapsChanged, false);
  t.equal(r.retries, 0);
  t.ok(r.ranges > 5, `${r.ranges} mappings advised`);
  t.ok(r.advised >= FILE_MIB * MIB, `advised ${(r.advised / MIB).toFixed(1)} MiB`);
  t.equal(r.rssBefore, before.rss);
  const after = p.memory();
  t.ok(
    r.rssBefore - r.rssAfter >= (FILE_MIB - 4) * MIB,
    `rss ${(r.rssBefore / MIB).toFixed(1)} -> ${(r.rssAfter / MIB).toFixed(1)} MiB`,
  );
  t.ok(after.file < 8 * MIB, `file RSS after: ${(after.file / MIB).toFixed(1)} MiB`);
});

t.test('anonymous memory: advised, but it stays resident without swap', async (t) => {
  const { w, p } = await worker();
  await w.ask('a 64', 'anon');
  const before = p.memory();
  const r = p.reclaim({ kinds: ['anon'] });
  t.ok(r.advised >= 64 * MIB, 'the anonymous mappings were advised');
  const after = p.memory();
  if (swapOn) {
    t.comment('swap is on here: anonymous pages may leave memory; not asserting that they stay');
  } else {
    t.ok(
      after.anon >= before.anon - 2 * MIB,
      `no swap: anon stays (${(before.anon / MIB).toFixed(1)} -> ${(after.anon / MIB).toFixed(1)} MiB)`,
    );
  }
});

t.test('cold, kinds and filter choose what is advised', async (t) => {
  const { w, p } = await worker();
  const [, addr] = (await w.ask(`f ${dataFile('b')}`, 'file')).split(' ');
  const cold = p.reclaim({ advice: 'cold' });
  t.equal(cold.advice, 'cold');
  t.ok(cold.advised >= FILE_MIB * MIB);
  t.ok(p.memory().file >= (FILE_MIB - 2) * MIB, 'cold only deactivates: the pages stay until reclaim needs them');
  const seen: string[] = [];
  const one = p.reclaim({
    kinds: ['file'],
    filter: (m) => {
      seen.push(m.kind);
      return m.start === BigInt(addr);
    },
  });
  t.ok(
    seen.every((k) => k === 'file'),
    'the filter sees only the chosen kinds',
  );
  t.equal(one.ranges, 1);
  t.equal(one.advised, FILE_MIB * MIB, 'exactly the one mapping was advised');
});

t.test('special mappings are never advised (the kernel refuses them)', async (t) => {
  const { p } = await worker();
  const maps = p.maps();
  const vvar = maps.find((m) => m.path === '[vvar]');
  const vsyscall = maps.find((m) => m.path === '[vsyscall]');
  // What reclaim() avoids: one such range fails the whole process_madvise call.
  if (vvar)
    t.throws(() => p.madvise('pageout', [{ address: vvar.start, length: vvar.end - vvar.start }]), { code: 'EINVAL' });
  if (vsyscall) {
    let code: string | undefined;
    try {
      p.madvise('pageout', [{ address: vsyscall.start, length: vsyscall.end - vsyscall.start }]);
    } catch (err) {
      code = (err as NodeJS.ErrnoException).code;
    }
    t.equal(code, 'EFAULT', '[vsyscall] is refused');
  }
  const r = p.reclaim({ kinds: ['anon', 'file', 'special' as never] });
  t.equal(r.retries, 0, 'no range was refused');
  const specials = maps.filter((m) => m.kind === 'special').length;
  t.ok(specials > 0);
  t.equal(
    r.ranges,
    maps.filter((m) => m.kind === 'anon' || m.kind === 'file').length,
    'listing special changes nothing',
  );
});

t.test('a mapping unmapped while reclaim() runs: reported, and the rest is still advised', async (t) => {
  const { w, p } = await worker();
  const [, addr] = (await w.ask('a 32', 'anon')).split(' ');
  await w.ask(`f ${dataFile('c')}`, 'file');
  const target = BigInt(addr);
  let unmapped = false;
  const r = p.reclaim({
    filter: (m) => {
      if (!unmapped && m.start === target) {
        unmapped = true;
        // The worker unmaps its anonymous memory now, between our read of the maps and the process_madvise call.
        // (A pipe write from Node is attempted synchronously; then wait, synchronously, until the kernel shows it.)
        w.proc.stdin!.write('u\n');
        const nap = new Int32Array(new SharedArrayBuffer(4));
        for (let i = 0; i < 5000; i++) {
          if (!readFileSync(`/proc/${w.pid}/maps`, 'utf8').includes(`${target.toString(16)}-`)) break;
          Atomics.wait(nap, 0, 0, 1);
        }
      }
      return true;
    },
  });
  t.ok(unmapped);
  t.equal(r.mapsChanged, true, 'the change is reported');
  t.ok(r.retries >= 1, `${r.retries} re-plan(s) after the kernel refused the unmapped range`);
  t.ok(r.advised >= FILE_MIB * MIB, 'the mappings after the refused one were still advised');
  t.ok(r.rssBefore - r.rssAfter >= (FILE_MIB - 4) * MIB, 'and the file pages left');
});
