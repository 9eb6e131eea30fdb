/**
 * One seam per MPI (issue 28): what is one MPI implementation's own, behind one interface
 * that each implementation fills in a file of its own (openmpi.ts, mpich.ts). The rest of
 * src/mpi speaks MPI through the addon (built once for each MPI found, build.sh) and asks
 * the run's MpiImpl for what differs: the launcher and its command line, the environment
 * and the wire, what the launcher prints, what a killed run leaves behind, whether
 * MPI_Comm_spawn works. Adding the next MPI (Intel MPI, a 5.x with the standard ABI) is one
 * more file here and its line in IMPLS.
 */
import { existsSync, realpathSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { UsageError } from '../../errors.js';
import { openMpi } from './openmpi.js';
import { mpich } from './mpich.js';

export { MPI_ENV, MPI_REQUESTS, type App, type MpiImpl, type MpiName, type MpiRequest, type TextContext } from './mpi-impl.js';
import { MPI_ENV, MPI_REQUESTS, type MpiImpl, type MpiName, type MpiRequest } from './mpi-impl.js';

const IMPLS: Record<MpiName, MpiImpl> = { openmpi: openMpi, mpich };

export function mpiImpl(name: MpiName): MpiImpl {
  return IMPLS[name];
}

/** The MPI of this process's run (MPI_ENV), for the hub and the stage processes. */
export function runMpi(env: NodeJS.ProcessEnv = process.env): MpiImpl {
  const name = env[MPI_ENV];
  return name === 'mpich' ? mpich : openMpi;
}

/**
 * The MPI a run uses: the one asked for, or with `auto` the one `mpiexec` on PATH belongs to
 * (its real path names it: Debian's alternatives end in mpiexec.openmpi or mpiexec.hydra),
 * else the first installed, Open MPI first. Throws a UsageError saying what to install when
 * the one asked for is not installed or its addon is not built.
 */
export function chooseMpi(request: MpiRequest, env: NodeJS.ProcessEnv = process.env, built: (impl: MpiImpl) => boolean = () => true): { impl: MpiImpl; why: string } {
  if (!MPI_REQUESTS.includes(request)) throw new UsageError(`mpi must be one of ${MPI_REQUESTS.join(', ')} (got ${JSON.stringify(request)})`);
  let impl: MpiImpl;
  let why: string;
  if (request !== 'auto') {
    impl = IMPLS[request];
    why = `--mpi ${request}`;
  } else {
    const onPath = mpiexecOnPath(env);
    const owner = onPath && Object.values(IMPLS).find((m) => m.name === ownerOf(onPath));
    if (owner && owner.installed()) {
      impl = owner;
      why = `auto: mpiexec on PATH is ${owner.title}'s (${onPath})`;
    } else {
      impl = Object.values(IMPLS).find((m) => m.installed()) ?? openMpi;
      why = `auto: ${onPath ? `mpiexec on PATH (${onPath}) is neither's; ` : 'no mpiexec on PATH; '}${impl.title} is installed`;
    }
  }
  if (!impl.installed()) throw new UsageError(`--mpi ${impl.name}: ${impl.title} is not installed (apt-get install -y ${impl.packages})`);
  // Asked for by name, a missing build is bad input; with auto the run's preflight names what is missing, as it always did.
  if (request !== 'auto' && !built(impl)) throw new UsageError(`--mpi ${impl.name}: commloop's addon for ${impl.title} is not built (bash build.sh builds one for each MPI installed)`);
  return { impl, why };
}

/** The real path of `mpiexec` as PATH finds it, or undefined. */
function mpiexecOnPath(env: NodeJS.ProcessEnv): string | undefined {
  for (const dir of (env.PATH ?? '').split(delimiter)) {
    const p = join(dir, 'mpiexec');
    if (!dir || !existsSync(p)) continue;
    try {
      return realpathSync(p);
    } catch {
      return p;
    }
  }
  return undefined;
}

/** Which MPI a launcher's real path belongs to. */
function ownerOf(path: string): MpiName | undefined {
  if (/openmpi|orterun|prterun/.test(path)) return 'openmpi';
  if (/mpich|hydra/.test(path)) return 'mpich';
  return undefined;
}
