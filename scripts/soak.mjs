// Soak test (not part of npm test): the demo ring, 2 ranks, 1 element per rank, on the
// threads transport for many iterations, watching the process's memory. A run that keeps
// something per iteration grows by 8+ bytes an iteration (2e8 iterations: GBs); one that
// keeps its iteration times in constant memory (src/trace/stats.ts) stays flat.
//
//   node scripts/soak.mjs [--iterations N]     (default 1e8; needs the build in dist/)
//
// Samples process.memoryUsage() every 5 s (a line each on stderr) and prints one JSON line
// on stdout at the end: { iterations, seconds, rssStartMB, rssMaxMB, rssEndMB, samples }.
// Ctrl-C stops the run after the iteration in flight and still prints the line.
import { runRing } from '../dist/index.js';

const SAMPLE_EVERY_MS = 5000;
const USAGE = 'usage: node scripts/soak.mjs [--iterations N]';

function parse(argv) {
  let iterations = 1e8;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const eq = a.startsWith('--iterations=') ? a.slice('--iterations='.length) : undefined;
    if (a === '--iterations' || eq !== undefined) {
      const text = eq ?? argv[++i];
      iterations = Number(text);
      if (!Number.isSafeInteger(iterations) || iterations < 1) {
        throw new Error(`--iterations must be a positive integer (got ${JSON.stringify(text ?? '')})`);
      }
    } else if (a === '-h' || a === '--help') {
      process.stdout.write(`${USAGE}\n`);
      process.exit(0);
    } else {
      throw new Error(`unknown option ${JSON.stringify(a)}\n${USAGE}`);
    }
  }
  return { iterations };
}

const MB = 1024 * 1024;
const round = (x) => Math.round(x * 10) / 10;

let opts;
try {
  opts = parse(process.argv.slice(2));
} catch (err) {
  process.stderr.write(`soak: ${err.message}\n`);
  process.exit(2);
}

const t0 = performance.now();
const samples = [];
function sample() {
  const m = process.memoryUsage();
  const s = { s: round((performance.now() - t0) / 1000), rssMB: round(m.rss / MB), heapMB: round(m.heapUsed / MB) };
  samples.push(s);
  return s;
}

const rssStartMB = sample().rssMB;
const timer = setInterval(() => {
  const s = sample();
  process.stderr.write(`soak: ${s.s} s, rss ${s.rssMB} MB, heap ${s.heapMB} MB\n`);
}, SAMPLE_EVERY_MS);

const stop = new AbortController();
process.once('SIGINT', () => stop.abort());

let result;
try {
  result = await runRing({ procs: 2, sizes: [[1, 1, 1]], iterations: opts.iterations, transport: 'threads', signal: stop.signal });
} finally {
  clearInterval(timer);
}
const end = sample();
process.stdout.write(
  JSON.stringify({
    iterations: result.iterations,
    seconds: round((performance.now() - t0) / 1000),
    rssStartMB,
    rssMaxMB: Math.max(...samples.map((s) => s.rssMB)),
    rssEndMB: end.rssMB,
    samples,
  }) + '\n',
);
