/** The command line: every flag, its default and its one validation message live here. */
import { availableParallelism } from 'node:os';
import { UsageError } from './errors.js';
import type { CBackend } from './executor.js';
import type { TransportName } from './run.js';

export interface CliOptions {
  procs: number;
  iterations: number;
  sizes: number[][];
  transport: TransportName;
  cBackend: CBackend;
  threads?: number;
  timeoutMs: number;
  benchmark: boolean;
  json: boolean;
  help: boolean;
}

export const TRANSPORTS: readonly TransportName[] = ['mpi', 'threads'];
export const C_BACKENDS: readonly CBackend[] = ['native', 'wasm'];

export const HELP = `Usage: node dist/master.js [options]

Runs the CommLoop ring: the hub scatters Array1 to stage ts1 (TypeScript), gathers
Array2, scatters it to stage c (the C kernel), gathers Array3, scatters it to ts2
(TypeScript), gathers Array4, which becomes the next Array1.

Options:
  -p, --procs N          ranks per stage (default: the number of cores)
  -i, --iterations K     iterations to run (default: 10)
  --sizes n1,n2,n3       elements per rank of Array1/Array4, Array2, Array3
                         (default: 10,1000,1000000); several triples separated by
                         "/" are used in turn, one per iteration
  --transport NAME       mpi: each stage a spawned Open MPI job (default);
                         threads: worker threads on shared memory, no MPI
  --c-backend NAME       native (mpicc build; default with mpi) or wasm (the .wasm
                         build; default with threads): which C kernel runs
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

function sizes(raw: string): number[][] {
  const groups = raw.split('/').map((g) => g.split(','));
  const ok = groups.every((g) => g.length === 3 && g.every((v) => /^[0-9]+$/.test(v) && +v >= 1 && +v <= INT_MAX));
  if (!ok) {
    throw new UsageError(
      `--sizes must be three positive integers n1,n2,n3, or several such triples separated by "/" (got "${raw}")`,
    );
  }
  return groups.map((g) => g.map(Number));
}

const ALIASES: Record<string, string> = { '-p': '--procs', '-i': '--iterations', '-g': '--benchmark', '-h': '--help' };
const BOOLEAN = new Set(['--benchmark', '--json', '--help']);
const VALUED = new Set(['--procs', '--iterations', '--sizes', '--transport', '--c-backend', '--threads', '--timeout']);

export function parseArgs(argv: string[]): CliOptions {
  const o: CliOptions = {
    procs: availableParallelism(),
    iterations: 10,
    sizes: [[10, 1000, 1000000]],
    transport: 'mpi',
    cBackend: 'native',
    timeoutMs: 60_000,
    benchmark: false,
    json: false,
    help: false,
  };
  let cBackend: CBackend | undefined;
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
        o.sizes = sizes(value);
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
  return o;
}
