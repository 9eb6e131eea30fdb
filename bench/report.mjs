// Writes docs/BENCHMARKS.md and docs/bench-plot.svg from the bench's JSON lines.
// Never edit those two files by hand: run `npm run bench` (or `node bench/report.mjs`).
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { IMPLS, SHAPES } from './trials.mjs';

const us = (s) => (s * 1e6).toFixed(s < 1e-4 ? 2 : 1);
const x = (r) => (r === undefined ? '–' : `${r.toFixed(2)}x`);

/**
 * Cells of the trial table; an implementation run in several rounds counts as the median of
 * its rounds' medians (min: the least min), with `spread` the rounds' lowest and highest median.
 */
function cellsOf(trials) {
  const cells = new Map();
  for (const t of trials) {
    const key = `${t.ranks}|${t.shape}`;
    if (!cells.has(key)) cells.set(key, { ranks: t.ranks, shape: t.shape, label: t.label, iterations: t.iterations, runs: {}, by: {} });
    (cells.get(key).runs[t.impl] ??= []).push(t);
  }
  for (const c of cells.values()) {
    for (const [impl, runs] of Object.entries(c.runs)) {
      const bad = runs.find((t) => !t.ok);
      if (bad || runs.length === 1) {
        c.by[impl] = bad ?? runs[0];
        continue;
      }
      const meds = runs.map((t) => t.result.medianIterS).sort((a, b) => a - b);
      const result = {
        ...runs[0].result,
        medianIterS: mid(meds),
        minIterS: Math.min(...runs.map((t) => t.result.minIterS)),
        startS: mid(runs.map((t) => t.result.startS)),
      };
      c.by[impl] = { ...runs[0], result, spread: [meds[0], meds[meds.length - 1]], rounds: runs.length };
    }
  }
  return [...cells.values()];
}

const median = (t) => (t?.ok ? t.result.medianIterS : undefined);
const ratio = (a, b) => (a !== undefined && b !== undefined ? a / b : undefined);
const mid = (a) => {
  const s = [...a].sort((p, q) => p - q);
  return (s[(s.length - 1) >> 1] + s[s.length >> 1]) / 2;
};

/**
 * Row `impl` against row `ref` of a cell, paired round by round: each round ran every row
 * back to back, so a round's ratio compares like with like even when the shared machine's
 * pace changes between rounds (it does, up to 2x over minutes). `r` is the median of the
 * rounds' ratios, `sp` their lowest and highest (undefined with one round).
 */
function pair(c, impl, ref) {
  if (!c.by[impl]?.ok || !c.by[ref]?.ok) return { r: undefined, sp: undefined };
  const a = c.runs[impl].filter((t) => t.ok);
  const b = c.runs[ref].filter((t) => t.ok);
  const each = a.flatMap((t) => b.filter((u) => u.round === t.round).map((u) => t.result.medianIterS / u.result.medianIterS));
  if (each.length < 2) return { r: ratio(median(c.by[impl]), median(c.by[ref])), sp: undefined };
  return { r: mid(each), sp: [Math.min(...each), Math.max(...each)] };
}
const rr = (c, impl, ref) => pair(c, impl, ref).r;

/**
 * A target's verdict from its worst ratio `r`: met only when that is within the limit. `cells`
 * are every judged [ratio, spread]: a met target says when a cell's spread reaches over the
 * limit, a missed one when the spread of every cell over it reaches under (noise, not cost).
 */
function judge(r, limit, cells) {
  if (r === undefined) return 'not measured';
  const met = r <= limit;
  const over = cells.filter(([cr]) => cr > limit);
  const crossing = met
    ? cells.some(([, sp]) => sp && sp[1] > limit)
    : over.every(([, sp]) => sp && sp[0] <= limit);
  return `${met ? '**met**' : '**missed**'}${crossing ? `, but the rounds' spread ${met ? 'reaches over' : 'reaches under'} ${limit}x` : ''}`;
}

/** "1.23x (rounds 0.98x…1.61x)": a ratio and, where rounds ran, the lowest and highest of the rounds' own ratios. */
const withSpread = (r, sp) => `${x(r)}${sp ? ` (rounds ${x(sp[0])}…${x(sp[1])})` : ''}`;

/**
 * A "where it misses" table: one row per cell, one column per [row, reference] pair, each the
 * paired ratio with its rounds' spread; the column header is "row / name of the reference".
 */
function missTable(cells, cols) {
  const out = [`| cell | ${cols.map(([a, , name]) => `${a} / ${name}`).join(' | ')} |`, `|---|${cols.map(() => '---:|').join('')}`];
  for (const c of cells) {
    out.push(`| N=${c.ranks}, ${c.label} | ${cols.map(([a, b]) => { const { r, sp } = pair(c, a, b); return withSpread(r, sp); }).join(' | ')} |`);
  }
  return [...out, ''];
}

function targets(cells, kernels) {
  const rows = [];
  const verdict = (ok) => (ok === undefined ? 'not measured' : ok ? '**met**' : '**missed**');
  // Each launch mode against its floor, in the cells issue 20 names: spawn mode against the
  // minimal floor on the same wire (UCX shared memory, merged), MPMD against the MPMD floor
  // (the all-C ring in one mpirun); and spawn mode against the TCP floor: at most half of it.
  const floorRows = [['mpi/native', 'c-floor-min', 'the shared-memory spawn floor'], ['mpmd/native', 'c-floor-mpmd', 'the MPMD C floor']];
  for (const [impl, floor, what] of floorRows) {
    for (const [ranks, shapes, limit] of [[2, ['8B', '1MiB'], 1.3], [10, undefined, 1.5]]) {
      const rs = cells
        .filter((c) => c.ranks === ranks && (!shapes || shapes.includes(c.shape)))
        .map((c) => ({ c, r: rr(c, impl, floor), sp: pair(c, impl, floor).sp }))
        .filter(({ r }) => r !== undefined);
      const worst = rs.reduce((w, cur) => (!w || cur.r > w.r ? cur : w), undefined);
      rows.push([
        `${impl} per-iteration median within ${limit}x of ${what}, N=${ranks}${shapes ? ` (${shapes.map((sh) => SHAPES[sh].label).join(', ')})` : ', every cell'}`,
        rs.length ? `${rs.map(({ c, r, sp }) => `${c.label} ${withSpread(r, sp)}`).join('; ')}; ${rs.filter(({ r }) => r > limit).length} of ${rs.length} cells over` : '–',
        judge(worst?.r, limit, rs.map(({ r, sp }) => [r, sp])),
      ]);
    }
    if (floor !== 'c-floor-min') continue;
    const c = cells.find((c) => c.ranks === 2 && c.shape === '8B');
    const { r, sp } = c ? pair(c, 'mpi/native', 'c-floor-min-tcp') : {};
    rows.push(['mpi/native at most half the TCP minimal floor (N=2, 8 B): no TCP ring can match it', r === undefined ? '–' : withSpread(r, sp), judge(r, 0.5, [[r, sp]])]);
  }
  // Start-up against the floor of the same launch mode. Start hardly depends on the sizes, so
  // every cell is one more measurement: the ratio of the medians over a rank count's cells,
  // with the cells' own ratios as the spread.
  for (const [impl, floor, what] of [['mpi/native', 'c-floor-min', 'minimal'], ['mpi/wasm', 'c-floor-min', 'minimal'], ['mpmd/native', 'c-floor-mpmd', 'MPMD']]) {
    for (const ranks of [2, 10]) {
      const both = cells.filter((c) => c.ranks === ranks && c.by[impl]?.ok && c.by[floor]?.ok);
      const r = both.length ? mid(both.map((c) => c.by[impl].result.startS)) / mid(both.map((c) => c.by[floor].result.startS)) : undefined;
      const each = both.map((c) => c.by[impl].result.startS / c.by[floor].result.startS);
      const sp = each.length > 1 ? [Math.min(...each), Math.max(...each)] : undefined;
      rows.push([
        `start-up of ${impl} within 1.2x of the ${what} C floor's, N=${ranks}`,
        r === undefined ? '–' : `${mid(both.map((c) => c.by[impl].result.startS)).toFixed(3)} s / ${mid(both.map((c) => c.by[floor].result.startS)).toFixed(3)} s = ${x(r)}${sp ? ` (cells ${x(sp[0])}…${x(sp[1])})` : ''}`,
        judge(r, 1.2, [[r, sp]]).replace("the rounds' spread", "the cells' spread"),
      ]);
    }
  }
  for (const impl of ['threads/wasm', 'threads/native']) {
    for (const shape of ['8B', '1MiB']) {
      const c = cells.find((c) => c.ranks === 2 && c.shape === shape);
      const r = c && rr(c, impl, 'c-floor-min');
      rows.push([`${impl} at most 1/3 of the minimal C floor (N=2, ${c?.label ?? shape})`, r === undefined ? '–' : x(r), verdict(r === undefined ? undefined : r <= 1 / 3)]);
    }
  }
  {
    const rs = cells.map((c) => { const { r, sp } = pair(c, 'mpi/python-stages', 'mpi4py'); return [c, r, sp]; }).filter(([, r]) => r !== undefined);
    const worst = rs.reduce((w, cur) => (!w || cur[1] > w[1] ? cur : w), undefined);
    rows.push([
      'mpi/python-stages per-iteration median within 1.2x of the mpi4py peer in every cell',
      worst ? `worst ${withSpread(worst[1], worst[2])} (N=${worst[0].ranks}, ${worst[0].label}); ${rs.filter(([, r]) => r > 1.2).length} of ${rs.length} cells over` : '–',
      judge(worst?.[1], 1.2, rs.map(([, r, sp]) => [r, sp])),
    ]);
  }
  // Step times (--trace) against the same row without, in the cells both ran (issue 13).
  for (const [impl, limit] of [['mpi/native', 1.1], ['threads/wasm', 1.25]]) {
    for (const c of cells.filter((c) => c.by[`${impl}+trace`])) {
      const r = rr(c, `${impl}+trace`, impl);
      const sp = pair(c, `${impl}+trace`, impl).sp;
      rows.push([`${impl} with --trace within ${limit}x of without (N=${c.ranks}, ${c.label})`, withSpread(r, sp), judge(r, limit, [[r, sp]])]);
    }
  }
  // What 20 Node stage processes cost at N=10: the same master with every stage the C worker.
  {
    const rs = cells
      .filter((c) => c.ranks === 10)
      .map((c) => ({ c, r: rr(c, 'mpi/native', 'mpi/c-stages'), sp: pair(c, 'mpi/native', 'mpi/c-stages').sp }))
      .filter(({ r }) => r !== undefined);
    const worst = rs.reduce((w, cur) => (!w || cur.r > w.r ? cur : w), undefined);
    rows.push([
      'N=10 mpi/native within 1.1x of mpi/c-stages in every cell (what the Node stage processes cost)',
      rs.length ? `${rs.map(({ c, r, sp }) => `${c.label} ${withSpread(r, sp)}`).join('; ')}` : '–',
      judge(worst?.r, 1.1, rs.map(({ r, sp }) => [r, sp])),
    ]);
  }
  const k = kernels.find((k) => k.n === 1_000_000);
  rows.push(['WASM kernel within 1.25x of native at 1e6 doubles', k ? x(k.ratio) : '–', verdict(k ? k.ratio <= 1.25 : undefined)]);
  for (const [impl, limit] of [['mpi/native', 1.5], ['mpi/wasm', 1.5], ['mpmd/native', 1.5], ['threads/wasm', 0.3], ['threads/native', 0.3]]) {
    const starts = cells.filter((c) => c.ranks === 2 && c.by[impl]?.ok).map((c) => c.by[impl].result.startS);
    const worst = starts.length ? Math.max(...starts) : undefined;
    rows.push([`start-up under ${limit} s, ${impl}, N=2`, worst === undefined ? '–' : `worst ${worst.toFixed(3)} s`, verdict(worst === undefined ? undefined : worst < limit)]);
  }
  // Against mpi4py: at its defaults (TCP between its spawned jobs) every MPI row at least 2x
  // faster; with the same UCX settings (what a user who knows them gets) faster.
  for (const [impl, ref, limit, what] of [
    ...['mpi/native', 'mpi/wasm', 'mpmd/native'].flatMap((impl) => [[impl, 'mpi4py', 0.5, 'at least 2x faster than the mpi4py peer at its defaults'], [impl, 'mpi4py-ucx', 1, 'faster than the mpi4py peer on UCX shared memory']]),
    ['threads/native', 'mpi4py', 1, 'faster than the mpi4py peer'],
    ['threads/wasm', 'mpi4py', 1, 'faster than the mpi4py peer'],
  ]) {
    const rs = cells.map((c) => { const { r, sp } = pair(c, impl, ref); return [c, r, sp]; }).filter(([, r]) => r !== undefined);
    const worst = rs.reduce((w, cur) => (!w || cur[1] > w[1] ? cur : w), undefined);
    rows.push([
      `${impl} ${what} in every cell`,
      worst ? `worst ${withSpread(worst[1], worst[2])} of ${ref} (N=${worst[0].ranks}, ${worst[0].label}); ${rs.filter(([, r]) => r >= limit).length} of ${rs.length} cells not` : '–',
      worst ? judge(worst[1], limit, rs.map(([, r, sp]) => [r, sp])).replace('**met**', worst[1] < limit ? '**met**' : '**missed**') : 'not measured',
    ]);
  }
  return rows;
}

function plot(cells) {
  const W = 720, H = 460, L = 70, R = 170, T = 20, B = 50;
  // Only the implementations with points, each its own color and legend line (there are more
  // implementations than the palette: those past it had no color and legend lines ran off the plot).
  const palette = ['#1f77b4', '#17becf', '#d62728', '#ff7f0e', '#8c564b', '#7f7f7f', '#bcbd22', '#2ca02c', '#9467bd', '#e377c2', '#000000', '#aec7e8'];
  const pointsOf = (id) =>
    cells
      .filter((c) => c.ranks === 2 && c.by[id]?.ok && /^[0-9]/.test(c.label))
      .map((c) => [c.by[id].sizes[0][0] * 8, median(c.by[id])])
      .sort((a, b) => a[0] - b[0]);
  const series = IMPLS.map((i) => i.id).filter((id) => pointsOf(id).length);
  const colors = series.map((_, i) => palette[i] ?? `hsl(${(i * 137) % 360}, 60%, 40%)`);
  const pts = series.map(pointsOf);
  const all = pts.flat();
  if (!all.length) return '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>';
  const lx = all.map((p) => Math.log10(p[0]));
  const ly = all.map((p) => Math.log10(p[1] * 1e6));
  const [x0, x1] = [Math.floor(Math.min(...lx)), Math.ceil(Math.max(...lx))];
  const [y0, y1] = [Math.floor(Math.min(...ly)), Math.ceil(Math.max(...ly))];
  const sx = (v) => L + ((Math.log10(v) - x0) / (x1 - x0 || 1)) * (W - L - R);
  const sy = (v) => H - B - ((Math.log10(v * 1e6) - y0) / (y1 - y0 || 1)) * (H - T - B);
  const g = [];
  for (let e = x0; e <= x1; e++) {
    const px = sx(10 ** e);
    g.push(`<line x1="${px}" y1="${T}" x2="${px}" y2="${H - B}" stroke="#ddd"/><text x="${px}" y="${H - B + 18}" font-size="12" text-anchor="middle">1e${e} B</text>`);
  }
  for (let e = y0; e <= y1; e++) {
    const py = H - B - ((e - y0) / (y1 - y0 || 1)) * (H - T - B);
    g.push(`<line x1="${L}" y1="${py}" x2="${W - R}" y2="${py}" stroke="#ddd"/><text x="${L - 6}" y="${py + 4}" font-size="12" text-anchor="end">${10 ** e >= 1 ? 10 ** e : (10 ** e).toFixed(-e)} µs</text>`);
  }
  pts.forEach((p, i) => {
    if (!p.length) return;
    g.push(`<polyline fill="none" stroke="${colors[i]}" stroke-width="2" points="${p.map(([a, b]) => `${sx(a).toFixed(1)},${sy(b).toFixed(1)}`).join(' ')}"/>`);
    for (const [a, b] of p) g.push(`<circle cx="${sx(a).toFixed(1)}" cy="${sy(b).toFixed(1)}" r="3" fill="${colors[i]}"/>`);
    g.push(`<line x1="${W - R + 15}" y1="${T + 20 * i + 10}" x2="${W - R + 40}" y2="${T + 20 * i + 10}" stroke="${colors[i]}" stroke-width="2"/><text x="${W - R + 46}" y="${T + 20 * i + 14}" font-size="12">${series[i]}</text>`);
  });
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif">
<rect width="${W}" height="${H}" fill="white"/>
${g.join('\n')}
<text x="${(L + W - R) / 2}" y="${H - 10}" font-size="13" text-anchor="middle">bytes per rank per stage (N=2, uniform sizes)</text>
<text x="16" y="${(T + H - B) / 2}" font-size="13" text-anchor="middle" transform="rotate(-90 16 ${(T + H - B) / 2})">median time per iteration</text>
</svg>
`;
}

const ORIGINAL = `Measured by the original CommLoop (Python + mpi4py + C, 10 processes per worker group, 400
iterations) on its authors' hardware in 2014, **as published**: other hardware, other software,
other year. Shown for orientation only; no ratio is taken against it.

| Size of array | Mean time (s) |
|---:|---:|
| 1 B | 0.00505563914776 |
| 10 B | 0.0050656175613 |
| 100 B | 0.0056332963705 |
| 1 KB | 0.00832622706890 |
| 10 KB | 0.0449095028639 |
| 100 KB | 0.492187131643 |
| 1 MB | 4.45193855694 |
| 1 B, 10 B, 100 B, 1 KB, 10 KB | 0.0697515845299 |
| 10 B, 1 KB, 1 MB, 10 B | 0.40219643116 |

| Part of code (original default setup) | Time (s) |
|---|---:|
| Start MPI Comm | 3.52986693382 |
| First loop iter | 1.15215110779 |
| Last loop iter | 0.39165186882 |
| Avg iteration | 0.40219643116 |
| Total Code | 43.7606859207 |`;

/** Node stage processes per rank of a row (a stage not in C runs in a Node process of its own). */
const NODE_STAGES = { 'mpi/native': 2, 'mpi/wasm': 3, 'mpmd/native': 2, 'mpi/c-stages': 0, 'mpmd/c-stages': 0 };

/**
 * Start-up against the floors, set against what starting Node costs here (`node -e 0`, timed
 * by the bench): a row's gap to its floor next to its Node stage processes' boot spread over
 * the cores (mpi/c-stages, a Node hub with C stages, shows what the hub itself adds).
 */
function startupSection(cells, machine) {
  if (!machine.nodeBootS) return [];
  const out = [
    '## Start-up against the floors, and what Node\'s own boot accounts for',
    '',
    `Starting one Node process (\`node -e 0\`) took ${(machine.nodeBootS * 1e3).toFixed(0)} ms here (median of 15, timed by the`,
    'bench before the trials); a C stage rank starts in a few. "Node boot / cores" is the row\'s Node stage',
    `processes times that, over the machine's ${machine.cores} cores: what their start-up alone adds when they all start`,
    'at once. Start is the median over the rank count\'s cells.',
    '',
    '| row | N | start s | floor s | gap s | Node stage processes | Node boot / cores, s |',
    '|---|---:|---:|---:|---:|---:|---:|',
  ];
  for (const [impl, floor] of [['mpi/c-stages', 'c-floor-min'], ['mpi/native', 'c-floor-min'], ['mpi/wasm', 'c-floor-min'], ['mpmd/c-stages', 'c-floor-mpmd'], ['mpmd/native', 'c-floor-mpmd']]) {
    for (const ranks of [2, 10]) {
      const both = cells.filter((c) => c.ranks === ranks && c.by[impl]?.ok && c.by[floor]?.ok);
      if (!both.length) continue;
      const a = mid(both.map((c) => c.by[impl].result.startS));
      const f = mid(both.map((c) => c.by[floor].result.startS));
      const n = NODE_STAGES[impl] * ranks;
      out.push(`| ${impl} | ${ranks} | ${a.toFixed(3)} | ${f.toFixed(3)} | ${(a - f).toFixed(3)} | ${n} | ${((n * machine.nodeBootS) / machine.cores).toFixed(3)} |`);
    }
  }
  out.push('');
  return out;
}

/**
 * The "Checkpoints" section, from bench/results/checkpoint.jsonl (bench/checkpoint.mjs) when
 * there is one: what one checkpoint costs, and a run with --checkpoint-every 100 against none.
 */
function checkpointSection(root) {
  let rows;
  try {
    rows = readFileSync(join(root, 'bench', 'results', 'checkpoint.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  } catch {
    return [];
  }
  const ms = (s) => (s * 1e3).toFixed(2);
  const md = ['## Checkpoints', '', 'From `node bench/checkpoint.mjs` (bench/results/checkpoint.jsonl). Per checkpoint: the ring\'s pause (asking every stage', 'for its state, copying Array1; over MPI also encoding it for the hub\'s channel) and the write (fsync included), which', 'runs on another thread (threads) or in the supervising process (MPI) while the ring goes on. A checkpoint every 10', 'iterations; one that falls due while the previous is still being written waits for the next boundary.', ''];
  md.push('| ring | N | transport | written | pause ms | write ms | iteration ms |', '|---|---:|---|---:|---:|---:|---:|');
  for (const r of rows.filter((r) => r.kind === 'cost')) md.push(`| ${r.ring} | ${r.ranks} | ${r.transport} | ${r.written} | ${ms(r.pauseS)} | ${ms(r.writeS)} | ${ms(r.meanIterS)} |`);
  md.push('', 'A run with `--checkpoint-every 100` against the same run without, default sizes (10,1000,1000000), rounds interleaved;', 'iteration time is the run\'s total less its start-up; the ratio is the median of the rounds\' ratios (target: within 1.05x).', '');
  md.push('| N | transport | iterations | with / without | rounds |', '|---:|---|---:|---:|---|');
  const groups = new Map();
  for (const r of rows.filter((r) => r.kind === 'overhead')) {
    const k = `${r.ranks} ${r.transport}`;
    if (!groups.has(k)) groups.set(k, []);
    groups.get(k).push(r);
  }
  for (const g of groups.values()) {
    const ratios = g.map((r) => r.withS / r.withoutS);
    const sorted = [...ratios].sort((a, b) => a - b);
    const med = (sorted[(sorted.length - 1) >> 1] + sorted[sorted.length >> 1]) / 2;
    md.push(`| ${g[0].ranks} | ${g[0].transport} | ${g[0].iterations} | ${med.toFixed(3)}x${med <= 1.05 ? ' (met)' : ' (missed)'} | ${ratios.map((x) => x.toFixed(3)).join(', ')} |`);
  }
  md.push('');
  return md;
}

/** The JSON lines of bench/results/NAME, or undefined where that bench was never run. */
function resultsOf(root, name) {
  try {
    return readFileSync(join(root, 'bench', 'results', name), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  } catch {
    return undefined;
  }
}

/**
 * The "Fields" section, from bench/results/fields.jsonl (bench/fields.mjs) when there is one:
 * a ring of 4 fields of mixed dtypes against the same bytes as one float64 field, and a float32
 * field against a float64 field of as many elements, on spawn, MPMD and threads.
 */
function fieldsSection(root) {
  const rows = resultsOf(root, 'fields.jsonl');
  if (!rows) return [];
  const m = rows.find((r) => r.kind === 'machine') ?? {};
  const load = (l) => (l ? l.map((v) => v.toFixed(1)).join(', ') : '?');
  const md = ['## Fields', ''];
  md.push(
    `From \`node bench/fields.mjs${m.mode === 'quick' ? ' --quick' : ''}\` (bench/results/fields.jsonl), ${m.date}, ${m.rounds} rounds; load average (1, 5, 15 min)`,
    `${load(m.loadStart)} at the start and ${load(m.loadEnd)} at the end, on ${m.cores} cores. A ring of 3 stages (ts, c, ts), N=2 ranks`,
    'each, every stage copying its input fields into its output fields (bench/fixtures/fields: one copy per field, the same',
    'work per byte in both variants). "4 fields": float64, int32, float32 and uint8, against one float64 field of the same',
    'bytes a rank (8 B a field: 32 B a rank; 1 MiB a rank in all: 256 KiB a field); "float32": a float32 field of 262144',
    'elements (1 MiB a rank) against a float64 field of as many (2 MiB). Every run a fresh process, rounds interleaved',
    '(the variant, then its reference); the ratio is the median of the rounds\' ratios of median iteration time, the',
    'lowest and highest of those beside it.',
    '',
  );
  md.push('| cell | target | variant µs | reference µs | ratio | target ratio | verdict | rounds |', '|---|---|---:|---:|---:|---:|---|---|');
  for (const r of rows.filter((r) => r.kind === 'cell')) {
    md.push(`| ${r.cell} | ${r.target} | ${us(r.testMedianIterS)} | ${us(r.refMedianIterS)} | ${r.ratio.toFixed(3)}x | ≤ ${r.limit}x | ${r.met ? 'met' : 'missed'} | ${Math.min(...r.ratios).toFixed(3)}…${Math.max(...r.ratios).toFixed(3)} |`);
  }
  md.push('');
  return md;
}

/**
 * The "Open MPI and MPICH" section, from bench/results/mpis.jsonl (`node bench/run.mjs --mpis`)
 * when there is one: the project's MPMD row against the MPMD floor program built for the same
 * MPI, under each MPI, at N=2; each ratio the median of the rounds' ratios.
 */
function mpisSection(root) {
  const rows = resultsOf(root, 'mpis.jsonl');
  if (!rows) return [];
  const m = rows.find((r) => r.kind === 'machine') ?? {};
  const trials = rows.filter((r) => r.kind === 'trial' && r.ok);
  const median = (xs) => {
    const s = [...xs].sort((a, b) => a - b);
    return (s[(s.length - 1) >> 1] + s[s.length >> 1]) / 2;
  };
  const md = ['## Open MPI and MPICH', ''];
  md.push(
    `From \`node bench/run.mjs --mpis\` (bench/results/mpis.jsonl), ${m.date}: ${m.openmpi}; MPICH ${m.mpich}. The`,
    'project\'s MPMD row (`--launch mpmd --c-backend native`, with `--mpi mpich` under MPICH) against the MPMD floor',
    'program (bench/c_floor_mpmd.c, one job of 7 ranks, merged communicators) built by each MPI\'s `mpicc` and run by',
    'its launcher: Open MPI on vader shared memory, MPICH on UCX shared memory (ch4:ucx). The four run interleaved,',
    'round by round; a ratio is the median of the rounds\' ratios, with their range. Target: the project within 1.3x',
    'of its floor under MPICH.',
    '',
    '| N | message | MPI | project µs | floor µs | ratio | rounds | target |',
    '|---:|---|---|---:|---:|---:|---|---|',
  );
  const cells = [...new Set(trials.map((t) => `${t.ranks}/${t.shape}`))];
  for (const c of cells) {
    const at = trials.filter((t) => `${t.ranks}/${t.shape}` === c);
    for (const [mpi, project, floor] of [['Open MPI', 'mpmd/native', 'c-floor-mpmd'], ['MPICH', 'mpmd/native-mpich', 'c-floor-mpmd-mpich']]) {
      const p = at.filter((t) => t.impl === project);
      const f = at.filter((t) => t.impl === floor);
      const ratios = p.map((t) => f.find((u) => u.round === t.round)).map((u, i) => u && p[i].result.medianIterS / u.result.medianIterS).filter((r) => r !== undefined);
      if (!ratios.length) continue;
      const r = median(ratios);
      const target = mpi === 'MPICH' ? (r <= 1.3 ? '≤ 1.3x: met' : '≤ 1.3x: missed') : '';
      md.push(`| ${at[0].ranks} | ${at[0].label} | ${mpi} | ${us(median(p.map((t) => t.result.medianIterS)))} | ${us(median(f.map((t) => t.result.medianIterS)))} | ${x(r)} | ${Math.min(...ratios).toFixed(2)}…${Math.max(...ratios).toFixed(2)} | ${target} |`);
    }
  }
  md.push('');
  return md;
}

export function writeReport(results, root) {
  const machine = results.find((r) => r.kind === 'machine') ?? {};
  const trials = results.filter((r) => r.kind === 'trial');
  const kernels = results.filter((r) => r.kind === 'kernel');
  const cells = cellsOf(trials);
  const md = [];
  md.push('# Benchmarks', '');
  md.push(
    `Generated by \`npm run bench${machine.mode === 'quick' ? ' -- --quick' : ''}\` (bench/run.mjs, bench/report.mjs) from`,
    '`bench/results/latest.jsonl`; do not edit by hand.',
    '',
    `- Run: ${machine.date} (${machine.mode} table)`,
    `- Machine: ${machine.cpu}, ${machine.cores} cores (shared; absolute times are noise, ratios are the figures)`,
    `- Node ${machine.node}; ${machine.openmpi}; ${machine.python}; mpi4py, NumPy ${machine.mpi4py}`,
    '',
    'Every trial runs in a fresh process. Every implementation in a cell runs the same ring with the',
    'same ranks, sizes and iteration count, and its checksum is checked against the others and the',
    'JS reference (`test/reference.mjs`): a ✓ below means it matched. Times are the median (and min)',
    'of per-iteration wall time measured by each program itself; start is from just before the master\'s',
    '`MPI_Init` (threads: the first thread start) until every stage answered. A full run takes every',
    'cell in 3 rounds, each round running every row back to back; a row\'s time is the median of its',
    'rounds\' medians, and a ratio is the median of the rounds\' own ratios (row over reference in the',
    'same round), with the lowest and highest of those in brackets: the shared machine\'s pace drifts',
    'up to 2x over minutes, and a round compares rows run seconds apart. Spawn-mode rows are judged by',
    'the minimal floor, MPMD rows by the MPMD floor.',
    '',
    '- **c-floor-min** (the minimal floor, on shared memory): the same ring all in C (`bench/c_floor.c`',
    '  spawning `commloop_c_worker` for every stage, `mpicc -O3`), a scatter and a gather per step and',
    '  nothing else (protocol v2, one epoch): the shape of the original loop, on the wire and communicators',
    '  the project\'s spawn mode uses here (UCX shared memory, steps on merged intracommunicators:',
    '  `--comm merged`, `OMPI_MCA_pml=ucx`). What spawn-mode rows are judged by.',
    '- **c-floor-min-tcp** (the TCP floor): the same over ob1\'s TCP loopback and intercommunicators, what',
    '  spawn mode ran on before (and still runs on across hosts, or where UCX cannot be selected).',
    '- **c-floor** (the protocol floor): the same, over protocol v1, a header broadcast before every step:',
    '  what a v1 stage costs. The project speaks v2 with its own stages.',
    '- **mpi4py**: the same ring in Python, master and workers, NumPy buffers (`bench/mpi4py_ring.py`), at',
    '  Open MPI\'s defaults (ob1: TCP between the spawned jobs); **mpi4py-ucx**: the same with the UCX',
    '  settings the project\'s shm wire uses, what a user who knows them gets.',
    '- **mpi/python-stages**: the project\'s Node master with ts1 and ts2 as `kind: "python"` stages (the',
    '  NumPy functions of `examples/python-stage/stage.py` in `python/commloop_stage.py`) and the native C',
    '  stage (`bench/python-stages.json`): against mpi4py it is what a Python stage costs in the ring.',
    '- **c-floor-mpmd** (the MPMD floor): the same ring all in C inside one mpirun (`bench/c_floor_mpmd.c`,',
    '  master and stages one program, the app contexts the project\'s `--launch mpmd` uses), a scatter',
    '  and a gather per step and nothing else, each stage an intracommunicator with the master',
    '  (`MPI_Intercomm_merge`) and `MPI_Scatterv`/`MPI_Gatherv`. What mpmd/native is judged by.',
    '- **c-floor-mpmd-inter**: the same over an intercommunicator per stage (`MPI_Intercomm_create`, root',
    '  `MPI_ROOT`), as protocol v1 and exec stages connect master and stage: against the MPMD floor, what those',
    '  communicators cost.',
    '- **mpi/native+trace**, **threads/wasm+trace**: those rows with `--trace FILE` (every rank keeps its',
    '  step times and ships them at the stop; the file is written after the timed loop), in the N=2 8 B',
    '  and 1 KiB cells only: against the same row without, what step times cost.',
    '- **mpi/c-stages**, **mpmd/c-stages**: the project\'s Node hub with every stage the native C worker',
    '  (`bench/all-c.json`, the same arithmetic), in each launch mode: against the floor, what the hub and',
    '  the addon cost; against mpi/native or mpmd/native, what the Node stage processes cost.',
    '- **mpmd/native** is the project under `--launch mpmd` (one mpirun, ob1\'s shared memory); the other',
    '  mpi rows are spawn mode (separate jobs; the wire column says what each ran on). Its start, like the MPMD',
    '  floor\'s, is measured inside mpirun (from `MPI_Init` to every stage ready), so it excludes mpirun\'s',
    '  own start-up. `MPI_Init` there waits for every rank to start, so a master that starts late (the',
    '  Node hub, after its own Node start) finds the stages partly up: its start hides part of theirs.',
    '',
  );
  md.push('## Targets', '', '| target | measured | verdict |', '|---|---|---|');
  for (const [t, m, v] of targets(cells, kernels)) md.push(`| ${t} | ${m} | ${v} |`);
  md.push('');
  const limitOf = (c) => (c.ranks === 2 ? 1.3 : 1.5);
  const over = cells.filter((c) => rr(c, 'mpi/native', 'c-floor-min') > limitOf(c));
  if (over.length) {
    md.push('## Where spawn-mode MPI misses the shared-memory floor\'s 1.3x (N=2) or 1.5x (N=10), and why', '');
    md.push(
      '`mpi/c-stages` runs the same ring with the project\'s Node master but every stage the native C',
      'worker. Where it is near 1.0x while `mpi/native` is not, the extra time is in the Node stage',
      'processes, not in the master, the addon or the protocol. Where `mpi/c-stages` is itself far from 1.0x (it runs the',
      'floor\'s own C workers), the cell is noise: at N=10, 31 processes share 2 cores, and the large',
      'sizes run few iterations; compare each row\'s median with its min in the tables below.',
      '',
      ...missTable(over, [['mpi/native', 'c-floor-min', 'min floor'], ['mpi/c-stages', 'c-floor-min', 'min floor']]),
    );
  }
  const mpmdLimitOf = (c) => (c.ranks === 2 ? 1.3 : 1.5);
  const mpmdOver = cells.filter((c) => rr(c, 'mpmd/native', 'c-floor-mpmd') > mpmdLimitOf(c));
  if (mpmdOver.length) {
    md.push('## Where MPMD misses its target against the MPMD floor', '');
    md.push(
      'The project\'s own stages step on merged intracommunicators under MPMD, as the MPMD floor does',
      '(docs/PROTOCOL.md, "Merged"), so what `mpmd/native` has beyond the floor is the Node hub, the',
      'addon and the Node stage processes. `mpmd/c-stages` (the Node hub with every stage the C worker)',
      'splits the two: over the floor it is the hub and the addon, and `mpmd/native` over it is the two',
      'Node stage processes per rank. `c-floor-mpmd-inter` runs the floor\'s ring over an',
      'intercommunicator per stage, what an `exec` stage or protocol v1 gets: its ratio is what merging saves.',
      '',
      ...missTable(mpmdOver, [
        ['mpmd/native', 'c-floor-mpmd', 'MPMD floor'],
        ['mpmd/c-stages', 'c-floor-mpmd', 'MPMD floor'],
        ['mpmd/native', 'mpmd/c-stages', 'mpmd/c-stages'],
        ['c-floor-mpmd-inter', 'c-floor-mpmd', 'MPMD floor'],
      ]),
    );
  }
  const nodeCost = cells.filter((c) => c.ranks === 10 && rr(c, 'mpi/native', 'mpi/c-stages') > 1.1);
  if (nodeCost.length) md.push(
    '## What a Node stage process costs at N=10',
    '',
    'Where the target "N=10 mpi/native within 1.1x of mpi/c-stages" is missed, the time is in being',
    'scheduled: 30 stage processes share 2 cores and yield while they wait, and each time the scheduler',
    'runs a Node stage process it costs 3.4-3.5 µs against 2.5-2.7 µs for a C stage in the same role',
    '(`/proc/PID/schedstat`, N=10, 8 B, measured for issue 12). What was tried against it, each at N=10',
    '8 B against mpi/c-stages, none better than the noise: `--single-threaded`, `--v8-pool-size=1`,',
    '`--max-semi-space-size=1`, `--lite-mode`, `MPI_THREAD_SINGLE` in the stages, a C stage padded to',
    'Node\'s memory and thread count (stays at 1.01x: it is not the size); one scavenge per worker in',
    '5000 steps, and the step\'s own JS is about 3 µs.',
    '',
  );
  md.push(...startupSection(cells, machine));
  md.push('## Per-iteration time', '', '![per-iteration time against array size](bench-plot.svg)', '');
  for (const c of cells) {
    const rounds = Math.max(...Object.values(c.by).map((t) => t.rounds ?? 1));
    md.push(`### N=${c.ranks}, ${c.label} (${c.iterations} iterations${rounds > 1 ? `; ${rounds} rounds, implementations interleaved: the median of the rounds' medians, their spread in brackets; ratios are the median of the rounds' ratios` : ''})`, '');
    md.push('| implementation | wire | median µs | min µs | start s | / min floor (shm) | / min floor (tcp) | / MPMD floor | / protocol floor | / mpi4py | / mpi4py (UCX) | checksum |', '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|');
    for (const impl of IMPLS.map((i) => i.id)) {
      const t = c.by[impl];
      if (!t) continue;
      if (!t.ok) {
        md.push(`| ${impl} | ${t.wire ?? ''} | failed (exit ${t.status}) | | | | | | | | | ✗ |`);
        continue;
      }
      const m = t.result.medianIterS;
      md.push(
        `| ${impl} | ${t.wire ?? ''} | ${us(m)}${t.spread ? ` (${us(t.spread[0])}…${us(t.spread[1])})` : ''} | ${us(t.result.minIterS)} | ${t.result.startS.toFixed(3)} | ${['c-floor-min', 'c-floor-min-tcp', 'c-floor-mpmd', 'c-floor', 'mpi4py', 'mpi4py-ucx'].map((ref) => x(rr(c, impl, ref))).join(' | ')} | ✓ ${t.result.checksum} |`,
      );
    }
    md.push('');
  }
  const def = cells.find((c) => c.shape === 'default' && c.ranks === 10) ?? cells.find((c) => c.shape === 'default');
  if (def) {
    md.push(`## Default-setup breakdown (N=${def.ranks}, sizes 10,1000,1000000, ${def.iterations} iterations)`, '');
    const impls = IMPLS.map((i) => i.id).filter((id) => def.by[id]?.ok);
    md.push(`| part (seconds) | ${impls.join(' | ')} |`, `|---|${impls.map(() => '---:').join('|')}|`);
    for (const [label, k] of [['Start workers', 'startS'], ['First loop iter', 'firstIterS'], ['Last loop iter', 'lastIterS'], ['Mean iteration', 'meanIterS'], ['Total', 'totalS']]) {
      md.push(`| ${label} | ${impls.map((id) => def.by[id].result[k].toFixed(6)).join(' | ')} |`);
    }
    md.push('');
  }
  md.push(...checkpointSection(root));
  md.push(...fieldsSection(root));
  md.push(...mpisSection(root));
  md.push('## Kernel micro-benchmark', '', 'ns per element of `halfmean` (one read pass, one write pass), median of repeated calls in one process.', '');
  md.push('| doubles | WASM ns/elem | native ns/elem | WASM / native |', '|---:|---:|---:|---:|');
  for (const k of kernels) md.push(`| ${k.n} | ${k.wasmNsPerElem.toFixed(3)} | ${k.nativeNsPerElem.toFixed(3)} | ${x(k.ratio)} |`);
  md.push('', '## The original CommLoop, as published (2014)', '', ORIGINAL, '');
  writeFileSync(join(root, 'docs', 'BENCHMARKS.md'), md.join('\n'));
  writeFileSync(join(root, 'docs', 'bench-plot.svg'), plot(cells));
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const root = dirname(dirname(fileURLToPath(import.meta.url)));
  const file = process.argv[2] ?? join(root, 'bench', 'results', 'latest.jsonl');
  writeReport(readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l)), root);
}
