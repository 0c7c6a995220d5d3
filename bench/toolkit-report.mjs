// The process-manager toolkit's part of `npm run bench`: runs bench/terminate.mjs and bench/killtree.mjs and
// renders their section of bench/RESULTS.md. Kept apart so bench/run.mjs only calls two functions.
import { fmt, median, runScript } from './lib.mjs';

const whole = (x) => fmt(x, 0); // ms and process counts

/** Runs both toolkit benchmarks; quick: fewer processes and rounds. */
export async function runToolkit(quick, log) {
  const n = quick ? 50 : 200;
  log(`terminate: ${n} processes honouring SIGTERM + ${n} ignoring it, pidfd against tree-kill + polling ...`);
  const terminate = await runScript('terminate.mjs', [String(n), '1000', quick ? '1' : '3']);
  const size = quick ? 100 : 500;
  log(`killTree: ${size}-process trees, pidfd against tree-kill ...`);
  const killtree = await runScript('killtree.mjs', [String(size), quick ? '1' : '2']);
  return { terminate, killtree };
}

/** The "Process-manager toolkit" section of RESULTS.md. */
export function toolkitSection({ terminate, killtree }) {
  const T = terminate;
  const label = {
    pidfd: '`terminate(pid, { timeout })` (pidfd: signal, wait, escalate, release)',
    poll: '`process.kill(pid, sig)`, then `kill(pid, 0)` every 100 ms',
    pm2: '`tree-kill` + `kill(pid, 0)` every 100 ms (as pm2 stops a process)',
  };
  const rows = ['pidfd', 'poll', 'pm2']
    .map((mode) => {
      const runs = T.runs.filter((r) => r.mode === mode);
      if (runs.length === 0) return undefined;
      const m = (f) => median(runs.map(f));
      return (
        `| ${label[mode]} | ${runs.length} | ${whole(m((r) => r.wallMs))} | ${fmt(
          m((r) => r.honourUs.p50 / 1000),
          1,
        )} | ` +
        `${whole(m((r) => r.ignoreUs.p50 / 1000))} | ${whole(m((r) => r.cpuMs))} | ` +
        `${whole(m((r) => r.childCpuMs))} | ` +
        `${whole(m((r) => r.escalatedHonour))} | ${whole(m((r) => r.alive))} |`
      );
    })
    .filter(Boolean);
  const K = killtree;
  const krows = [];
  for (const grow of [false, true]) {
    for (const mode of ['pidfd', 'tree-kill']) {
      const runs = K.runs.filter((r) => r.mode === mode && r.grow === grow);
      if (runs.length === 0) continue;
      const m = (f) => median(runs.map(f));
      const how =
        mode === 'pidfd'
          ? '`await killTree(root)`'
          : '`tree-kill` (SIGTERM), then `kill(pid, 0)` polling until its pids are gone';
      krows.push(
        `| ${grow ? 'growing' : 'static'} | ${how} | ` +
          `${runs.length} | ${whole(m((r) => r.before))} | ${whole(m((r) => r.wallMs))} | ` +
          `${whole(m((r) => r.cpuMs))} | ${whole(m((r) => r.survivors))} |`,
      );
    }
  }
  const med = (mode, f) => median(T.runs.filter((r) => r.mode === mode).map(f));
  const kmed = (mode, grow, f) => median(K.runs.filter((r) => r.mode === mode && r.grow === grow).map(f));
  return [
    '## Process-manager toolkit: terminate and killTree',
    '',
    `### Stopping ${T.n} processes that honour SIGTERM and ${T.n} that ignore it ` +
      `(grace ${T.graceMs} ms; median of ${T.rounds})`,
    '',
    'All at once; the processes are children of a C reaper (bench/toolkit-helper.c), so for the benchmark they are ' +
      'any processes addressed by pid. Times are from the start until the mechanism knows each process is gone (all ' +
      'are started in one synchronous batch, so the times include starting the others). CPU: this process, and the ' +
      'processes it started and reaped (tree-kill runs `ps`).',
    '',
    '| mechanism | rounds | wall ms, all gone | honouring: p50 ms to known gone | ignoring: p50 ms | CPU ms ' +
      '| child CPU ms | honouring processes that got SIGKILL | left alive |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
    ...rows,
    '',
    `### Killing a ${K.n}-process tree (3 children per member; median of the rounds)`,
    '',
    'The tree hangs below a C subreaper that counts, 300 ms after the mechanism reports completion, every process of ' +
      'the tree still alive (survivors; orphans are re-parented to it). "growing": the root also forks a new ' +
      `long-lived child every 50 ms (up to 400) while it runs, so the tree grows during the kill; it has ` +
      `${K.growN ?? K.n} members besides, because tree-kill runs one \`ps\` per process ` +
      'and needs tens of seconds on ~1,000.',
    '',
    '| tree | mechanism | rounds | processes when the kill starts | wall ms | CPU ms | survivors |',
    '| --- | --- | ---: | ---: | ---: | ---: | ---: |',
    ...krows,
    '',
    '### Verdict (toolkit)',
    '',
    `- terminate: ${2 * T.n} processes stopped in ${whole(med('pidfd', (r) => r.wallMs))} ms ` +
      `(the ${T.graceMs} ms grace included) with ${whole(med('pidfd', (r) => r.cpuMs))} ms CPU; ` +
      'processes honouring SIGTERM were known gone after ' +
      `${fmt(
        med('pidfd', (r) => r.honourUs.p50 / 1000),
        1,
      )} ms (p50) against ${fmt(
        med('poll', (r) => r.honourUs.p50 / 1000),
        1,
      )} ms ` +
      `with 100 ms polling and ${whole(med('pm2', (r) => r.honourUs.p50 / 1000))} ms with tree-kill + polling, which ` +
      `spent ${whole(med('pm2', (r) => r.childCpuMs))} ms CPU in \`ps\` and sent SIGKILL to ` +
      `${whole(med('pm2', (r) => r.escalatedHonour))} processes that would have honoured SIGTERM ` +
      '(their SIGTERM came after the grace period).',
    `- killTree (static ${K.n}): ${whole(kmed('pidfd', false, (r) => r.wallMs))} ms ` +
      `against ${whole(kmed('tree-kill', false, (r) => r.wallMs))} ms for tree-kill + polling; ` +
      `growing tree: ${whole(kmed('pidfd', true, (r) => r.survivors))} survivors with killTree against ` +
      `${whole(kmed('tree-kill', true, (r) => r.survivors))} with tree-kill.`,
    '',
  ];
}
