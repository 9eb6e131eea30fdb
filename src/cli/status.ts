/**
 * Status lines for a run without a terminal (a batch job's log): every S seconds one line
 * with the iterations done, the rate over the last interval, when the run ends at that
 * rate, and the last checkpoint, as GROMACS's log says "will finish at". A run that stopped
 * moving says so instead of a rate, so a stuck job can be told from a slow one. Printed by
 * a timer, not by progress: a run with no progress still gets its line.
 */

/** Default seconds between status lines in a log (--status-every). */
export const STATUS_EVERY_S = 60;

/** "2.5 s", "45 s", "4 min 10 s", "2 h 5 min", "3 d 4 h": two units at most, the largest that fits. */
export function formatSpan(seconds: number): string {
  if (seconds < 9.95) return `${Math.max(0, seconds).toFixed(1)} s`;
  const s = Math.round(seconds);
  const units: [string, number][] = [
    ['d', 86400],
    ['h', 3600],
    ['min', 60],
    ['s', 1],
  ];
  for (const [i, [name, size]] of units.entries()) {
    if (s < size && i < units.length - 1) continue;
    const big = Math.floor(s / size);
    const [next, nextSize] = units[i + 1] ?? ['', 0];
    const small = nextSize ? Math.floor((s % size) / nextSize) : 0;
    return small ? `${big} ${name} ${small} ${next}` : `${big} ${name}`;
  }
  return '0 s';
}

/** A wall-clock time as the log's reader reads it: "2026-12-06 14:03:07" (local time). */
export function formatClock(ms: number): string {
  const d = new Date(ms);
  const two = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())} ${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}`;
}

export interface StatusSnapshot {
  done: number;
  total: number;
  /** Iterations done and seconds passed since the last line (the rate's window). */
  windowDone: number;
  windowS: number;
  /** Now, in ms since the epoch. */
  now: number;
  /** The last checkpoint on disk: its iteration and path. */
  checkpoint?: { iterations: number; path: string };
}

/** One status line, from numbers only (status.test in cli.test.mjs checks its form). */
export function statusLine(s: StatusSnapshot): string {
  const pct = ((100 * s.done) / s.total).toFixed(1);
  const parts = [`status: ${s.done} of ${s.total} iterations (${pct}%)`];
  if (s.windowDone > 0) {
    const rate = s.windowDone / s.windowS;
    const left = (s.total - s.done) / rate;
    parts.push(`${rate >= 100 ? rate.toFixed(0) : rate >= 1 ? rate.toFixed(1) : rate.toPrecision(2)} iterations/s`);
    parts.push(`will finish in ${formatSpan(left)} (${formatClock(s.now + left * 1000)})`);
  } else if (s.windowS >= 2) {
    // Progress comes about once a second: over a shorter window none may have come yet.
    parts.push(`no iteration ended in the last ${formatSpan(s.windowS)}`);
  }
  parts.push(s.checkpoint ? `last checkpoint: iteration ${s.checkpoint.iterations} (${s.checkpoint.path})` : 'no checkpoint yet');
  return parts.join(', ');
}

/** The CLI's status lines: `progress` and `checkpoint` feed it, a timer prints. */
export class StatusLines {
  private done = 0;
  private lastDone = 0;
  private lastAt = Date.now();
  private checkpoint?: { iterations: number; path: string };
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly total: number,
    everyS: number,
    private readonly write: (line: string) => void,
  ) {
    this.timer = setInterval(() => this.print(), everyS * 1000);
    this.timer.unref(); // a status line never keeps the process up
  }

  private started = false;

  progress(done: number): void {
    // The rate's first window starts at the first progress: a resumed run's count starts
    // at its checkpoint's iteration, and the stages' start-up is not iterations.
    if (!this.started) {
      this.started = true;
      this.lastDone = Math.max(this.lastDone, done - 1);
      this.lastAt = Math.max(this.lastAt, Date.now() - 1);
    }
    this.done = Math.max(this.done, done);
  }

  written(cp: { iterations: number; path: string }): void {
    this.checkpoint = { iterations: cp.iterations, path: cp.path };
    this.done = Math.max(this.done, cp.iterations); // a checkpoint may be newer than the last progress
  }

  private print(): void {
    const now = Date.now();
    this.write(statusLine({ done: this.done, total: this.total, windowDone: this.done - this.lastDone, windowS: (now - this.lastAt) / 1000, now, checkpoint: this.checkpoint }) + '\n');
    this.lastDone = this.done;
    this.lastAt = now;
  }

  stop(): void {
    clearInterval(this.timer);
  }
}
