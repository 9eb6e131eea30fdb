/**
 * Iteration times in constant memory: exact count, first, last, sum, min and max, and the
 * median and p95 from a log-linear histogram (HDR histogram's layout), so a run of 1e10
 * iterations keeps the same few hundred kB as a run of ten.
 *
 * The histogram: a value in nanoseconds falls into octave [2^e, 2^(e+1)) ns, e = 0..41,
 * split into 2^SUB equal sub-buckets; bucket i (from 1) is octave (i-1) >> SUB, sub-bucket
 * (i-1) & (2^SUB-1), and buckets 0 and the last hold the values below and above the range.
 * That is HDR's layout, with one change: HDR buckets integer nanoseconds, so below 2^SUB ns
 * it has unit buckets (a double rounded to them is off by up to 0.5 ns: 50% at 1 ns); this
 * one buckets the double itself, whose exponent and top SUB mantissa bits ARE the bucket's
 * index (one shift), so the bound below holds from 1 ns up, and add() needs no log, no
 * division, no loop: a range check, a store and a load. Above
 * 2^SUB ns the buckets are exactly HDR's for floor(ns).
 *
 * Precision: SUB = 10. A bucket is at most 2^-10 of its lower edge wide, and a bucket
 * stands for its midpoint clamped to [min, max], so a reported median or p95 is within
 * 2^-11 (0.049%) relative of the exact order statistic (plus a few ulps from the s <-> ns
 * conversion). Why 10: the report prints three significant digits (formatTime), one step
 * of which is 0.1% to 1%; at 2^-11 the histogram's error is below the last digit shown,
 * where SUB = 7 (0.39%) would change it. Cost: (42 octaves * 1024 + 2) buckets * 8 bytes = 344 kB
 * per instance, fixed; the JSON form keeps only the non-empty buckets.
 *
 * Range: 1 ns .. 2^42 ns (73 min). Values outside are counted in two end buckets of their
 * own (below 1 ns, above 73 min), and min and max stay exact; an order statistic that falls
 * in one is given as min (below) or max (above): exact when those values are all equal
 * (zeros, one hung iteration), off by under 1 ns at the low end, and the bound above stays
 * true for every value inside the range. A negative or NaN time counts as 0,
 * +Infinity as Number.MAX_VALUE (JSON has no Infinity).
 *
 * Order statistics: median = (x[(n-1)>>1] + x[n>>1]) / 2 over the sorted times x (the
 * lower and upper median, averaged: the exact median's convention), each x[r] taken as its
 * bucket's value; p95 = x[ceil(0.95 n) - 1] (nearest rank). Rank 0 is min and rank n-1 is
 * max, exactly, so one or two values give an exact median. Counts are doubles (exact to
 * 2^53); the sum is compensated (Neumaier), so the mean of 1e10 times keeps ~1e-16 relative.
 */

/** Sub-buckets per octave: 2^SUB. */
const SUB = 10;
/** Octaves from 1 ns: the last holds [2^41, 2^42) ns, 36.7 .. 73.3 min. */
const OCTAVES = 42;
const BUCKETS = (OCTAVES << SUB) + 2;
/** Bucket of the values above the range. */
const OVER = BUCKETS - 1;
/** Largest ns value a bucket holds (all mantissa bits set in the last octave); more clamps here. */
const MAX_NS = 2 ** OCTAVES - 1;
/** Shift of a double's high word that leaves (biased exponent << SUB) | top SUB mantissa bits. */
const SHIFT = 20 - SUB;
/** 1023 is the exponent's bias: 1 ns (2^0) lands in bucket 1, after the one below the range. */
const BIAS = (1023 << SUB) - 1;
/** Wire format version. */
const WIRE_VERSION = 1;

// The bucket index is read from the bits of the value as a double, through a scratch
// double shared by every instance (add() is synchronous, so nothing can interleave).
const F64 = new Float64Array(1);
const U32 = new Uint32Array(F64.buffer);
/** Which 32-bit word holds the sign, exponent and top mantissa bits. */
const HI = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1 ? 1 : 0;

export interface IterSummary {
  count: number;
  firstS: number;
  lastS: number;
  meanS: number;
  minS: number;
  maxS: number;
  medianS: number;
  p95S: number;
}

/** IterStats as JSON (it crosses a pipe between processes): every field a finite number. */
export interface WireIterStats {
  v: typeof WIRE_VERSION;
  /** The writer's SUB: a reader with another precision refuses it. */
  sub: number;
  count: number;
  firstS: number;
  lastS: number;
  /** The compensated sum: sumS + compS is the sum of every time. */
  sumS: number;
  compS: number;
  /** 0 when count is 0. */
  minS: number;
  maxS: number;
  /** The non-empty buckets, ascending, as pairs: index (the first) or its distance from the previous one, then count. */
  buckets: number[];
}

/** The value a bucket inside the range stands for, in seconds: its midpoint. */
function bucketMidS(i: number): number {
  const j = i - 1;
  return (2 ** (j >> SUB) * (1 + ((j & ((1 << SUB) - 1)) + 0.5) / (1 << SUB))) / 1e9;
}

/** Iteration times in constant memory: exact count/first/last/sum/min/max, median and p95 from a log-linear histogram (HDR-style). */
export class IterStats {
  /** Bound on the relative error of medianS and p95S against the exact order statistic (2^-11). */
  static readonly RELATIVE_ERROR = 2 ** -(SUB + 1);
  /** Buckets of the histogram, the two end ones included: the most a toJSON can list. */
  static readonly BUCKETS = BUCKETS;
  private readonly counts = new Float64Array(BUCKETS);
  private n = 0;
  private first = 0;
  private last = 0;
  private sum = 0;
  /** Neumaier's compensation: what the rounding of `sum` lost. */
  private comp = 0;
  private min = Infinity;
  private max = 0;

  /** One iteration's time, in seconds. The hot path: no allocation, a few compares and flops (~3.5 ns). */
  add(seconds: number): void {
    let s = seconds;
    if (!(s >= 0 && s <= Number.MAX_VALUE)) s = s > 0 ? Number.MAX_VALUE : 0;
    if (this.n === 0) this.first = s;
    this.last = s;
    if (s < this.min) this.min = s;
    if (s > this.max) this.max = s;
    const sum = this.sum;
    const t = sum + s;
    // Both are >= 0, so the larger is the one whose low bits survive the addition.
    this.comp += sum >= s ? sum - t + s : s - t + sum;
    this.sum = t;
    this.n++;
    const ns = s * 1e9;
    let i = 0;
    if (ns >= 1) {
      if (ns <= MAX_NS) {
        F64[0] = ns;
        i = (U32[HI] >>> SHIFT) - BIAS;
      } else i = OVER;
    }
    this.counts[i]++;
  }

  get count(): number {
    return this.n;
  }

  summary(): IterSummary {
    const n = this.n;
    if (n === 0) return { count: 0, firstS: 0, lastS: 0, meanS: 0, minS: 0, maxS: 0, medianS: 0, p95S: 0 };
    return {
      count: n,
      firstS: this.first,
      lastS: this.last,
      meanS: (this.sum + this.comp) / n,
      minS: this.min,
      maxS: this.max,
      medianS: (this.atRank((n - 1) >> 1) + this.atRank(n >> 1)) / 2,
      p95S: this.atRank(Math.ceil((n * 95) / 100) - 1),
    };
  }

  /** The r-th smallest time (0-based): its bucket's midpoint clamped to [min, max]; min or max for rank 0, n-1 and the end buckets. */
  private atRank(r: number): number {
    if (r <= 0) return this.min;
    if (r >= this.n - 1) return this.max;
    const counts = this.counts;
    let seen = 0;
    for (let i = 0; i < BUCKETS; i++) {
      seen += counts[i];
      if (seen <= r) continue;
      if (i === 0) return this.min;
      if (i === OVER) return this.max;
      return Math.min(this.max, Math.max(this.min, bucketMidS(i)));
    }
    return this.max; // unreachable while the counts add up to n
  }

  toJSON(): WireIterStats {
    const buckets: number[] = [];
    let prev = 0;
    for (let i = 0; i < BUCKETS; i++) {
      const c = this.counts[i];
      if (c === 0) continue;
      buckets.push(i - prev, c);
      prev = i;
    }
    const empty = this.n === 0;
    return {
      v: WIRE_VERSION,
      sub: SUB,
      count: this.n,
      firstS: this.first,
      lastS: this.last,
      sumS: this.sum,
      compS: this.comp,
      minS: empty ? 0 : this.min,
      maxS: empty ? 0 : this.max,
      buckets,
    };
  }

  /** Reads what toJSON wrote; a malformed or foreign one throws a TypeError or RangeError naming the field. */
  static fromJSON(w: WireIterStats): IterStats {
    if (typeof w !== 'object' || w === null) throw new TypeError(`iteration stats must be an object (got ${JSON.stringify(w)})`);
    if (w.v !== WIRE_VERSION) throw new RangeError(`iteration stats: version must be ${WIRE_VERSION} (got ${JSON.stringify(w.v)})`);
    if (w.sub !== SUB) throw new RangeError(`iteration stats: sub must be ${SUB} (got ${JSON.stringify(w.sub)})`);
    for (const k of ['count', 'firstS', 'lastS', 'sumS', 'compS', 'minS', 'maxS'] as const) {
      if (typeof w[k] !== 'number' || !Number.isFinite(w[k])) {
        throw new TypeError(`iteration stats: ${k} must be a finite number (got ${JSON.stringify(w[k])})`);
      }
    }
    const b = w.buckets;
    if (!Array.isArray(b) || b.length % 2 !== 0) throw new TypeError('iteration stats: buckets must be an array of (index, count) pairs');
    const out = new IterStats();
    let at = 0;
    let total = 0;
    for (let j = 0; j < b.length; j += 2) {
      const step = b[j];
      const c = b[j + 1];
      at += step;
      if (!Number.isInteger(step) || step < (j === 0 ? 0 : 1) || at >= BUCKETS) {
        throw new RangeError(`iteration stats: bucket index ${at} out of order or out of range (0..${BUCKETS - 1})`);
      }
      if (!Number.isInteger(c) || c < 1) throw new RangeError(`iteration stats: bucket ${at} count must be a positive integer (got ${JSON.stringify(c)})`);
      out.counts[at] = c;
      total += c;
    }
    if (total !== w.count) throw new RangeError(`iteration stats: buckets hold ${total} times, count says ${w.count}`);
    out.n = w.count;
    out.first = w.firstS;
    out.last = w.lastS;
    out.sum = w.sumS;
    out.comp = w.compS;
    if (w.count > 0) {
      out.min = w.minS;
      out.max = w.maxS;
    }
    return out;
  }

  /** Adds another's times, as if they came after this one's (first stays, last becomes the other's). */
  merge(other: IterStats): void {
    if (other.n === 0) return;
    if (this.n === 0) this.first = other.first;
    this.last = other.last;
    if (other.min < this.min) this.min = other.min;
    if (other.max > this.max) this.max = other.max;
    for (const part of [other.sum, other.comp]) {
      const t = this.sum + part;
      this.comp += Math.abs(this.sum) >= Math.abs(part) ? this.sum - t + part : part - t + this.sum;
      this.sum = t;
    }
    this.n += other.n;
    const mine = this.counts;
    const theirs = other.counts;
    for (let i = 0; i < BUCKETS; i++) mine[i] += theirs[i];
  }
}
