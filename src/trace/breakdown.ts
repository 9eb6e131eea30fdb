/**
 * Where an iteration's time goes, per stage: the hub's scatter until the slowest rank has
 * its input, that rank's compute, and from its compute's end until the hub has every
 * rank's output; plus the hub's own time between steps. The three parts of a step add up
 * to the step as the hub timed it, so the shares of all stages and the hub make the
 * iteration. Computed from the kept records of StepTimes (log.ts).
 */
import { REC, type StepTimes } from './log.js';

export interface Part {
  medianS: number;
  p95S: number;
  /** The median's share of the median iteration. */
  share: number;
}

export interface StageBreakdown {
  name: string;
  scatter: Part;
  /** Null for a stage that reports no times: its compute is inside its gather. */
  compute: (Part & { slowestRank: number }) | null;
  gather: Part;
  /** Per rank, its median compute time (s): the rank that stands out is the slow one. */
  rankComputeS: number[] | null;
}

export interface Breakdown {
  /** Iterations the figures rest on (every `every`-th, the newest `cap`), and how many the cap dropped. */
  iterations: number;
  every: number;
  dropped: number;
  iteration: { medianS: number; p95S: number };
  stages: StageBreakdown[];
  hub: Part;
}

function stats(values: number[]): { medianS: number; p95S: number } {
  const v = Float64Array.from(values).sort();
  const n = v.length;
  if (n === 0) return { medianS: 0, p95S: 0 };
  return { medianS: (v[(n - 1) >> 1] + v[n >> 1]) / 2 / 1e6, p95S: v[Math.ceil(0.95 * n) - 1] / 1e6 };
}

export function computeBreakdown(t: StepTimes, names: string[]): Breakdown {
  const S = t.hub.length;
  const n = t.kept;
  const spans = new Float64Array(n);
  const iterations: number[] = [];
  for (let j = 0; j < n; j++) iterations.push(t.hub[S - 1][j * REC + 3] - t.hub[0][j * REC + 1]);
  const iteration = stats(iterations);
  const part = (us: number[]): Part => {
    const s = stats(us);
    return { ...s, share: iteration.medianS > 0 ? s.medianS / iteration.medianS : 0 };
  };
  const stages = names.map((name, s): StageBreakdown => {
    const hub = t.hub[s];
    const ranks = t.ranks[s];
    const scatter: number[] = [];
    const compute: number[] = [];
    const gather: number[] = [];
    const slowCount = new Array<number>(ranks?.length ?? 0).fill(0);
    for (let j = 0; j < n; j++) {
      const at = j * REC;
      const [ta, tb, tc] = [hub[at + 1], hub[at + 2], hub[at + 3]];
      spans[j] += tc - ta;
      if (!ranks) {
        scatter.push(tb - ta);
        gather.push(tc - tb);
        continue;
      }
      let slow = 0;
      for (let r = 1; r < ranks.length; r++) {
        if (ranks[r][at + 3] - ranks[r][at + 2] > ranks[slow][at + 3] - ranks[slow][at + 2]) slow = r;
      }
      slowCount[slow]++;
      const rec = ranks[slow];
      scatter.push(rec[at + 2] - ta);
      compute.push(rec[at + 3] - rec[at + 2]);
      gather.push(tc - rec[at + 3]);
    }
    const slowestRank = slowCount.indexOf(Math.max(...slowCount));
    return {
      name,
      scatter: part(scatter),
      compute: ranks ? { ...part(compute), slowestRank } : null,
      gather: part(gather),
      rankComputeS: ranks ? ranks.map((rec) => stats(Array.from({ length: n }, (_, j) => rec[j * REC + 3] - rec[j * REC + 2])).medianS) : null,
    };
  });
  return {
    iterations: n,
    every: t.spec.every,
    dropped: t.dropped,
    iteration,
    stages,
    hub: part(iterations.map((it, j) => it - spans[j])),
  };
}
