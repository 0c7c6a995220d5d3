// Reads the TAP that test/runtimes/core.mjs prints: its top-level points and its summary.
export interface Point {
  ok: boolean;
  name: string;
  skip: boolean;
  diag: string;
}

export function parsePoints(out: string): { points: Point[]; summary: string | undefined } {
  const points: Point[] = [];
  let summary: string | undefined;
  for (const line of out.split('\n')) {
    const m = /^(ok|not ok) \d+ - (.*?)( # SKIP .*)?$/.exec(line);
    if (m) points.push({ ok: m[1] === 'ok', name: m[2], skip: m[3] !== undefined, diag: '' });
    else if (line.startsWith('# { total:')) summary = line;
    else if (line.startsWith('  ') && points.length > 0) points[points.length - 1].diag += `${line}\n`;
  }
  return { points, summary };
}
