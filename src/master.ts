/** The CLI: node dist/master.js [options]. Exit 0 on success, 1 on a failed run, 2 on bad input, 130 on Ctrl-C. */
import { UsageError } from './errors.js';
import { HELP, parseArgs } from './options.js';
import { breakdown, progressLine, summary, toJson } from './report.js';
import { runRing } from './run.js';

async function main(argv: string[]): Promise<number> {
  const opts = parseArgs(argv);
  if (opts.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const stop = new AbortController();
  process.once('SIGINT', () => stop.abort());
  process.once('SIGTERM', () => stop.abort());

  const tty = process.stderr.isTTY === true;
  const t0 = performance.now();
  let shown = 0;
  const result = await runRing({
    ...opts,
    signal: stop.signal,
    onIteration: tty
      ? (i) => {
          const now = performance.now();
          if (now - t0 > 1000 && now - shown > 100) {
            shown = now;
            process.stderr.write(progressLine(i + 1, opts.iterations));
          }
        }
      : undefined,
  });
  if (shown) process.stderr.write(progressLine(result.iterations, opts.iterations) + '\n');

  if (opts.json) process.stdout.write(toJson(result) + '\n');
  else {
    process.stdout.write(summary(result) + '\n');
    if (opts.benchmark) process.stdout.write('\n' + breakdown(result) + '\n');
  }
  if (result.stopped && stop.signal.aborted) {
    process.stderr.write(`commloop: stopped by signal after ${result.iterations} of ${opts.iterations} iterations\n`);
    return 130;
  }
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: Error) => {
    process.stderr.write(`commloop: ${err.message}\n`);
    process.exitCode = err instanceof UsageError ? 2 : 1;
  },
);
