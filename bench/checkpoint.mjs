#!/usr/bin/env node
/**
 * What checkpoints cost (issue 21): per checkpoint, the ring's pause (asking every stage for
 * its state, copying Array1, over MPI also putting it on the hub's channel) and the write
 * (on another thread or process, while the ring goes on), for the demo ring at N=2 and N=10
 * at the default sizes and for a stage keeping 1 MiB of state per rank; and a run with
 * `--checkpoint-every 100` against the same run without, at the default sizes, rounds
 * interleaved (the ratio is the median of the rounds' ratios of iteration time, start-up
 * excluded). Writes bench/results/checkpoint.jsonl, then docs/BENCHMARKS.md again (its
 * "Checkpoints" section; the rest from bench/results/latest.jsonl as it is).
 *   node bench/checkpoint.mjs [--quick]
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeReport } from './report.mjs';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const quick = process.argv.includes('--quick');
const master = join(root, 'dist', 'master.js');
const work = mkdtempSync(join(tmpdir(), 'commloop-bench-cp-'));
const out = join(root, 'bench', 'results', 'checkpoint.jsonl');
const lines = [];
const record = (o) => lines.push(JSON.stringify(o));

function run(args) {
  const r = spawnSync(process.execPath, [master, ...args, '--json'], { encoding: 'utf8', timeout: 600_000 });
  if (r.status !== 0) throw new Error(`${args.join(' ')}: exit ${r.status}: ${r.stderr}`);
  return JSON.parse(r.stdout);
}
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return (s[(s.length - 1) >> 1] + s[s.length >> 1]) / 2;
};
let n = 0;
const fresh = () => join(work, `cp${++n}`);

const big = join(work, 'big.json');
writeFileSync(big, JSON.stringify({ stages: [
  { name: 'model', kind: 'ts', ranks: 2, size: 8, module: join(root, 'bench', 'fixtures', 'big_state.mjs') },
  { name: 'c', kind: 'c', ranks: 2, size: 8, source: 'builtin:halfmean' },
] }));

// 1. The cost of one checkpoint: every 10 iterations, so a run takes several.
const costCases = [
  { ring: 'demo', ranks: 2, args: ['-p', '2'], iterations: quick ? 60 : 200 },
  { ring: 'demo', ranks: 10, args: ['-p', '10'], iterations: quick ? 20 : 60 },
  { ring: '1 MiB state per rank', ranks: 2, args: ['--pipeline', big, '-p', '2'], iterations: quick ? 200 : 2000 },
  { ring: '1 MiB state per rank', ranks: 10, args: ['--pipeline', big, '-p', '10'], iterations: quick ? 100 : 1000 },
];
for (const c of costCases) {
  for (const transport of ['mpi', 'threads']) {
    const r = run([...c.args, '--transport', transport, '-i', String(c.iterations), '--checkpoint', fresh(), '--checkpoint-every', '10']);
    const { pauseS, writeS, written } = r.checkpoints;
    record({ kind: 'cost', ring: c.ring, ranks: c.ranks, transport, iterations: c.iterations, written, pauseS, writeS, meanIterS: r.meanIterS });
    process.stderr.write(`cost  ${c.ring} N=${c.ranks} ${transport}: ${written} written, pause ${(pauseS * 1e3).toFixed(2)} ms, write ${(writeS * 1e3).toFixed(2)} ms (iteration ${(r.meanIterS * 1e3).toFixed(2)} ms)\n`);
  }
}

// 2. --checkpoint-every 100 against none, default sizes, rounds interleaved.
const rounds = quick ? 2 : 7;
for (const [ranks, iterations] of [[2, quick ? 200 : 1500]]) {
  for (const transport of ['mpi', 'threads']) {
    const ratios = [];
    const base = ['-p', String(ranks), '--transport', transport, '-i', String(iterations)];
    for (let k = 0; k < rounds; k++) {
      const without = run(base);
      const withCp = run([...base, '--checkpoint', fresh(), '--checkpoint-every', '100']);
      if (withCp.checksum !== without.checksum) throw new Error('checksums differ');
      const iterS = (r) => r.totalS - r.startS;
      ratios.push(iterS(withCp) / iterS(without));
      record({ kind: 'overhead', ranks, transport, iterations, round: k, withoutS: iterS(without), withS: iterS(withCp), written: withCp.checkpoints.written });
    }
    process.stderr.write(`every 100, N=${ranks} ${transport}: ${median(ratios).toFixed(3)}x (rounds ${ratios.map((r) => r.toFixed(3)).join(', ')})\n`);
  }
}
rmSync(work, { recursive: true, force: true });
writeFileSync(out, lines.join('\n') + '\n');
const latest = join(root, 'bench', 'results', 'latest.jsonl');
writeReport(readFileSync(latest, 'utf8').trim().split('\n').map((l) => JSON.parse(l)), root);
process.stderr.write(`wrote ${out} and docs/BENCHMARKS.md\n`);
