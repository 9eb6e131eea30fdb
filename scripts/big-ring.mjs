// A ring of more than 4 GiB (not part of npm test: it needs about 17 GB of memory): the
// demo ring at 2 ranks a stage with Array3 of 335544320 doubles a rank (5 GiB of stage
// buffers in the hub's arena), over MPI, then on threads with native C as the reference,
// each for a few iterations. Checks that both give the same checksum and samples the memory
// of each run's processes (the CLI and every process below it: the sum of their resident
// sets, every 100 ms; shared pages count once a process, so it is an upper bound).
//
//   node scripts/big-ring.mjs [--iterations N] [--array3 DOUBLES]   (defaults 2, 335544320)
//
// Prints a line a run and writes them to bench/results/big-ring.json. Exits 1 when the
// checksums differ or a run fails.
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { descendants } from '../test/helpers.mjs';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const arg = (name, dflt) => {
  const i = process.argv.indexOf(name);
  if (i < 0) return dflt;
  const v = Number(process.argv[i + 1]);
  if (!Number.isSafeInteger(v) || v < 1) {
    process.stderr.write(`${name} must be a positive integer (got ${JSON.stringify(process.argv[i + 1] ?? '')})\n`);
    process.exit(2);
  }
  return v;
};
const iterations = arg('--iterations', 2);
const array3 = arg('--array3', 335544320);
const sizes = `10,1000,${array3}`;

/** Resident bytes of `pid` and every process below it, now. */
function treeRss(pid) {
  let bytes = 0;
  for (const p of [pid, ...descendants(pid)]) {
    try {
      const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${p}/status`, 'utf8'));
      if (m) bytes += Number(m[1]) * 1024;
    } catch {
      // gone
    }
  }
  return bytes;
}

function run(label, extra) {
  const args = [join(root, 'dist', 'master.js'), '-p', '2', '--sizes', sizes, '-i', String(iterations), '--json', '--timeout', '600', ...extra];
  return new Promise((resolve) => {
    const t0 = Date.now();
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (b) => (out += b));
    child.stderr.on('data', (b) => (err += b));
    let peak = 0;
    const timer = setInterval(() => (peak = Math.max(peak, treeRss(child.pid))), 100);
    child.on('close', (code) => {
      clearInterval(timer);
      const wallS = (Date.now() - t0) / 1000;
      if (code !== 0) return resolve({ label, code, error: err.trim() });
      const j = JSON.parse(out);
      resolve({ label, code, checksum: j.checksum, medianIterS: j.medianIterS, startS: j.startS, wallS, peakRssGB: Number((peak / 2 ** 30).toFixed(2)) });
    });
  });
}

const arenaGiB = (2 * (10 + 1000 + array3) * 8) / 2 ** 30;
console.log(`big-ring: --sizes ${sizes} -p 2 -i ${iterations}: ${arenaGiB.toFixed(2)} GiB of stage buffers in the hub's arena`);
const results = [];
for (const [label, extra] of [['mpi/native', []], ['threads/native', ['--transport', 'threads', '--c-backend', 'native']]]) {
  const r = await run(label, extra);
  results.push(r);
  console.log(r.code === 0 ? `${label}: checksum ${r.checksum}, ${r.medianIterS.toFixed(2)} s an iteration (median), start ${r.startS.toFixed(1)} s, peak resident ${r.peakRssGB} GB (the run's processes, summed)` : `${label}: exit ${r.code}: ${r.error}`);
}
const same = results.every((r) => r.code === 0 && r.checksum === results[0].checksum);
console.log(same ? 'big-ring: the same checksum on both' : 'big-ring: FAILED (a run failed or the checksums differ)');
mkdirSync(join(root, 'bench', 'results'), { recursive: true });
writeFileSync(join(root, 'bench', 'results', 'big-ring.json'), JSON.stringify({ date: new Date().toISOString(), sizes, procs: 2, iterations, arenaGiB: Number(arenaGiB.toFixed(2)), same, results }, null, 2) + '\n');
process.exitCode = same ? 0 : 1;
