/** A bad command line or pipeline: the CLI prints the message on one line and exits 2. */
export class UsageError extends Error {
  override name = 'UsageError';
}

/** A stage failed or died while the ring was running: names the stage (and rank when known). */
export class StageError extends Error {
  override name = 'StageError';
  constructor(
    readonly stage: string,
    readonly rank: number | undefined,
    what: string,
  ) {
    super(`stage "${stage}"${rank === undefined ? '' : ` rank ${rank}`}: ${what}`);
  }
}
