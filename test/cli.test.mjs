// The CLI end to end: the published checksums on every backend, the JSON shape, and
// bad input exiting 2 with one line that names the flag, the value and what is allowed.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { cli, cliJson, master, root, unstatus, until } from './helpers.mjs';
import { breakdown, formatClock, formatSpan, formatTime, parseArgs, statusLine } from '../dist/internal.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { referenceRing } from './reference.mjs';

// Computed independently of this project (and by test/reference.mjs).
const PUBLISHED = [
  [['-p', '2', '--sizes', '10,1000,1000', '-i', '3'], 14468.8671875],
  [['-p', '2', '--sizes', '10,1000,1000000', '-i', '5'], 11431291.134835951],
  [['-p', '10', '--sizes', '10,1000,1000000', '-i', '2'], 281382104.6875],
];

const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));

const checksums = suite('checksums');

for (const backend of ['wasm', 'native']) {
  for (const [args, expected] of PUBLISHED) {
    checksums(`${args.join(' ')} --c-backend ${backend} -> ${expected}`, () => {
      const r = cliJson([...args, '--transport', 'threads', '--c-backend', backend]);
      assert.is(r.checksum, expected);
      assert.is(r.iterations, Number(args[args.indexOf('-i') + 1]));
    });
  }
}

checksums('the reference agrees with the published checksums', () => {
  assert.is(referenceRing(2, [[10, 1000, 1000]], 3).checksum, 14468.8671875);
  assert.is(referenceRing(2, [[10, 1000, 1000000]], 5).checksum, 11431291.134835951);
  assert.is(referenceRing(10, [[10, 1000, 1000000]], 2).checksum, 281382104.6875);
});

checksums('sizes that change every iteration match the reference', () => {
  const schedule = [[1, 1, 1], [10, 10, 10], [100, 100, 100], [1000, 1000, 1000], [10000, 10000, 10000]];
  const r = cliJson(['-p', '3', '--sizes', schedule.map((t) => t.join(',')).join('/'), '-i', '12', '--transport', 'threads']);
  assert.is(r.checksum, referenceRing(3, schedule, 12).checksum);
  assert.equal(r.sizes, schedule);
});

checksums('human output names the ring and prints the checksum', () => {
  const r = cli(['-p', '2', '--sizes', '10,1000,1000', '-i', '3', '--transport', 'threads', '--threads', '2']);
  assert.is(r.status, 0);
  assert.is(
    r.stdout,
    'ring      ts1 -> c -> ts2, 2 ranks per stage, sizes 10,1000,1000\n' +
      'run       3 iterations, transport threads (2 threads), c-backend wasm\n' +
      'checksum  14468.8671875\n',
  );
});

checksums('-g prints the breakdown rows in order', () => {
  const r = cli(['-p', '2', '--sizes', '10,1000,1000', '-i', '3', '-g', '--transport', 'threads']);
  assert.is(r.status, 0);
  const rows = r.stdout.split('\n').filter((l) => /^\| [A-Z]/.test(l)).map((l) => l.split('|')[1].trim());
  assert.equal(rows, ['Part of code', 'Start workers', 'First loop iter', 'Last loop iter', 'Mean iteration', 'Median iteration', 'Total']);
});

checksums.run();

const table = suite('-g table');

table('times read in the unit that fits, three significant digits', () => {
  const cases = [
    [0.000000412, '0.41 µs'],
    [0.0000041234, '4.12 µs'],
    [0.000412, '412 µs'],
    [0.0009996, '1.00 ms'],
    [0.0123, '12.3 ms'],
    [0.5, '500 ms'],
    [2.5, '2.50 s'],
    [1234.5, '1235 s'],
  ];
  for (const [s, text] of cases) assert.is(formatTime(s), text, String(s));
});

table('the original rows, the median with min … max of the iterations', () => {
  const r = { iterations: 3, resumedFrom: 0, startS: 1.5, firstIterS: 0.0123, lastIterS: 0.000412, meanIterS: 0.0043, medianIterS: 0.0005, minIterS: 0.000412, maxIterS: 0.0123, totalS: 1.52 };
  assert.is(
    breakdown(r),
    [
      '| Part of code     |    Time | Range (min … max) |',
      '| ---------------- | ------- | ----------------- |',
      '| Start workers    |  1.50 s |                   |',
      '| First loop iter  | 12.3 ms |                   |',
      '| Last loop iter   |  412 µs |                   |',
      '| Mean iteration   | 4.30 ms |                   |',
      '| Median iteration |  500 µs | 412 µs … 12.3 ms  |',
      '| Total            |  1.52 s |                   |',
    ].join('\n'),
  );
});

table('a run stopped before its first iteration shows "-" for iteration times', () => {
  const r = { iterations: 0, resumedFrom: 0, startS: 0.2, firstIterS: 0, lastIterS: 0, meanIterS: 0, medianIterS: 0, minIterS: 0, maxIterS: 0, totalS: 0.21 };
  const rows = breakdown(r).split('\n').map((l) => l.split('|').map((c) => c.trim()));
  assert.equal(rows.map((c) => c[2]), ['Time', '------', '200 ms', '-', '-', '-', '-', '210 ms']);
});

table.run();

const parser = suite('parseArgs');

parser('--verbose is a boolean, off by default; -g short for --benchmark; last value wins', () => {
  assert.is(parseArgs([]).verbose, false);
  const o = parseArgs(['--verbose', '-g', '-p', '3', '--procs=4', '--timeout', '0.5']);
  assert.is(o.verbose, true);
  assert.is(o.benchmark, true);
  assert.is(o.procs, 4);
  assert.is(o.timeoutMs, 500);
});

parser.run();

const json = suite('--json');

json('without --c-backend, --transport threads runs the WASM kernel', () => {
  const r = cliJson(['-p', '2', '--sizes', '10,1000,1000', '-i', '3', '--transport', 'threads']);
  assert.is(r.cBackend, 'wasm');
  assert.is(r.checksum, 14468.8671875);
});

json('prints one object with the documented fields', () => {
  const r = cli(['-p', '2', '--sizes', '10,1000,1000000', '-i', '20', '--transport', 'threads', '--c-backend', 'wasm', '--json']);
  assert.is(r.status, 0);
  const lines = r.stdout.trim().split('\n');
  assert.is(lines.length, 1);
  const o = JSON.parse(lines[0]);
  assert.is(o.procs, 2);
  assert.equal(o.sizes, [[10, 1000, 1000000]]);
  assert.is(o.iterations, 20);
  assert.is(o.transport, 'threads');
  assert.is(o.cBackend, 'wasm');
  assert.is(o.checksum, referenceRing(2, [[10, 1000, 1000000]], 20).checksum);
  for (const k of ['startS', 'firstIterS', 'lastIterS', 'meanIterS', 'medianIterS', 'minIterS', 'totalS']) {
    assert.type(o[k], 'number', k);
    assert.ok(o[k] > 0, `${k} > 0`);
  }
  assert.ok(o.totalS >= o.startS + o.meanIterS * 20 * 0.999, 'total covers start and iterations');
  assert.is(o.stopped, false);
  assert.is(o.version, pkg.version);
  assert.ok(o.minIterS <= o.medianIterS && o.medianIterS <= o.maxIterS, 'min <= median <= max');
});

json('--launch auto (the default) picks spawn mode on one host, and says so', () => {
  const o = cliJson(['-p', '1', '--sizes', '10,10,10', '-i', '2']);
  assert.equal([o.launch, o.launchReason], ['spawn', 'auto: every rank on this host']);
  const r = cli(['-p', '1', '--sizes', '10,10,10', '-i', '2', '-g']);
  assert.match(r.stdout, /^run       2 iterations, transport mpi, launch spawn \(auto: every rank on this host\), c-backend native, wire \w+$/m);
});

json.run();

const status = suite('status lines');

status('a status line: done, the rate over its window, when the run ends at that rate, the last checkpoint', () => {
  const now = Date.UTC(2026, 11, 6, 12, 0, 0);
  const at = (s) => formatClock(now + s * 1000);
  assert.is(
    statusLine({ done: 2500, total: 10000, windowDone: 500, windowS: 60, now, checkpoint: { iterations: 2000, path: 'ck/checkpoint-000000002000' } }),
    `status: 2500 of 10000 iterations (25.0%), 8.3 iterations/s, will finish in 15 min (${at(900)}), last checkpoint: iteration 2000 (ck/checkpoint-000000002000)`,
  );
  assert.is(statusLine({ done: 1, total: 3, windowDone: 1, windowS: 300, now }), `status: 1 of 3 iterations (33.3%), 0.0033 iterations/s, will finish in 10 min (${at(600)}), no checkpoint yet`);
  assert.is(statusLine({ done: 7, total: 8, windowDone: 0, windowS: 600, now }), 'status: 7 of 8 iterations (87.5%), no iteration ended in the last 10 min, no checkpoint yet');
  assert.equal([formatSpan(0.25), formatSpan(45), formatSpan(250), formatSpan(7500), formatSpan(3 * 86400 + 4 * 3600 + 59)], ['0.3 s', '45 s', '4 min 10 s', '2 h 5 min', '3 d 4 h']);
  assert.match(formatClock(now), /^2026-12-0[67] \d\d:00:00$/);
});

status('without a terminal, the CLI prints a status line every --status-every seconds, naming the last checkpoint; 0 prints none', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'commloop-status-'));
  try {
    const args = ['--transport', 'threads', '-p', '1', '-i', '100000000', '--checkpoint', dir, '--checkpoint-every', '200'];
    const child = spawn(process.execPath, [master, ...args, '--status-every', '0.5']);
    let err = '';
    child.stderr.on('data', (b) => (err += b));
    const LINE = /^status: (\d+) of 100000000 iterations \(\d+\.\d%\)(, [\d.]+ iterations\/s, will finish in [^,]+ \(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\))?, (no checkpoint yet|last checkpoint: iteration (\d+) \((.+)\))$/;
    const t0 = Date.now();
    const said = () => err.split('\n').filter((l) => l.startsWith('status:'));
    while (Date.now() - t0 < 20_000 && !(said().some((l) => /iterations\/s/.test(l)) && /last checkpoint/.test(said().at(-1)))) await new Promise((r) => setTimeout(r, 100));
    // Lines printed before the stop name checkpoints by count (every 200); one printed as it
    // stops may name the stop's own checkpoint, at whatever iteration the stop came.
    const beforeStop = said().length;
    child.kill('SIGTERM');
    const code = await new Promise((r) => child.on('exit', (c) => r(c)));
    assert.is(code, 130, err);
    const lines = err.split('\n').filter((l) => l.startsWith('status:'));
    assert.ok(lines.length >= 1, err);
    let last = 0;
    lines.forEach((line, k) => {
      const m = LINE.exec(line);
      assert.ok(m, line);
      assert.ok(Number(m[1]) >= last, `${line} after ${last}`);
      last = Number(m[1]);
      if (m[4]) assert.equal([k >= beforeStop || Number(m[4]) % 200 === 0, m[5].startsWith(dir)], [true, true], line);
    });
    assert.ok(lines.some((l) => / iterations\/s, will finish in /.test(l)), lines.join('\n'));
    assert.match(lines.at(-1), /last checkpoint: iteration \d+ /);
    // --status-every 0: none, as on a run that ends before the first.
    const quiet = cli(['--transport', 'threads', '-p', '1', '--sizes', '10,10,10', '-i', '3', '--status-every', '0']);
    assert.equal([quiet.status, quiet.stderr], [0, '']);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

status.run();

const bad = suite('bad input');

const BAD = [
  [['-p', '0'], '--procs must be a positive integer (got "0")'],
  [['-p', 'abc'], '--procs must be a positive integer (got "abc")'],
  [['--procs=-3'], '--procs must be a positive integer (got "-3")'],
  [['-i', '1.5'], '--iterations must be a positive integer (got "1.5")'],
  [['--sizes', '1,2'], '--sizes must be three positive integers n1,n2,n3, or several such triples separated by "/" (got "1,2")'],
  [['--sizes', '0,1,1'], '--sizes must be three positive integers n1,n2,n3, or several such triples separated by "/" (got "0,1,1")'],
  [['--transport', 'carrier-pigeon'], '--transport must be one of mpi, threads (got "carrier-pigeon")'],
  [['--c-backend', 'fortran'], '--c-backend must be one of native, wasm (got "fortran")'],
  [['--threads', 'x'], '--threads must be a positive integer (got "x")'],
  [['--timeout', '0'], '--timeout must be a positive number of seconds (got "0")'],
  [['--frobnicate'], 'unknown option "--frobnicate" (see --help)'],
  [['stray'], 'unexpected argument "stray" (see --help)'],
  [['-p'], '--procs needs a value (see --help)'],
  [['--itertions', '3'], 'unknown option "--itertions" (did you mean --iterations?)'],
  [['--transprot=threads'], 'unknown option "--transprot" (did you mean --transport?)'],
  [['--iter', '3'], 'unknown option "--iter" (did you mean --iterations?)'],
  [['--verbos'], 'unknown option "--verbos" (did you mean --verbose?)'],
  [['-x'], 'unknown option "-x" (see --help)'],
  [['--json=yes'], '--json takes no value (got "yes")'],
  [['-p', '70000'], '--procs must be at most 1024 (got "70000")'],
  [['--timeout', '99999999'], '--timeout must be a number of seconds from 0.001 to 86400 (got "99999999")'],
  [['--timeout', '0.0001'], '--timeout must be a number of seconds from 0.001 to 86400 (got "0.0001")'],
  [['--timeout', 'soon'], '--timeout must be a positive number of seconds (got "soon")'],
  [['--status-every', 'often'], '--status-every must be 0 (no status lines) or a number of seconds from 0.001 to 86400 (got "often")'],
  [['--status-every', '-1'], '--status-every must be 0 (no status lines) or a number of seconds from 0.001 to 86400 (got "-1")'],
  [['--launch', 'ssh'], '--launch must be one of auto, spawn, mpmd (got "ssh")'],
  // More than 4 GiB: only where WebAssembly kernels address the arena (threads, --c-backend wasm);
  // a WebAssembly stage over MPI has a wasm32 memory a rank; up to 16 GiB elsewhere.
  [['-p', '1', '--sizes', '200000000,200000000,200000000', '--transport', 'threads', '--c-backend', 'wasm'], '--sizes need 4800000000 bytes of stage buffers; with C stages as WebAssembly on threads the shared arena is a wasm32 memory and holds at most 4293918720 (--c-backend native or --transport mpi: up to 17178755072)'],
  [['-p', '1', '--sizes', '10,300000000,300000000', '--c-backend', 'wasm'], 'stage "c": a rank\'s input and output need 4800000000 bytes, more than a WebAssembly stage holds (4293918720: wasm32\'s 4 GiB less its kernel data); use --c-backend native'],
  [['-p', '1', '--sizes', '800000000,800000000,800000000'], '--sizes need 19200000000 bytes of stage buffers; the shared arena holds at most 17178755072'],
];

for (const [args, message] of BAD) {
  bad(`${args.join(' ')} exits 2: ${message}`, () => {
    const r = cli(args);
    assert.is(r.status, 2);
    assert.is(r.stderr, `commloop: ${message}\n`);
    assert.is(r.stdout, '');
  });
}

bad('the bounds themselves are accepted: -p 1024, --timeout 0.001 and 86400', () => {
  for (const args of [['-p', '1024', '--help'], ['--timeout', '0.001', '--help'], ['--timeout', '86400', '--help']]) {
    const r = cli(args);
    assert.is(r.status, 0, `${args.join(' ')}: ${r.stderr}`);
  }
});

bad('--help prints usage and exits 0', () => {
  const r = cli(['--help']);
  assert.is(r.status, 0);
  assert.ok(r.stdout.startsWith('Usage: node dist/master.js [options]\n'));
  assert.ok(r.stdout.includes('--c-backend NAME'));
  assert.ok(r.stdout.includes("  --verbose              print Open MPI's own messages and full stacks\n"));
  for (const flag of ['--cflags', '--version']) assert.ok(r.stdout.includes(`  ${flag} `), flag);
});

bad('--version prints the package.json version and exits 0', () => {
  const r = cli(['--version']);
  assert.is(r.status, 0);
  assert.is(r.stdout, `${pkg.version}\n`);
  assert.is(r.stderr, '');
});

bad('--cflags prints the -I of the package\'s include/ and exits 0', () => {
  const r = cli(['--cflags']);
  assert.is(r.status, 0);
  assert.is(r.stdout, `-I${join(root, 'include')}\n`);
});

bad.run();

const signals = suite('signals');

signals('SIGINT stops the threads loop cleanly with a result and exit 130', async () => {
  const child = spawn(process.execPath, [master, '-p', '2', '--sizes', '10,10,10', '-i', '2000000000', '--json', '--transport', 'threads', '--status-every', '0.1']);
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (err += d));
  // Into the loop: a status line counts iterations done.
  assert.ok(await until(() => /^status: [1-9]\d* of /m.test(err), 10_000), err);
  child.kill('SIGINT');
  const code = await new Promise((r) => child.on('exit', (c) => r(c)));
  assert.is(code, 130);
  const o = JSON.parse(out);
  assert.ok(o.iterations > 0 && o.iterations < 2000000000);
  assert.is(o.stopped, true);
  assert.is(o.checksum, referenceRing(2, [[10, 10, 10]], o.iterations).checksum);
  assert.is(unstatus(err), `commloop: stopped by signal after ${o.iterations} of 2000000000 iterations\n`);
});

signals.run();
