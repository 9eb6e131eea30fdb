/** What the CLI prints: the one-line summary, the original's breakdown table, the JSON object. */
import type { RunResult } from '../run.js';
import { version } from '../version.js';

export function summary(r: RunResult): string {
  const sizes = r.sizes.map((t) => t.join(',')).join('/');
  const ranks = r.stages.every((s) => s.ranks === r.procs) ? `${r.procs} ranks per stage` : `ranks ${r.stages.map((s) => s.ranks).join(',')}`;
  const how = r.transport === 'threads' ? ` (${r.threads} threads)` : `, launch ${r.launch} (${r.launchReason})`;
  const shape = (f: { shape: number[] }) => `[${f.shape.join(',')}]`;
  const fields = r.stages.some((st) => st.fields)
    ? r.stages.map((st) => `${st.name}: ${st.fields!.map((f) => `${f.name} ${f.dtype} ${shape(f)}${f.to ? ' to all' : ''}`).join(', ')}`).join('; ')
    : undefined;
  return [
    `ring      ${r.stages.map((s) => s.name).join(' -> ')}, ${ranks}, ${fields ? 'fields' : `sizes ${sizes}`}`,
    ...(fields ? [`fields    ${fields} (per rank)`] : []),
    `run       ${r.iterations} iterations, transport ${r.transport}${how}, c-backend ${r.cBackend}${r.transport === 'mpi' ? `, wire ${r.wire}` : ''}`,
    ...(r.mpi ? [`mpi       ${r.mpi === 'mpich' ? 'MPICH' : 'Open MPI'} (${r.mpiReason})`] : []),
    `checksum  ${r.checksum}`,
    ...(r.stages.some((st) => st.hosts.some((h) => h !== r.stages[0].hosts[0])) ? [`hosts     ${r.stages.map((st) => `${st.name}: ${st.hosts.map((h, k) => `${k}@${h}`).join(' ')}`).join(', ')}`] : []),
    ...(r.resumedFrom ? [`resumed   from iteration ${r.resumedFrom}: ${r.iterations - r.resumedFrom} iterations run now`] : []),
    ...(r.checkpoints?.last ? [`checkpoint ${r.checkpoints.last.path} (iteration ${r.checkpoints.last.iterations}; ${r.checkpoints.written} written by this run)`] : []),
    ...(r.trace ? [`trace     ${r.trace.file} (${r.trace.events} events; open in https://ui.perfetto.dev or chrome://tracing)`] : []),
  ].join('\n');
}

/**
 * A duration the way hyperfine prints one: in the unit that fits (µs, ms, s) with three
 * significant digits, e.g. 0.000412 -> "412 µs", 0.0123 -> "12.3 ms", 2.5 -> "2.50 s".
 */
export function formatTime(seconds: number): string {
  const units: [string, number][] = [
    ['µs', 1e-6],
    ['ms', 1e-3],
    ['s', 1],
  ];
  for (const [i, [unit, scale]] of units.entries()) {
    const v = seconds / scale;
    const digits = v >= 100 ? 0 : v >= 10 ? 1 : 2;
    const text = v.toFixed(digits);
    // 999.7 µs rounds to "1000": that is the next unit's "1.00".
    if (Number(text) < 1000 || i === units.length - 1) return `${text} ${unit}`;
  }
  throw new Error('unreachable');
}

/**
 * The original CommLoop's "Default setup breakdown", same rows, readable: each time in
 * the unit that fits, and the median iteration with the range of all iterations.
 */
export function breakdown(r: RunResult): string {
  const ran = r.iterations - r.resumedFrom;
  const t = (s: number, isIteration = true) => (isIteration && ran === 0 ? '-' : formatTime(s));
  const rows: [string, string, string][] = [
    ['Part of code', 'Time', 'Range (min … max)'],
    ['Start workers', t(r.startS, false), ''],
    ['First loop iter', t(r.firstIterS), ''],
    ['Last loop iter', t(r.lastIterS), ''],
    ['Mean iteration', t(r.meanIterS), ''],
    ['Median iteration', t(r.medianIterS), ran ? `${formatTime(r.minIterS)} … ${formatTime(r.maxIterS)}` : ''],
    ['Total', t(r.totalS, false), ''],
  ];
  const w = [0, 1, 2].map((c) => Math.max(...rows.map((row) => row[c].length)));
  const line = ([a, b, c]: [string, string, string]) => `| ${a.padEnd(w[0])} | ${b.padStart(w[1])} | ${c.padEnd(w[2])} |`;
  return [line(rows[0]), `| ${'-'.repeat(w[0])} | ${'-'.repeat(w[1])} | ${'-'.repeat(w[2])} |`, ...rows.slice(1).map(line)].join('\n');
}

/**
 * Where the time goes, per stage (--breakdown): one row per part of each stage's step and
 * one for the hub's own time, median and p95 per iteration and the median's share of the
 * median iteration.
 */
export function stageBreakdown(r: RunResult): string {
  const b = r.breakdown;
  if (!b) return '';
  const pct = (share: number) => `${(share * 100).toFixed(1)}%`;
  const rows: string[][] = [['Stage', 'Part', 'Median', 'p95', 'Share', '']];
  for (const st of b.stages) {
    const bytes = r.stages.find((x) => x.name === st.name)?.bytes;
    rows.push([st.name, 'scatter', formatTime(st.scatter.medianS), formatTime(st.scatter.p95S), pct(st.scatter.share), bytes ? `${bytes.in} B a rank` : '']);
    if (st.compute) {
      const ranks = st.rankComputeS!.length > 1 ? ` (ranks' medians: ${st.rankComputeS!.map(formatTime).join(', ')})` : '';
      rows.push([st.name, 'compute', formatTime(st.compute.medianS), formatTime(st.compute.p95S), pct(st.compute.share), `slowest: rank ${st.compute.slowestRank}${ranks}`]);
    } else {
      rows.push([st.name, 'compute', '-', '-', '-', 'the stage reports no times: its compute is in its gather']);
    }
    rows.push([st.name, 'gather', formatTime(st.gather.medianS), formatTime(st.gather.p95S), pct(st.gather.share), bytes ? `${bytes.out} B a rank` : '']);
  }
  rows.push(['hub', 'own', formatTime(b.hub.medianS), formatTime(b.hub.p95S), pct(b.hub.share), 'between steps']);
  const w = rows[0].map((_, c) => Math.max(...rows.map((row) => row[c].length)));
  const right = [false, false, true, true, true, false];
  const line = (row: string[]) => `| ${row.map((v, c) => (right[c] ? v.padStart(w[c]) : v.padEnd(w[c]))).join(' | ')} |`;
  const kept = `${b.iterations} iteration${b.iterations === 1 ? '' : 's'}${b.every > 1 ? `, every ${b.every}th` : ''}${b.dropped ? `, the newest (${b.dropped} older dropped)` : ''}`;
  return [
    `Per stage, per iteration (${kept}; median iteration ${formatTime(b.iteration.medianS)}):`,
    line(rows[0]),
    `| ${w.map((n) => '-'.repeat(n)).join(' | ')} |`,
    ...rows.slice(1).map(line),
  ].join('\n');
}

/** The result without the final array, with the package's version first. */
export function toJson(r: RunResult): string {
  const { final: _final, ...rest } = r;
  return JSON.stringify({ version, ...rest });
}

/** A one-line progress bar for a TTY; the caller decides when to show it. */
export function progressLine(done: number, total: number, width = 30): string {
  const filled = Math.round((done / total) * width);
  return `\r[${'#'.repeat(filled)}${' '.repeat(width - filled)}] ${done}/${total}`;
}
