/** The command line: every flag, its default and its one validation message live here. */
import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { parseArgs as parseArgv } from 'node:util';
import { UsageError } from '../errors.js';
import type { CBackend } from '../pipeline/model.js';
import type { TransportName } from '../run.js';
import { LAUNCH_REQUESTS, type LaunchRequest } from '../mpi/launch/placement.js';
import { DEFAULT_TIMING, MAX_CAP } from '../trace/log.js';
import { WIRE_REQUESTS, type WireRequest } from '../mpi/wire.js';
import { MPI_REQUESTS, type MpiRequest } from '../mpi/impl/index.js';
import { STATUS_EVERY_S } from './status.js';

export interface CliOptions {
  /** Undefined with --pipeline unless -p is given: the pipeline's own ranks apply. */
  procs?: number;
  iterations: number;
  /** Undefined with --pipeline unless --sizes is given. */
  sizes?: number[][];
  transport: TransportName;
  cBackend: CBackend;
  pipeline?: string;
  launch: LaunchRequest;
  wire: WireRequest;
  mpi: MpiRequest;
  hostfile?: string;
  host?: string;
  threads?: number;
  timeoutMs: number;
  benchmark: boolean;
  json: boolean;
  /** Print Open MPI's own messages and full stacks (the hub decides what that shows). */
  verbose: boolean;
  help: boolean;
  /** Print the version and exit. */
  version: boolean;
  /** Print the compiler flags for a C stage built against the SDK header, and exit. */
  cflags: boolean;
  /** Per-stage breakdown of each iteration (scatter, compute, gather, hub). */
  breakdown: boolean;
  trace?: string;
  traceEvery?: number;
  traceCap?: number;
  /** --checkpoint DIR and its schedule (docs/CHECKPOINTS.md). */
  checkpoint?: { dir: string; every?: number; intervalS?: number; keep?: number };
  /** --resume (true) or --resume-if-any. */
  resume?: true | 'if-any';
  /** --status-every S: seconds between status lines without a terminal (0: none; undefined: the default, and none on a terminal). */
  statusEveryS?: number;
}

export const TRANSPORTS: readonly TransportName[] = ['mpi', 'threads'];
export const C_BACKENDS: readonly CBackend[] = ['native', 'wasm'];

export const HELP = `Usage: node dist/master.js [options]
       npx commloop [options]     (installed from npm)

Runs the CommLoop ring: the hub scatters Array1 to stage ts1 (TypeScript), gathers
Array2, scatters it to stage c (the C kernel), gathers Array3, scatters it to ts2
(TypeScript), gathers Array4, which becomes the next Array1.

Options:
  --pipeline FILE        run your own ring (docs/PIPELINES.md); default: the demo
                         ring ts1 -> c -> ts2 (examples/demo.json)
  -p, --procs N          ranks per stage, at most 1024 (default: the number of
                         cores, or the pipeline's own ranks)
  -i, --iterations K     iterations to run (default: 10)
  --sizes n1,n2,n3       elements per rank of Array1/Array4, Array2, Array3
                         (default: 10,1000,1000000; a pipeline of S stages takes S
                         sizes, Array1..ArrayS); several groups separated by "/"
                         are used in turn, one per iteration
  --transport NAME       mpi: each stage a spawned Open MPI job (default);
                         threads: worker threads on shared memory, no MPI
  --c-backend NAME       native (mpicc build; default with mpi) or wasm (the .wasm
                         build; default with threads): which C kernel runs
  --launch MODE          mpi transport: auto (default): spawn where every rank is on
                         this host, mpmd where ranks span several hosts (--host,
                         --hostfile, a Slurm allocation of several nodes); spawn:
                         MPI_Comm_spawn per stage; mpmd: one mpirun starts the
                         master and every stage
  --mpi NAME             mpi transport: which MPI runs it: auto (default: the one
                         mpiexec on PATH belongs to, else the first installed, Open
                         MPI first), openmpi or mpich (build.sh builds for each found)
  --wire NAME            mpi transport: what messages travel on: auto (default:
                         spawn mode on one host uses UCX shared memory where Open
                         MPI can select it, else TCP; MPMD ob1's shared memory),
                         shm or tcp; OMPI_MCA_pml/btl/mtl in the environment win
  --hostfile FILE        mpi transport: run ranks on the hosts of an Open MPI hostfile
  --host a,b             mpi transport: run ranks on these hosts
  --threads N            threads transport: worker threads running ranks (the
                         caller's thread runs none; default: min(procs, cores - 1),
                         min(procs, cores) for stages of 65536 doubles or more)
  --timeout S            seconds any one stage may take before the run fails, 0.001
                         to 86400 (default: 60)
  -g, --benchmark        print the time breakdown (start, first, last, mean and
                         median iteration with min … max, total)
  --json                 print one JSON object with the result and timings
  --breakdown            also print where each iteration's time goes, per stage:
                         scatter, compute (the slowest rank), gather, the hub's own
                         time, as median and p95 (in --json: "breakdown")
  --trace FILE           write every step of every rank as a Chrome trace (open it in
                         https://ui.perfetto.dev or chrome://tracing); implies
                         --breakdown
  --trace-every N        keep the times of every N-th iteration only (default: 1)
  --trace-cap N          keep the newest N kept iterations per rank, 1 to ${MAX_CAP}
                         (default: ${DEFAULT_TIMING.cap}); older ones are dropped and counted
  --checkpoint DIR       take checkpoints into DIR (docs/CHECKPOINTS.md): when the
                         run ends or is stopped (SIGINT, SIGTERM), on SIGUSR1, and
                         as often as the two flags below say
  --checkpoint-every N   a checkpoint every N iterations
  --checkpoint-interval S  a checkpoint every S seconds (wall clock)
  --checkpoint-keep N    keep the newest N checkpoints (default: 2)
  --resume               continue from the newest checkpoint in DIR that verifies
                         (exit 2 when there is none); -i stays the total
  --resume-if-any        the same, or start from iteration 0 when DIR has none
  --status-every S       without a terminal (a batch job's log), print a status line
                         every S seconds: iterations done, the rate, when the run
                         will finish, the last checkpoint (default: ${STATUS_EVERY_S}; 0: none;
                         given, also on a terminal instead of the progress bar)
  --verbose              print Open MPI's own messages and full stacks
  --cflags               print the C compiler flags of the stage SDK (its -I) and
                         exit: mpicc my_stage.c $(npx commloop --cflags) -o my_stage
  --version              print the version and exit
  -h, --help             print this help
`;

const INT_MAX = 2 ** 31 - 1;
/** Ranks per stage: each is a process under MPI; beyond this a typo, not a ring (issue 10). */
export const MAX_PROCS = 1024;
/** --timeout bounds in seconds: 1 ms to one day. */
export const TIMEOUT_MIN_S = 0.001;
export const TIMEOUT_MAX_S = 86400;

function positiveInt(flag: string, raw: string, max = INT_MAX): number {
  const n = /^[0-9]+$/.test(raw) ? Number(raw) : NaN;
  if (!(n >= 1)) throw new UsageError(`${flag} must be a positive integer (got "${raw}")`);
  if (n > max) throw new UsageError(`${flag} must be at most ${max} (got "${raw}")`);
  return n;
}

function seconds(flag: string, raw: string): number {
  const s = /^[0-9]*\.?[0-9]+$/.test(raw) ? Number(raw) : NaN;
  if (!(s > 0)) throw new UsageError(`${flag} must be a positive number of seconds (got "${raw}")`);
  if (!(s >= TIMEOUT_MIN_S && s <= TIMEOUT_MAX_S)) {
    throw new UsageError(`${flag} must be a number of seconds from ${TIMEOUT_MIN_S} to ${TIMEOUT_MAX_S} (got "${raw}")`);
  }
  return s;
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

/** Every flag, for node:util's parser. Values stay strings: this file checks and converts them. */
const OPTIONS = {
  procs: { type: 'string', short: 'p' },
  iterations: { type: 'string', short: 'i' },
  sizes: { type: 'string' },
  transport: { type: 'string' },
  'c-backend': { type: 'string' },
  threads: { type: 'string' },
  timeout: { type: 'string' },
  pipeline: { type: 'string' },
  launch: { type: 'string' },
  wire: { type: 'string' },
  mpi: { type: 'string' },
  hostfile: { type: 'string' },
  host: { type: 'string' },
  trace: { type: 'string' },
  'trace-every': { type: 'string' },
  'trace-cap': { type: 'string' },
  checkpoint: { type: 'string' },
  'checkpoint-every': { type: 'string' },
  'checkpoint-interval': { type: 'string' },
  'checkpoint-keep': { type: 'string' },
  'status-every': { type: 'string' },
  resume: { type: 'boolean' },
  'resume-if-any': { type: 'boolean' },
  breakdown: { type: 'boolean' },
  benchmark: { type: 'boolean', short: 'g' },
  json: { type: 'boolean' },
  verbose: { type: 'boolean' },
  cflags: { type: 'boolean' },
  version: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;
type Flag = keyof typeof OPTIONS;
/** The boolean flags are CliOptions fields of the same name. */
type BooleanFlag = Exclude<{ [F in Flag]: (typeof OPTIONS)[F]['type'] extends 'boolean' ? F : never }[Flag], 'resume' | 'resume-if-any'>;

/** Edit distance (insert, delete, substitute, swap two neighbours), for "did you mean". */
function distance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[a.length][b.length];
}

/** The flag an unknown long option most likely meant: a close spelling, or the one it abbreviates. */
export function suggestFlag(name: string): string | undefined {
  const flags = Object.keys(OPTIONS);
  const prefixed = name.length >= 3 ? flags.filter((f) => f.startsWith(name)) : [];
  if (prefixed.length === 1) return prefixed[0];
  let best: string | undefined;
  let bestD = Math.min(2, Math.floor(name.length / 3)) + 1;
  for (const f of flags) {
    const d = distance(name, f);
    if (d < bestD) [best, bestD] = [f, d];
  }
  return best;
}

function unknownOption(raw: string, name: string): UsageError {
  const hint = raw.startsWith('--') ? suggestFlag(name) : undefined;
  return new UsageError(`unknown option "${raw}" (${hint ? `did you mean --${hint}?` : 'see --help'})`);
}

export function parseArgs(argv: string[]): CliOptions {
  const o: CliOptions = {
    iterations: 10,
    transport: 'mpi',
    launch: 'auto',
    wire: 'auto',
    mpi: 'auto',
    cBackend: 'native',
    timeoutMs: 60_000,
    benchmark: false,
    json: false,
    verbose: false,
    help: false,
    version: false,
    cflags: false,
    breakdown: false,
  };
  let cBackend: CBackend | undefined;
  let rawSizes: string | undefined;
  let launchGiven = false;
  let wireGiven = false;
  let mpiGiven = false;
  let cpDir: string | undefined;
  const cpWhen: { every?: number; intervalS?: number; keep?: number } = {};
  const cpFlag: string[] = [];
  // strict: false hands every token back, unknown ones included, so each message is ours.
  const { tokens } = parseArgv({ args: argv, options: OPTIONS, strict: false, allowPositionals: true, tokens: true });
  for (const tok of tokens) {
    if (tok.kind === 'option-terminator') continue;
    if (tok.kind === 'positional') throw new UsageError(`unexpected argument "${tok.value}" (see --help)`);
    if (!Object.hasOwn(OPTIONS, tok.name)) throw unknownOption(tok.rawName, tok.name);
    const name = tok.name as Flag;
    const flag = `--${name}`;
    if (OPTIONS[name].type === 'boolean') {
      if (tok.value !== undefined) throw new UsageError(`${flag} takes no value (got "${tok.value}")`);
      if (name === 'resume' || name === 'resume-if-any') {
        const want = name === 'resume' ? true : 'if-any';
        if (o.resume !== undefined && o.resume !== want) throw new UsageError('--resume and --resume-if-any exclude each other: give one');
        o.resume = want;
      } else o[name as BooleanFlag] = true;
      continue;
    }
    const value = tok.value;
    if (value === undefined) throw new UsageError(`${flag} needs a value (see --help)`);
    switch (name) {
      case 'procs':
        o.procs = positiveInt(flag, value, MAX_PROCS);
        break;
      case 'iterations':
        o.iterations = positiveInt(flag, value);
        break;
      case 'sizes':
        rawSizes = value; // checked at the end, once we know whether it is the demo's three arrays
        break;
      case 'pipeline':
        if (!existsSync(value)) throw new UsageError(`--pipeline file not found: ${value}`);
        o.pipeline = value;
        break;
      case 'launch':
        o.launch = oneOf(flag, value, LAUNCH_REQUESTS);
        launchGiven = true;
        break;
      case 'wire':
        o.wire = oneOf(flag, value, WIRE_REQUESTS);
        wireGiven = true;
        break;
      case 'mpi':
        o.mpi = oneOf(flag, value, MPI_REQUESTS);
        mpiGiven = true;
        break;
      case 'hostfile':
        if (!existsSync(value)) throw new UsageError(`--hostfile file not found: ${value}`);
        o.hostfile = value;
        break;
      case 'host':
        if (!/^[A-Za-z0-9._:-]+(,[A-Za-z0-9._:-]+)*$/.test(value)) {
          throw new UsageError(`--host must be a comma-separated list of host names (got "${value}")`);
        }
        o.host = value;
        break;
      case 'transport':
        o.transport = oneOf(flag, value, TRANSPORTS);
        break;
      case 'c-backend':
        cBackend = oneOf(flag, value, C_BACKENDS);
        break;
      case 'threads':
        o.threads = positiveInt(flag, value);
        break;
      case 'timeout':
        o.timeoutMs = seconds(flag, value) * 1000;
        break;
      case 'trace':
        if (value === '' || value.startsWith('-')) throw new UsageError(`--trace needs a file name (got "${value}")`);
        o.trace = value;
        break;
      case 'trace-every':
        o.traceEvery = positiveInt(flag, value);
        break;
      case 'trace-cap':
        o.traceCap = positiveInt(flag, value, MAX_CAP);
        break;
      case 'checkpoint':
        if (value === '' || value.startsWith('-')) throw new UsageError(`--checkpoint needs a folder name (got "${value}")`);
        cpDir = value;
        break;
      case 'checkpoint-every':
        cpWhen.every = positiveInt(flag, value);
        cpFlag.push(flag);
        break;
      case 'checkpoint-interval':
        cpWhen.intervalS = seconds(flag, value);
        cpFlag.push(flag);
        break;
      case 'status-every':
        if (/^0+(\.0*)?$/.test(value)) o.statusEveryS = 0;
        else if (/^[0-9]*\.?[0-9]+$/.test(value) && +value >= TIMEOUT_MIN_S && +value <= TIMEOUT_MAX_S) o.statusEveryS = +value;
        else throw new UsageError(`${flag} must be 0 (no status lines) or a number of seconds from ${TIMEOUT_MIN_S} to ${TIMEOUT_MAX_S} (got "${value}")`);
        break;
      case 'checkpoint-keep':
        cpWhen.keep = positiveInt(flag, value, 1000);
        cpFlag.push(flag);
        break;
    }
  }
  if (cpDir === undefined && (cpFlag.length || o.resume)) {
    throw new UsageError(`${cpFlag[0] ?? (o.resume === true ? '--resume' : '--resume-if-any')} needs --checkpoint DIR`);
  }
  if (cpDir !== undefined) o.checkpoint = { dir: cpDir, ...cpWhen };
  if ((o.traceEvery !== undefined || o.traceCap !== undefined) && !o.trace && !o.breakdown) {
    throw new UsageError(`${o.traceEvery !== undefined ? '--trace-every' : '--trace-cap'} needs --trace FILE or --breakdown`);
  }
  // The WASM kernel is the threads transport's own (it runs on the shared arena); MPI's C stage is native.
  o.cBackend = cBackend ?? (o.transport === 'threads' ? 'wasm' : 'native');
  if (o.transport === 'threads') {
    const mpiOnly = launchGiven ? '--launch' : wireGiven ? '--wire' : mpiGiven ? '--mpi' : o.hostfile ? '--hostfile' : o.host ? '--host' : undefined;
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
