/**
 * Open MPI's wire: what an MPI run's messages travel on under Open MPI, decided in this one
 * place from the run's launch mode, whether its ranks are all on this host, what the user's environment already sets
 * and what this machine's Open MPI can select. Measured here (Open MPI 4.1.4 with UCX
 * 1.13, 2 cores, N=2 8 B per rank, medians per iteration; issue 20):
 * - spawn mode, ob1: its shared-memory BTL (vader) connects only ranks of one job, so the
 *   hub and its spawned stage jobs meet over TCP loopback (~110-180 µs);
 * - spawn mode, pml ucx: UCX's shared-memory transports do connect separately spawned jobs
 *   (~48 µs), and with the steps on merged intracommunicators (~30 µs); over ob1/TCP the
 *   merged communicators are slower (259 µs against 112 µs), so only shm merges;
 * - across hosts UCX would use its own TCP transport, ~7x slower than ob1's: ob1 TCP;
 * - MPMD (one mpirun, one job): ob1 with vader inside a host beats UCX (20 against 30 µs).
 * UCX is selected only with pml_ucx_tls=any and pml_ucx_devices=any where there is no
 * InfiniBand; whether it can be selected at all is probed once per machine (a process that
 * initialises MPI with it) and remembered in the compile cache.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { addonPath } from '../../assets.js';
import { UsageError } from '../../errors.js';
import { cacheDir } from '../../pipeline/compile.js';
import type { Wire, WireContext } from '../wire.js';

/**
 * The ob1 wires name their pml: left to choose, every process's MPI_Init also opened the cm
 * pml, whose OFI MTL probes libfabric's providers: 0.37 s an MPI_Init here against 0.16 s
 * with ob1 named (a singleton, median of 3), 0.2 s of a core for every rank of every run.
 * ob1 is what Open MPI chose on these wires anyway (ucx's pml declines shared memory and TCP
 * unless told otherwise, UCX_ENV).
 */
const OB1 = { OMPI_MCA_pml: 'ob1' };
/** MCA variables that choose a transport: set by the user, they win and we add none. */
const USER_WIRE_VARS = ['OMPI_MCA_pml', 'OMPI_MCA_btl', 'OMPI_MCA_mtl'];

/**
 * UCX_MEM_EVENTS=no: UCX patches mmap/munmap in every process (its memory hooks, "bistro")
 * while the process runs, and a thread inside the code being patched resumes on half-written
 * instructions: Node stage processes (V8 maps memory from several threads) died with SIGSEGV
 * at start-up, 1 to 2 runs in 20 here (found by the property tests; 0 in 25 without the hooks).
 * The hooks serve UCX's registration cache for RDMA devices, which shared memory does not use:
 * 8 B and 1 MiB per rank measured the same with and without.
 * UCX_ERROR_SIGNALS empty and UCX_HANDLE_ERRORS=none: UCX's own handlers for SIGSEGV & co.
 * printed a 10-line backtrace on every MPI_Abort of a stage (a stage's failure report is the
 * one line that matters), and would take SIGSEGV from V8, which uses it for WebAssembly
 * bounds checks, and from the C SDK, which names a kernel's crash.
 */
export const UCX_ENV: Record<string, string> = {
  OMPI_MCA_pml: 'ucx',
  OMPI_MCA_pml_ucx_tls: 'any',
  OMPI_MCA_pml_ucx_devices: 'any',
  UCX_MEM_EVENTS: 'no',
  UCX_ERROR_SIGNALS: '',
  UCX_HANDLE_ERRORS: 'none',
};

export function chooseWire(c: WireContext): Wire {
  const user = USER_WIRE_VARS.filter((k) => c.env[k] !== undefined);
  if (user.length) {
    if (c.request !== 'auto') {
      throw new UsageError(`--wire ${c.request}: ${user.map((k) => `${k}=${c.env[k]}`).join(', ')} is set in the environment and chooses the wire; unset it or use --wire auto`);
    }
    return { name: 'user', how: `as the environment says (${user.map((k) => `${k}=${c.env[k]}`).join(', ')})`, env: {}, merged: c.launch === 'mpmd' };
  }
  if (c.launch === 'mpmd') {
    // One job: ob1's vader between the ranks of a host, TCP between hosts; by hand, TCP only.
    if (c.request === 'tcp') return { name: 'tcp', how: 'TCP (ob1), shared memory off', env: { ...OB1, OMPI_MCA_btl: 'self,tcp' }, merged: true };
    return { name: 'shm', how: c.local ? 'shared memory (ob1 vader, one job)' : 'shared memory within a host, TCP between hosts (ob1)', env: { ...OB1 }, merged: true };
  }
  const ucx = c.ucx ?? ucxSelectable;
  const wantShm = c.request === 'shm' || (c.request === 'auto' && c.local);
  if (wantShm) {
    if (ucx()) return { name: 'shm', how: 'UCX shared memory between the spawned jobs, merged communicators', env: { ...UCX_ENV }, merged: true };
    if (c.request === 'shm') {
      throw new UsageError('--wire shm needs Open MPI built with UCX whose pml can be selected here (it could not); use --wire auto or --wire tcp');
    }
  }
  return { name: 'tcp', how: c.local ? 'TCP loopback between the spawned jobs (ob1)' : 'TCP between the hosts (ob1)', env: { ...OB1 }, merged: false };
}

/** Whether Open MPI can select pml ucx on this machine: probed once, remembered per library build. */
export function ucxSelectable(): boolean {
  const key = probeKey();
  if (key === undefined) return false;
  const file = join(cacheDir(), 'wire-probe.json');
  try {
    const seen = JSON.parse(readFileSync(file, 'utf8')) as { key: string; ucx: boolean };
    if (seen.key === key) return seen.ucx;
  } catch {
    // no probe yet, or an unreadable one: probe again
  }
  const ucx = probe();
  try {
    mkdirSync(cacheDir(), { recursive: true });
    const tmp = `${file}.tmp-${process.pid}`;
    writeFileSync(tmp, JSON.stringify({ key, ucx }) + '\n');
    renameSync(tmp, file);
  } catch {
    // an unwritable cache: probe again next time
  }
  return ucx;
}

/** What the probe's answer depends on: the MPI library, UCX's, and the host. */
function probeKey(): string | undefined {
  const libs = ['/usr/lib/x86_64-linux-gnu/libmpi.so.40', '/usr/lib/x86_64-linux-gnu/libucp.so.0'];
  let addon: string;
  try {
    addon = addonPath('commloop_mpi');
  } catch {
    return undefined;
  }
  const stamp = (p: string) => (existsSync(p) ? String(statSync(p).mtimeMs) : 'none');
  return [hostname(), ...libs.map(stamp), stamp(addon)].join(':');
}

/** A process that initialises MPI with pml ucx forced, and finalises: exit 0 when UCX was selected. */
function probe(): boolean {
  const code = `const addon = require(${JSON.stringify(addonPath('commloop_mpi'))}); addon.setErrorClass(Error); addon.init(); addon.finalize();`;
  const env: NodeJS.ProcessEnv = { ...process.env, ...UCX_ENV, OMPI_MCA_btl: 'self', OMPI_MCA_pml_base_verbose: '0' };
  if (process.getuid?.() === 0) Object.assign(env, { OMPI_ALLOW_RUN_AS_ROOT: '1', OMPI_ALLOW_RUN_AS_ROOT_CONFIRM: '1' });
  const r = spawnSync(process.execPath, ['-e', code], { env, stdio: 'ignore', timeout: 20_000 });
  return r.status === 0;
}
