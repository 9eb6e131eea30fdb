/**
 * What an MPI run's messages travel on: the request, the answer, and what an MPI's choice
 * (src/mpi/impl/: openmpi-wire.ts, mpich.ts) is made from.
 */

/** What a run asks for: `auto` (the fastest this run can have), or one by hand. */
export type WireRequest = 'auto' | 'shm' | 'tcp';
export const WIRE_REQUESTS: readonly WireRequest[] = ['auto', 'shm', 'tcp'];

/** What a run used: shared memory, TCP, the user's own MCA settings, or (threads) one process's memory. */
export type WireName = 'shm' | 'tcp' | 'user' | 'memory';

export interface Wire {
  name: WireName;
  /** How, in words: "UCX shared memory between the spawned jobs". */
  how: string;
  /** MCA variables (environment) for every process of the run. */
  env: Record<string, string>;
  /** The project's own stages step on intracommunicators merged with the hub (FLAG_MERGED). */
  merged: boolean;
}

export interface WireContext {
  launch: 'spawn' | 'mpmd';
  /** Every rank runs on this host (no --host, --hostfile or allocation elsewhere). */
  local: boolean;
  request: WireRequest;
  env: NodeJS.ProcessEnv;
  /** Open MPI: whether pml ucx can be selected here (default: the probe). */
  ucx?: () => boolean;
}
