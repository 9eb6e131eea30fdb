/** What the CLI prints: the one-line summary, the original's breakdown table, the JSON object. */
import type { RunResult } from '../run.js';

export function summary(r: RunResult): string {
  const sizes = r.sizes.map((t) => t.join(',')).join('/');
  const ranks = r.stages.every((s) => s.ranks === r.procs) ? `${r.procs} ranks per stage` : `ranks ${r.stages.map((s) => s.ranks).join(',')}`;
  const how = r.transport === 'threads' ? ` (${r.threads} threads)` : r.launch === 'mpmd' ? ' (mpmd)' : '';
  return [
    `ring      ${r.stages.map((s) => s.name).join(' -> ')}, ${ranks}, sizes ${sizes}`,
    `run       ${r.iterations} iterations, transport ${r.transport}${how}, c-backend ${r.cBackend}`,
    `checksum  ${r.checksum}`,
  ].join('\n');
}

/** The original CommLoop's "Default setup breakdown", in seconds. */
export function breakdown(r: RunResult): string {
  const row = (part: string, s: number) => `| ${part.padEnd(16)} | ${s.toFixed(9).padStart(14)} |`;
  return [
    `| ${'Part of code'.padEnd(16)} | ${'Time (seconds)'.padStart(14)} |`,
    `| ${'-'.repeat(16)} | ${'-'.repeat(14)} |`,
    row('Start workers', r.startS),
    row('First loop iter', r.firstIterS),
    row('Last loop iter', r.lastIterS),
    row('Mean iteration', r.meanIterS),
    row('Median iteration', r.medianIterS),
    row('Total', r.totalS),
  ].join('\n');
}

export function toJson(r: RunResult): string {
  const { final: _final, ...rest } = r;
  return JSON.stringify(rest);
}

/** A one-line progress bar for a TTY; the caller decides when to show it. */
export function progressLine(done: number, total: number, width = 30): string {
  const filled = Math.round((done / total) * width);
  return `\r[${'#'.repeat(filled)}${' '.repeat(width - filled)}] ${done}/${total}`;
}
