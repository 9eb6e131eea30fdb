/** The command line: every flag, its default and its one validation message live here. */
import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { UsageError } from '../errors.js';
import type { CBackend } from '../stage/kernel.js';
import type { LaunchMode, TransportName } from '../run.js';

export interface CliOptions {
  /** Undefined with --pipeline unless -p is given: the pipeline's own ranks apply. */
  procs?: number;
  iterations: number;
  /** Undefined with --pipeline unless --sizes is given. */
  sizes?: number[][];
  transport: TransportName;
  cBackend: CBackend;
  pipeline?: string;
  launch: LaunchMode;
  hostfile?: string;
  host?: string;
  threads?: number;
  timeoutMs: number;
  benchmark: boolean;
  json: boolean;
  help: boolean;
}

export const TRANSPORTS: readonly TransportName[] = ['mpi', 'threads'];
export const C_BACKENDS: readonly CBackend[] = ['native', 'wasm'];
export const LAUNCHES: readonly LaunchMode[] = ['spawn', 'mpmd'];

export const HELP = `Usage: node dist/master.js [options]

Runs the CommLoop ring: the hub scatters Array1 to stage ts1 (TypeScript), gathers
Array2, scatters it to stage c (the C kernel), gathers Array3, scatters it to ts2
(TypeScript), gathers Array4, which becomes the next Array1.

Options:
  --pipeline FILE        run your own ring (docs/PIPELINES.md); default: the demo
                         ring ts1 -> c -> ts2 (examples/demo.json)
  -p, --procs N          ranks per stage (default: the number of cores, or the
                         pipeline's own ranks)
  -i, --iterations K     iterations to run (default: 10)
  --sizes n1,n2,n3       elements per rank of Array1/Array4, Array2, Array3
                         (default: 10,1000,1000000; a pipeline of S stages takes S
                         sizes, Array1..ArrayS); several groups separated by "/"
                         are used in turn, one per iteration
  --transport NAME       mpi: each stage a spawned Open MPI job (default);
                         threads: worker threads on shared memory, no MPI
  --c-backend NAME       native (mpicc build; default with mpi) or wasm (the .wasm
                         build; default with threads): which C kernel runs
  --launch MODE          mpi transport: spawn (default): MPI_Comm_spawn per stage;
                         mpmd: one mpirun starts the master and every stage
  --hostfile FILE        mpi transport: run ranks on the hosts of an Open MPI hostfile
  --host a,b             mpi transport: run ranks on these hosts
  --threads N            threads transport: threads running ranks, the hub included
                         (default: min(procs, cores))
  --timeout S            seconds any one stage may take before the run fails (default: 60)
  -g, --benchmark        print the time breakdown (start, first, last, mean, total)
  --json                 print one JSON object with the result and timings
  -h, --help             print this help
`;

const INT_MAX = 2 ** 31 - 1;

function positiveInt(flag: string, raw: string): number {
  const n = /^[0-9]+$/.test(raw) ? Number(raw) : NaN;
  if (!(n >= 1 && n <= INT_MAX)) throw new UsageError(`${flag} must be a positive integer (got "${raw}")`);
  return n;
}

function oneOf<T extends string>(flag: string, raw: string, allowed: readonly T[]): T {
  if (!allowed.includes(raw as T)) throw new UsageError(`${flag} must be one of ${allowed.join(', ')} (got "${raw}")`);
  return raw as T;
}

/** Groups of positive integers; how many per group is checked once the pipeline is known. */
function sizes(raw: string, perGroup?: number): number[][] {
  const groups = raw.split('/').map((g) => g.split(','));
  const ok = groups.every(
    (g) => (perGroup === undefined || g.length === perGroup) && g.every((v) => /^[0-9]+$/.test(v) && +v >= 1 && +v <= INT_MAX),
  );
  if (!ok) {
    throw new UsageError(
      perGroup === 3
        ? `--sizes must be three positive integers n1,n2,n3, or several such triples separated by "/" (got "${raw}")`
        : `--sizes must be groups of positive integers separated by "/" (got "${raw}")`,
    );
  }
  return groups.map((g) => g.map(Number));
}

const ALIASES: Record<string, string> = { '-p': '--procs', '-i': '--iterations', '-g': '--benchmark', '-h': '--help' };
const BOOLEAN = new Set(['--benchmark', '--json', '--help']);
const VALUED = new Set([
  '--procs',
  '--iterations',
  '--sizes',
  '--transport',
  '--c-backend',
  '--threads',
  '--timeout',
  '--pipeline',
  '--launch',
  '--hostfile',
  '--host',
]);

export function parseArgs(argv: string[]): CliOptions {
  const o: CliOptions = {
    iterations: 10,
    transport: 'mpi',
    launch: 'spawn',
    cBackend: 'native',
    timeoutMs: 60_000,
    benchmark: false,
    json: false,
    help: false,
  };
  let cBackend: CBackend | undefined;
  let rawSizes: string | undefined;
  let launchGiven = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const eq = arg.startsWith('--') ? arg.indexOf('=') : -1;
    const name = ALIASES[arg] ?? (eq > 0 ? arg.slice(0, eq) : arg);
    if (BOOLEAN.has(name) && eq < 0) {
      if (name === '--benchmark') o.benchmark = true;
      else if (name === '--json') o.json = true;
      else o.help = true;
      continue;
    }
    if (!VALUED.has(name)) {
      if (arg.startsWith('-')) throw new UsageError(`unknown option "${arg}" (see --help)`);
      throw new UsageError(`unexpected argument "${arg}" (see --help)`);
    }
    const value = eq > 0 ? arg.slice(eq + 1) : argv[++i];
    if (value === undefined) throw new UsageError(`${name} needs a value (see --help)`);
    switch (name) {
      case '--procs':
        o.procs = positiveInt(name, value);
        break;
      case '--iterations':
        o.iterations = positiveInt(name, value);
        break;
      case '--sizes':
        rawSizes = value; // checked at the end, once we know whether it is the demo's three arrays
        break;
      case '--pipeline':
        if (!existsSync(value)) throw new UsageError(`--pipeline file not found: ${value}`);
        o.pipeline = value;
        break;
      case '--launch':
        o.launch = oneOf(name, value, LAUNCHES);
        launchGiven = true;
        break;
      case '--hostfile':
        if (!existsSync(value)) throw new UsageError(`--hostfile file not found: ${value}`);
        o.hostfile = value;
        break;
      case '--host':
        if (!/^[A-Za-z0-9._:-]+(,[A-Za-z0-9._:-]+)*$/.test(value)) {
          throw new UsageError(`--host must be a comma-separated list of host names (got "${value}")`);
        }
        o.host = value;
        break;
      case '--transport':
        o.transport = oneOf(name, value, TRANSPORTS);
        break;
      case '--c-backend':
        cBackend = oneOf(name, value, C_BACKENDS);
        break;
      case '--threads':
        o.threads = positiveInt(name, value);
        break;
      case '--timeout': {
        const s = /^[0-9]+(\.[0-9]+)?$/.test(value) ? Number(value) : NaN;
        if (!(s > 0)) throw new UsageError(`--timeout must be a positive number of seconds (got "${value}")`);
        o.timeoutMs = s * 1000;
        break;
      }
    }
  }
  // The WASM kernel is the threads transport's own (it runs on the shared arena); MPI's C stage is native.
  o.cBackend = cBackend ?? (o.transport === 'threads' ? 'wasm' : 'native');
  if (o.transport === 'threads') {
    const mpiOnly = launchGiven ? '--launch' : o.hostfile ? '--hostfile' : o.host ? '--host' : undefined;
    if (mpiOnly) throw new UsageError(`${mpiOnly} needs --transport mpi (got --transport threads)`);
  }
  if (!o.pipeline) {
    // The demo ring: three arrays, one rank per core unless told.
    o.sizes = rawSizes === undefined ? [[10, 1000, 1000000]] : sizes(rawSizes, 3);
    o.procs ??= availableParallelism();
  } else if (rawSizes !== undefined) {
    o.sizes = sizes(rawSizes);
  }
  return o;
}
