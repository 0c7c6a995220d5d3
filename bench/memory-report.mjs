// The memory parts of `npm run bench`: process_mrelease at 1, 4 and 8 GiB in three scenarios
// (mrelease.mjs), and the low-memory killer's pressure onset → decision, kernel trigger against polling (lmk.mjs).
// run.mjs calls these; `node bench/run.mjs --only memory` runs just them and replaces their sections of
// RESULTS.md in place (between the section markers), leaving the rest of the file as it was.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { BENCH, fmt, runScript, spliceSections } from './lib.mjs';

/** Runs the memory benchmarks; `log` prints progress. */
export async function runMemoryParts(quick, log) {
  const sizes = quick ? [512] : [1024, 4096, 8192];
  const trials = quick ? 1 : 3;
  const mrelease = [];
  for (const mib of sizes) {
    log(`memory: ${mib} MiB victims, ${trials} trial(s) per side and scenario, with and without release() ...`);
    mrelease.push(await runScript('mrelease.mjs', [String(mib), String(trials)]));
  }
  log(`lmk: pressure onset -> kill decision, trigger against poll, ${quick ? 2 : 6} trials per mode ...`);
  const lmk = await runScript('lmk.mjs', [String(quick ? 2 : 6)]);
  return { mrelease, lmk };
}

const LABEL = {
  idle: 'machine otherwise idle',
  busy: "victim's CPU shared with 3 busy processes",
  starved: 'as busy, and the victim at nice 19 (starved)',
};

/** The RESULTS.md sections, each wrapped in markers so that --only can replace them. */
export function memorySections({ mrelease, lmk }) {
  const out = [
    '<!-- section:memory -->',
    "## Memory back after SIGKILL, with and without `release()` (the victim's own memory cgroup)",
    '',
  ];
  const runs = mrelease.filter((m) => !m.skipped);
  if (runs.length === 0) out.push(`(skipped: ${mrelease[0]?.skipped ?? 'not run'})`);
  else {
    const LIMIT_MS = 20_000;
    const cell = (side) => {
      const capped = side.freedMsAll.filter((x) => x === null).length;
      return capped > 0
        ? `≥ ${fmt(side.freedMs)} (${capped} of ${side.trials} still not freed at ${LIMIT_MS / 1000} s)`
        : fmt(side.freedMs);
    };
    out.push(
      `| victim | scenario | | trials | freed ms (≤ ${runs[0].freedThreshold * 100}% left), median ` +
        '| half freed ms | release() call ms | release() returned true |',
      '| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: |',
    );
    for (const m of runs) {
      for (const [name, sc] of Object.entries(m.scenarios)) {
        out.push(
          `| ${m.mib / 1024} GiB | ${LABEL[name] ?? name} | kill only | ${sc.without.trials} | ` +
            `${cell(sc.without)} | ${fmt(sc.without.halfMs)} | | |`,
          `| | | kill, then \`release()\` | ${sc.with.trials} | ${cell(sc.with)} | ${fmt(sc.with.halfMs)} | ` +
            `${fmt(sc.with.releaseCallMs)} | ${sc.with.releasedTrue} of ${sc.with.trials} |`,
        );
      }
    }
    out.push('', '### Verdict', '');
    for (const m of runs) {
      const parts = Object.entries(m.scenarios).map(([name, sc]) => {
        const capped = sc.without.freedMsAll.some((x) => x === null) ? '≥ ' : '';
        return (
          `${name}: ${fmt(sc.without.freedMs)} ms without, ${fmt(sc.with.freedMs)} ms with release() ` +
          `(without ÷ with: ${capped}${fmt(sc.without.freedMs / sc.with.freedMs, 1)}×)`
        );
      });
      out.push(`- ${m.mib / 1024} GiB: ${parts.join('; ')}.`);
    }
    out.push(
      '- On an idle machine the victim frees its memory itself as fast as release() can: the two sides are within ' +
        'the noise of this shared machine (release() may also return false there, when the victim detached its ' +
        'memory first). process_mrelease matters when the victim cannot run: the starved rows are the case a ' +
        'low-memory killer meets, when the whole machine is short of memory and CPU. Capped rows (≥) had not freed ' +
        'their memory when the trial gave up.',
      '',
      '### How it is measured',
      '',
      '- `bench/mrelease.mjs`: each victim (`bench/helper.c hog`) touches its memory inside a fresh cgroup v1 memory ' +
        "cgroup; that cgroup's memory.usage_in_bytes is read every ~50 µs after the kill (sleeping in between, so " +
        'the reader takes no CPU from the exiting victim). MemAvailable is not used: freed pages sit on per-CPU ' +
        'lists for a while. Trials alternate ABBA. "Busy" pins the victim and 3 busy processes to one CPU and the ' +
        'benchmark to another; "starved" also renices the victim to 19. One victim at a time, and only with its size ' +
        '+ 4 GiB available. A trial gives up at 20 s.',
    );
  }
  out.push(
    '<!-- /section:memory -->',
    '',
    '<!-- section:lmk -->',
    '## Low-memory killer: pressure onset → kill decision',
    '',
  );
  if (lmk.skipped) out.push(`(skipped: ${lmk.skipped})`);
  else {
    out.push(
      `| PSI mode | trials | decided | median ms | min ms | max ms | idle CPU ms in ${lmk.idleSeconds} s |`,
      '| --- | ---: | ---: | ---: | ---: | ---: | ---: |',
      `| kernel trigger (unprivileged, ${lmk.window / 1000} s window) | ${lmk.trigger.trials} | ` +
        `${lmk.trigger.decided} | ${fmt(lmk.trigger.medianMs, 0)} | ${fmt(lmk.trigger.minMs, 0)} | ` +
        `${fmt(lmk.trigger.maxMs, 0)} | ${fmt(lmk.idle.trigger?.cpuMs)} |`,
      `| poll the totals every ${lmk.pollMs} ms | ${lmk.poll.trials} | ${lmk.poll.decided} | ` +
        `${fmt(lmk.poll.medianMs, 0)} | ${fmt(lmk.poll.minMs, 0)} | ${fmt(lmk.poll.maxMs, 0)} | ` +
        `${fmt(lmk.idle.poll?.cpuMs)} |`,
      '',
      '### Verdict',
      '',
      `- With a threshold of ${lmk.threshold} ms in ${lmk.window / 1000} s, ` +
        `the killer decided ${fmt(lmk.trigger.medianMs, 0)} ms after onset with the kernel trigger and ` +
        `${fmt(lmk.poll.medianMs, 0)} ms when polling every ${lmk.pollMs} ms. An unprivileged trigger ` +
        "(no CAP_SYS_RESOURCE, as here) is evaluated only on the kernel's 2 s averaging tick, and that tick is " +
        're-armed only when the group becomes busy: here the event came ' +
        `${fmt(lmk.trigger.minMs, 0)}-${fmt(lmk.trigger.maxMs, 0)} ms after onset, far more than the threshold. ` +
        "A privileged trigger is evaluated by the kernel's real-time poller instead. Polling decides within one " +
        `interval of the threshold being reached and costs ${fmt(lmk.idle.poll?.cpuMs)} ms CPU ` +
        `per ${lmk.idleSeconds} s idle against ${fmt(lmk.idle.trigger?.cpuMs)} ms for the trigger.`,
      '',
      '### How it is measured',
      '',
      '- `bench/lmk.mjs`: a cgroup v2 group of our own holds a sleeping candidate. At onset two busy processes ' +
        'pinned to one CPU join the group, so some task in it always waits (CPU pressure: the one PSI resource this ' +
        "machine can drive on demand without swap; the killer's path is the same for memory). A fresh " +
        "`LowMemoryKiller` (dryRun) watches the group's cpu.pressure; time from the onset to its `kill` event. Modes " +
        'alternate ABBA; the group drains between trials. Idle CPU: one fresh process holding one watcher on the ' +
        'quiet group.',
    );
  }
  out.push('<!-- /section:lmk -->');
  return out;
}

// node bench/memory-report.mjs   re-renders the sections from bench/results-memory.json into RESULTS.md
if (process.argv[1] && import.meta.url === new URL(`file://${process.argv[1]}`).href) {
  const data = JSON.parse(readFileSync(join(BENCH, 'results-memory.json'), 'utf8'));
  spliceSections(['memory', 'lmk'], memorySections(data));
}
