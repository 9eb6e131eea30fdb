/** The CLI: node dist/master.js [options]. Exit 0 on success, 1 on a failed run, 2 on bad input, 130 on Ctrl-C. */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { rootDir } from '../assets.js';
import { version } from '../version.js';
import { UsageError } from '../errors.js';
import { MPMD_PIDFILE_ENV, launchMpmd } from '../mpi/mpmd.js';
import { HELP, parseArgs, type CliOptions } from './options.js';
import { demoPipeline, type PipelineSpec } from '../pipeline/model.js';
import { loadPipelineFile, preparePlan } from '../pipeline/load.js';
import { breakdown, progressLine, summary, toJson } from './report.js';
import { runPipeline } from '../run.js';

function spawnInfo(opts: CliOptions): Record<string, string> {
  const info: Record<string, string> = {};
  if (opts.hostfile) info.hostfile = opts.hostfile;
  if (opts.host) info.host = opts.host;
  return info;
}

async function main(argv: string[]): Promise<number> {
  const opts = parseArgs(argv);
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
  if (opts.launch === 'mpmd' && process.env.OMPI_COMM_WORLD_SIZE === undefined) {
    // Check and build everything before mpirun starts anything.
    const plan = await preparePlan(spec, { transport: 'mpi', cBackend: opts.cBackend, procs: opts.procs, sizes: opts.sizes });
    return launchMpmd(plan, argv, { cBackend: opts.cBackend, hostfile: opts.hostfile, host: opts.host });
  }
  const stop = new AbortController();
  process.once('SIGINT', () => stop.abort());
  process.once('SIGTERM', () => stop.abort());
  // Under our own MPMD mpirun: tell the launching CLI where to send Ctrl-C, once we can take it.
  if (process.env[MPMD_PIDFILE_ENV]) writeFileSync(process.env[MPMD_PIDFILE_ENV]!, String(process.pid));

  const tty = process.stderr.isTTY === true;
  const t0 = performance.now();
  let shown = 0;
  const result = await runPipeline(spec, {
    ...opts,
    spawnInfo: spawnInfo(opts),
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
