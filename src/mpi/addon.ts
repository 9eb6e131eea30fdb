/**
 * The MPI addon's TS face: its one error class and its loader. The addon is built once for
 * each MPI found (build.sh); a process loads the one of its run's MPI (impl/index.ts). The
 * protocol on top of it is in protocol.ts.
 */
import { loadAddon } from '../assets.js';
import { runMpi } from './impl/index.js';

/** Every failed MPI call: `code` is the MPI error code, `errorClass` its class. */
export class MpiError extends Error {
  override name = 'MpiError';
  constructor(
    message: string,
    readonly code: number,
    readonly errorClass: number,
  ) {
    super(message);
  }
}

export type MpiBuffer = Float64Array | Int32Array | Uint8Array;

export interface MpiAddon {
  readonly ROOT: number;
  readonly PROC_NULL: number;
  setErrorClass(cls: typeof MpiError): void;
  init(): { version: string; threadLevel: number; world: number; rank: number; size: number };
  /** `label` names the stage in the watchdog's message if the spawn outlives the timeout. */
  spawn(command: string, args: string[], maxprocs: number, info?: Record<string, string>, label?: string): number;
  /** The deadline of every blocking call from now on, spawn included. */
  setTimeout(ms: number): void;
  getParent(): number | null;
  split(comm: number, color: number, key: number): number | null;
  intercommCreate(local: number, localLeader: number, peer: number, remoteLeader: number, tag: number): number;
  /** MPI_APPNUM: the app context of this process under an MPMD mpirun (0 for the first). */
  appnum(): number | null;
  free(comm: number): void;
  describe(comm: number): { inter: boolean; rank: number; size: number; remoteSize: number };
  bcast(comm: number, buffer: MpiBuffer, root: number): void;
  scatter(comm: number, send: MpiBuffer | null, recv: MpiBuffer | null, count: number, root: number): void;
  gather(comm: number, send: MpiBuffer | null, recv: MpiBuffer | null, count: number, root: number): void;
  /**
   * On an intracommunicator whose root holds no share of its own (a hub merged with a stage):
   * the root's buffer is every other rank's `count` elements in rank order (MPI_Scatterv/Gatherv).
   */
  scatterOthers(comm: number, send: MpiBuffer | null, recv: MpiBuffer | null, count: number, root: number): void;
  gatherOthers(comm: number, send: MpiBuffer | null, recv: MpiBuffer | null, count: number, root: number): void;
  /** MPI_Intercomm_merge: the side passing high = false gets the low ranks. */
  merge(inter: number, high: boolean): number;
  send(comm: number, buffer: MpiBuffer, dest: number, tag: number): void;
  recv(comm: number, buffer: MpiBuffer, source: number, tag: number): number;
  barrier(comm: number): void;
  disconnect(comm: number): void;
  finalize(): void;
  abort(comm: number, code: number): void;
  watch(comm: number, stage: string, pids: Int32Array, timeoutMs: number): void;
  unwatch(comm: number): void;
  /** Kills every watched rank and the singleton's daemon: for when the protocol is out of step. */
  killAll(): void;
  /** Names the stage behind `comm` for the watchdog before its pids are known. */
  label(comm: number, stage: string): void;
  /**
   * Hub processes only: the watchdog reports failures as JSON lines on `fd` (not the
   * CLI's line on stderr), and ends the run when this process's parent stops being `lifelinePid`.
   */
  reportTo(fd: number, lifelinePid: number): void;
  /**
   * Writes one whole line (ending in "\n") where reportTo said, under the same lock as the
   * watchdog's own lines (its failures and a pulse every 500 ms), so none interleave.
   */
  report(line: string): void;
  /**
   * Stage processes: a thread reads state[0] (iteration + 1 while the stage's code runs, else
   * 0) and state[1] (a count of computes); a compute lasting timeoutMs writes
   * `${prefix}did not return from ${what} within N ms (iteration I)` to stderr and ends the process.
   */
  watchCompute(state: Int32Array, timeoutMs: number, prefix: string, what: string): void;
}

let addon: MpiAddon | undefined;

export function mpi(): MpiAddon {
  if (!addon) {
    const impl = runMpi();
    try {
      addon = loadAddon<MpiAddon>(impl.addon);
    } catch (err) {
      throw new Error(`${(err as Error).message} (the MPI transport under ${impl.title} needs: apt-get install -y ${impl.packages})`);
    }
    addon.setErrorClass(MpiError);
  }
  return addon;
}
