// The thread-leader-exited fixture (test/fixtures/leader-exit.c): a live process whose main thread has called
// pthread_exit while another thread holds `mib` MiB of anonymous memory. Dies with the test process.
import { ChildProcess, spawn } from 'node:child_process';
import { Lines } from './lines';
import { fixture, track } from './procs';

export interface LeaderExited {
  proc: ChildProcess;
  pid: number;
}

/** Starts the fixture (moved into each cgroup.procs file given before it allocates) and waits for "ready". */
export async function leaderExited(mib: number, cgroupProcs: string[] = []): Promise<LeaderExited> {
  const proc = track(
    spawn(fixture('leader-exit'), [String(mib), ...cgroupProcs], { stdio: ['pipe', 'pipe', 'inherit'] }),
  );
  const lines = new Lines(proc.stdout!);
  const line = await lines.waitFor((l) => l.startsWith('ready') || l.startsWith('error'), 'ready', 60_000);
  if (!line.startsWith('ready')) throw new Error(`leader-exit: ${line}`);
  return { proc, pid: Number(line.split(' ')[1]) };
}
