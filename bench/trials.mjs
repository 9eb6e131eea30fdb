// The benchmark's trial table, in one place: implementations x ranks x sizes.
// Every implementation runs the same ring with the same parameters, so checksums
// must agree within a cell (bench/run.mjs asserts it).

import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Where the +trace rows write their trace (overwritten every trial; the bench keeps only the times). */
const TRACE_FILE = join(tmpdir(), 'commloop-bench-trace.json');

/** Uniform shapes: every stage moves `n` doubles per rank. */
const uniform = (label, n) => ({ label, bytesPerRank: n * 8, sizes: [[n, n, n]] });

export const SHAPES = {
  '8B': uniform('8 B', 1),
  '1KiB': uniform('1 KiB', 128),
  '10KiB': uniform('10 KiB', 1280),
  '100KiB': uniform('100 KiB', 12800),
  '1MiB': uniform('1 MiB', 131072),
  // The original's default shapes (Array1/4 = 10, Array2 = 1000, Array3 = 1e6 doubles per rank).
  default: { label: 'default 10,1000,1000000', sizes: [[10, 1000, 1000000]] },
  // The original's mixed-size run: consecutive iterations use 8 B, 80 B, 800 B, 8 KiB, 80 KiB per rank.
  mixed: {
    label: 'mixed 8 B..80 KiB',
    sizes: [1, 10, 100, 1024, 10240].map((n) => [n, n, n]),
  },
};

/** UCX with its shared-memory transports, as the project's shm wire sets it (src/mpi/impl/openmpi-wire.ts). */
const UCX = { OMPI_MCA_pml: 'ucx', OMPI_MCA_pml_ucx_tls: 'any', OMPI_MCA_pml_ucx_devices: 'any', UCX_MEM_EVENTS: 'no', UCX_ERROR_SIGNALS: '', UCX_HANDLE_ERRORS: 'none' };

/**
 * Implementations: the project's transports x C backends, and the references. `wire` says what
 * a reference's messages travel on (the project's rows report their own); `env` is added to a
 * trial's environment.
 */
export const IMPLS = [
  { id: 'threads/native', kind: 'project', args: ['--transport', 'threads', '--c-backend', 'native'] },
  { id: 'threads/wasm', kind: 'project', args: ['--transport', 'threads', '--c-backend', 'wasm'] },
  { id: 'mpi/native', kind: 'project', args: ['--transport', 'mpi', '--c-backend', 'native'] },
  { id: 'mpi/wasm', kind: 'project', args: ['--transport', 'mpi', '--c-backend', 'wasm'] },
  // One mpirun for everything (ob1's shared memory); the rows above are spawn mode (--wire auto: UCX shared memory here).
  { id: 'mpmd/native', kind: 'project', args: ['--transport', 'mpi', '--launch', 'mpmd', '--c-backend', 'native'] },
  // Diagnostic: the project's Node master, but every stage the native C worker (bench/all-c.json,
  // the same arithmetic). Against mpi/native it isolates what the Node stage processes cost.
  { id: 'mpi/c-stages', kind: 'project', args: ['--transport', 'mpi', '--pipeline', 'bench/all-c.json'] },
  // The same under MPMD: against the MPMD floor, what the Node hub and the addon cost there;
  // against mpmd/native, what its two Node stage processes per rank cost.
  { id: 'mpmd/c-stages', kind: 'project', args: ['--transport', 'mpi', '--launch', 'mpmd', '--pipeline', 'bench/all-c.json'] },
  // The demo ring with its TS stages as `kind: "python"` stages (NumPy functions run by
  // python/commloop_stage.py), against the mpi4py peer: what a Python stage costs in the ring.
  { id: 'mpi/python-stages', kind: 'project', args: ['--transport', 'mpi', '--pipeline', 'bench/python-stages.json'] },
  // The same all-C ring twice: over protocol v1 (a header broadcast per step: what v1 stages
  // cost), and with every size told once (a scatter and a gather per step, the original's loop).
  // Step times on (issue 13): the same rows with --trace, in the cells of COST_CELLS only, to
  // measure what keeping and writing them costs against the row without.
  { id: 'mpi/native+trace', kind: 'project', args: ['--transport', 'mpi', '--c-backend', 'native', '--trace', TRACE_FILE], cells: ['2/8B', '2/1KiB'] },
  { id: 'threads/wasm+trace', kind: 'project', args: ['--transport', 'threads', '--c-backend', 'wasm', '--trace', TRACE_FILE], cells: ['2/8B', '2/1KiB'] },
  { id: 'c-floor', kind: 'reference', wire: 'tcp (ob1)' },
  // The minimal floor on the wire and communicators the project's spawn mode uses (UCX shared
  // memory, merged); the same over ob1's TCP loopback and intercommunicators, today's before.
  { id: 'c-floor-min', kind: 'reference', wire: 'shm (UCX, merged)', env: UCX, comm: 'merged' },
  { id: 'c-floor-min-tcp', kind: 'reference', wire: 'tcp (ob1)', comm: 'inter' },
  // The MPMD floor: the all-C ring inside one mpirun, each stage an intracommunicator with the
  // master (MPI_Intercomm_merge) and Scatterv/Gatherv, the fastest of the ways bench/c_floor_mpmd.c
  // has; and the same over an intercommunicator per stage, as the protocol connects: what the
  // protocol's communicators cost under MPMD.
  { id: 'c-floor-mpmd', kind: 'reference', wire: 'shm (ob1 vader)' },
  { id: 'c-floor-mpmd-inter', kind: 'reference', wire: 'shm (ob1 vader)' },
  // MPICH beside Open MPI (issue 28): the project's MPMD run under --mpi mpich, and the same
  // MPMD floor program built by mpicc.mpich under mpiexec.hydra (ch4:ucx: UCX shared memory).
  // In `--mpis` runs only (mpisOnly): MPICH's spinning ranks take ~45 ms a step on this
  // machine's 2 cores, so a cell's second of Open MPI's steps would take them minutes.
  { id: 'mpmd/native-mpich', kind: 'project', args: ['--transport', 'mpi', '--mpi', 'mpich', '--launch', 'mpmd', '--c-backend', 'native'], mpisOnly: true },
  { id: 'c-floor-mpmd-mpich', kind: 'reference', wire: 'shm (MPICH ch4:ucx)', mpisOnly: true },
  // mpi4py at its defaults (ob1: TCP between the spawned jobs), and with the UCX settings a user who knows them sets.
  { id: 'mpi4py', kind: 'reference', wire: 'tcp (ob1)' },
  { id: 'mpi4py-ucx', kind: 'reference', wire: 'shm (UCX)', env: UCX },
];

export const FULL = [
  ...['8B', '1KiB', '10KiB', '100KiB', '1MiB', 'default', 'mixed'].map((shape) => ({ ranks: 2, shape })),
  ...['8B', '1KiB', '1MiB', 'default', 'mixed'].map((shape) => ({ ranks: 10, shape })),
];

export const QUICK = ['8B', '1MiB', 'default'].map((shape) => ({ ranks: 2, shape }));

/**
 * Iterations for a cell, the same for every implementation so checksums compare:
 * enough that the slowest (the mpi4py peer, roughly 200 us per 2 ranks + 1 GB/s here) loops
 * for about `seconds`.
 */
export function iterationsFor(ranks, sizes, seconds) {
  const doubles = sizes.reduce((a, [n1, n2, n3]) => a + n1 + n2 + n3, 0) / sizes.length;
  const bytes = ranks * doubles * 8 * 2; // scattered and gathered once per stage
  const est = 200e-6 * (ranks / 2) + bytes / 1e9;
  // At least 20: with 6 (N=10, 1 MiB) the median of a trial moved 2x between rounds.
  return Math.max(20, Math.min(20000, Math.round(seconds / est)));
}
