/**
 * The CLI: node dist/master.js [options]. Exit 0 on success, 1 on a failed run (one
 * `commloop:` line saying what failed first), 2 on bad input, 130 when stopped by
 * SIGINT or SIGTERM (the result so far is still printed).
 */
import { RunError, UsageError, describeFailure } from '../errors.js';
import { join } from 'node:path';
import { rootDir } from '../assets.js';
import { version } from '../version.js';
import { HELP, parseArgs, type CliOptions } from './options.js';
import { demoPipeline, type PipelineSpec } from '../pipeline/model.js';
import { loadPipelineFile } from '../pipeline/load.js';
import { breakdown, progressLine, stageBreakdown, summary, toJson } from './report.js';
import { runPipeline } from '../run.js';
import { STATUS_EVERY_S, StatusLines } from './status.js';

function spawnInfo(opts: CliOptions): Record<string, string> {
  const info: Record<string, string> = {};
  if (opts.hostfile) info.hostfile = opts.hostfile;
  if (opts.host) info.host = opts.host;
  return info;
}

let verbose = false;
let stopping = false;

// A reader that goes away (`| head -1`): the rest of the output is dropped, as cat's would be,
// not a stack trace; the run has ended before anything goes to stdout.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code !== 'EPIPE' && err.code !== 'ERR_STREAM_DESTROYED') throw err;
});

async function main(argv: string[]): Promise<number> {
  const opts = parseArgs(argv);
  verbose = opts.verbose;
  if (opts.help) {
    process.stdout.write(HELP);
    return 0;
  }
  if (opts.version) {
    process.stdout.write(`${version}\n`);
    return 0;
  }
  if (opts.cflags) {
    // The stage SDK's header sits in include/ of this package (checkout or node_modules).
    process.stdout.write(`-I${join(rootDir, 'include')}\n`);
    return 0;
  }
  const spec: PipelineSpec = opts.pipeline ? loadPipelineFile(opts.pipeline) : demoPipeline(opts.procs!);
  const stop = new AbortController();
  const onSignal = () => {
    stopping = true;
    stop.abort();
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  // A batch system's warning (Slurm's --signal=B:USR1@N): a checkpoint at the next boundary, the run goes on.
  const requests = new EventTarget();
  process.on('SIGUSR1', () => requests.dispatchEvent(new Event('checkpoint')));

  // A terminal gets a progress bar; a log (a batch job's) a status line every S seconds.
  const tty = process.stderr.isTTY === true;
  const everyS = opts.statusEveryS ?? (tty ? 0 : STATUS_EVERY_S);
  const status = everyS > 0 ? new StatusLines(opts.iterations, everyS, (line) => process.stderr.write(line)) : undefined;
  const bar = tty && !status;
  const t0 = performance.now();
  let shown = 0;
  let result;
  try {
    result = await runPipeline(spec, {
      ...opts,
      checkpoint: opts.checkpoint && { ...opts.checkpoint, requests, onWritten: status && ((w) => status.written(w)) },
      spawnInfo: spawnInfo(opts),
      signal: stop.signal,
      onNote: (line) => process.stderr.write(`note: ${line}\n`),
      onProgress:
        bar || status
          ? (done) => {
              status?.progress(done);
              const now = performance.now();
              if (bar && now - t0 > 1000 && now - shown > 100) {
                shown = now;
                process.stderr.write(progressLine(done, opts.iterations));
              }
            }
          : undefined,
    });
  } finally {
    status?.stop();
  }
  if (shown) process.stderr.write(progressLine(result.iterations, opts.iterations) + '\n');

  if (opts.json) process.stdout.write(toJson(result) + '\n');
  else {
    process.stdout.write(summary(result) + '\n');
    if (opts.benchmark) process.stdout.write('\n' + breakdown(result) + '\n');
    if (result.breakdown) process.stdout.write('\n' + stageBreakdown(result) + '\n');
  }
  if (result.breakdown?.dropped) {
    process.stderr.write(`note: step times of the ${result.breakdown.dropped} oldest kept iterations were dropped (--trace-cap ${opts.traceCap ?? result.breakdown.iterations}); the breakdown and trace hold the newest ${result.breakdown.iterations}\n`);
  }
  if (result.stopped && stop.signal.aborted) {
    const cp = result.checkpoints?.last;
    const saved = cp ? `; checkpoint at iteration ${cp.iterations} in ${cp.path}: resume with --resume` : '';
    process.stderr.write(`commloop: stopped by signal after ${result.iterations} of ${opts.iterations} iterations${saved}\n`);
    return 130;
  }
  return 0;
}

/**
 * A failure that may be another process's end by the signal that stops this one (scancel's
 * SIGTERM reaches the ranks and Open MPI's daemons too, and mpirun may crash as it goes down
 * with them), and how long to wait for ours.
 */
const SIGNALLED = /killed by SIG(?:TERM|INT|HUP)\b|^(?:mpirun|the MPI hub) crashed \(SIG\w+\)|its node was lost/;
const SIGNAL_WAIT_MS = 300;

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  async (err: Error) => {
    // scancel and a time limit signal every process of the job at once: the hub's or a rank's
    // death by that signal may be seen before this process's own, which is the cause.
    if (!stopping && err instanceof RunError && SIGNALLED.test(err.detail)) await new Promise((r) => setTimeout(r, SIGNAL_WAIT_MS));
    const log = err instanceof RunError && err.log ? ` (${err.logOf ?? 'Open MPI'}'s messages: ${err.log})` : '';
    // How to go on ends the line, after the log's name.
    const resume = err instanceof RunError && err.resumeFrom !== undefined ? `; resume from iteration ${err.resumeFrom} with --resume` : '';
    let what = err instanceof RunError ? describeFailure(err) : err.message.split('\n')[0];
    // Stopped by a signal: what failed after it is its consequence, said as such.
    if (stopping && err instanceof RunError && !err.detail.startsWith('stopped by signal')) what = `stopped by signal; the run's processes were signalled too (${what})`;
    process.stderr.write(`commloop: ${what}${log}${resume}\n`);
    if (verbose && !(err instanceof UsageError) && err.stack) process.stderr.write(err.stack + '\n');
    // A run the user stopped exits 130 even when a hung stage kept it from stopping cleanly.
    process.exitCode = err instanceof UsageError ? 2 : stopping ? 130 : 1;
  },
);
