/** A bad command line or pipeline: the CLI prints the message on one line and exits 2. */
export class UsageError extends Error {
  override name = 'UsageError';
}

/** Why a run failed; the first failure wins, what the runtime tore down after it is collateral. */
export type FailureReason =
  /** a rank or the hub exited (or was killed) before the run ended */
  | 'exited'
  | 'killed'
  /** a stage did not answer one step (or start-up, or shutdown) within the timeout */
  | 'timeout'
  /** a stage broke the protocol: an MPI error mid-step, a bad message */
  | 'protocol'
  /** a rank returned fewer or more elements than the step asked */
  | 'count'
  /** the stage's own code threw, rejected or reported a failure */
  | 'user-code'
  /** a stage (or the MPI runtime) could not start */
  | 'start';

export interface Failure {
  /** The stage's pipeline name; undefined when no stage can be blamed (the hub itself). */
  stage?: string;
  rank?: number;
  host?: string;
  reason: FailureReason;
  /** What happened, in words: "exited with code 3", "ValueError: boom". */
  detail: string;
}

/**
 * A run that failed: every failure of runPipeline rejects with this. The message is one
 * line built from the fields: `stage "c" rank 1 on node2: exited with code 3`.
 */
export class RunError extends Error implements Failure {
  override name = 'RunError';
  readonly stage?: string;
  readonly rank?: number;
  readonly host?: string;
  readonly reason: FailureReason;
  readonly detail: string;
  /** Open MPI's own messages for this run, when it printed any (the CLI names it). */
  log?: string;
  /** Whose messages the log holds: the run's MPI ("Open MPI", "MPICH"). */
  logOf?: string;
  /** With checkpoints: the iteration the newest one on disk holds, where `--resume` goes on. */
  resumeFrom?: number;

  constructor(f: Failure) {
    super(describeFailure(f));
    this.stage = f.stage;
    this.rank = f.rank;
    this.host = f.host;
    this.reason = f.reason;
    this.detail = f.detail;
  }

  /** The run had checkpoints: the message ends with where a resumed run would go on. */
  resumeAt(iterations: number): void {
    this.resumeFrom = iterations;
    this.message = `${describeFailure(this)}; resume from iteration ${iterations} with --resume`;
  }
}

export function describeFailure(f: Failure): string {
  if (f.stage === undefined) return f.detail;
  const where = `stage "${f.stage}"${f.rank === undefined ? '' : ` rank ${f.rank}`}${f.host ? ` on ${f.host}` : ''}`;
  return `${where}: ${f.detail}`;
}
