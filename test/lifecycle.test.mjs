// Runs that end cleanly: a library call that fails rejects and leaves its caller (and the
// caller's other children) alone; MPI runs repeat in one process; threads never hang; a
// rank that returns the wrong count is named; killing the CLI leaves nothing behind.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { RunError, runPipeline } from '../dist/index.js';
import { MPI_MISSING, cli, cmdline, descendants, exists, haveMpi, pipelineFiles, root, startCli, until } from './helpers.mjs';
import { referenceRing } from './reference.mjs';

if (!haveMpi()) throw new Error(MPI_MISSING);

const fixtures = join(root, 'test', 'fixtures');
const HOST = hostname();
const { file: pipelineFile } = pipelineFiles('lifecycle');
const C = { name: 'c', kind: 'c', ranks: 2, size: 4, source: 'builtin:halffirst' };
const BOOM = { name: 'boom', kind: 'ts', ranks: 2, size: 4, module: join(fixtures, 'pipeline', 'throws.mjs') };

const lib = suite('the library in one process');

lib('a failing MPI run rejects with RunError; an unrelated child survives; two good MPI runs follow', async () => {
  const bystander = spawn('sleep', ['120'], { stdio: 'ignore' });
  const sigint = process.listenerCount('SIGINT');
  const sigterm = process.listenerCount('SIGTERM');
  const timers = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
  const timersBefore = timers();
  try {
    let err;
    try {
      await runPipeline({ stages: [BOOM, C] }, { iterations: 10, timeoutMs: 20_000 });
    } catch (e) {
      err = e;
    }
    assert.instance(err, RunError);
    assert.equal([err.stage, err.rank, err.host, err.reason, err.detail], ['boom', err.rank, HOST, 'user-code', 'refusing iteration 2']);
    assert.ok(err.rank === 0 || err.rank === 1);
    assert.is(err.message, `stage "boom" rank ${err.rank} on ${HOST}: refusing iteration 2`);
    assert.ok(exists(bystander.pid), 'the caller\'s own child was killed');
    for (let i = 0; i < 2; i++) {
      const r = await runPipeline(`${root}/examples/demo.json`, { iterations: 3, procs: 2, sizes: [[10, 1000, 1000]] });
      assert.is(r.checksum, 14468.8671875);
    }
    assert.is(process.listenerCount('SIGINT'), sigint);
    assert.is(process.listenerCount('SIGTERM'), sigterm);
    // Fewer is fine: uvu runs a test from a timer of its own, which may count before and not after.
    assert.ok(timers() <= timersBefore, `a timer was left behind (${timersBefore} before, ${timers()} after)`);
  } finally {
    bystander.kill('SIGKILL');
  }
});

lib('a stop asked through the signal returns the iterations so far', async () => {
  const stop = new AbortController();
  const r = await runPipeline(`${root}/examples/demo.json`, {
    iterations: 1_000_000,
    procs: 2,
    sizes: [[10, 10, 10]],
    signal: stop.signal,
    onIteration: (i) => {
      if (i === 4) stop.abort();
    },
  });
  assert.is(r.stopped, true);
  assert.is(r.iterations, 5);
  assert.is(r.checksum, referenceRing(2, [[10, 10, 10]], 5).checksum);
});

lib.run();

const threads = suite('threads never hang');
const HANG = { name: 'hang', kind: 'ts', ranks: 2, size: 4, module: join(fixtures, 'lifecycle', 'hang.mjs') };

threads('a rank 0 transform that never returns ends at --timeout: exit 1, one line, in time', () => {
  const t0 = Date.now();
  const r = cli(['--pipeline', pipelineFile('hang', { stages: [HANG, C] }), '-i', '3', '--transport', 'threads', '--timeout', '2']);
  const ms = Date.now() - t0;
  assert.is(r.status, 1, r.stderr);
  assert.is(r.stderr, `commloop: stage "hang" rank 0 on ${HOST}: no result for iteration 0 within 2000 ms\n`);
  assert.ok(ms < 2000 + 8000, `took ${ms} ms`);
});

threads('SIGTERM ends a run whose transform hangs: exit 130 within the stop grace', async () => {
  const run = startCli(['--pipeline', pipelineFile('hang2', { stages: [HANG, C] }), '-i', '3', '--transport', 'threads']);
  await new Promise((r) => setTimeout(r, 1500));
  run.child.kill('SIGTERM');
  const sent = Date.now();
  const r = await run.exit;
  assert.is(r.code, 130, r.stderr);
  assert.is(r.stderr, `commloop: stage "hang" rank 0 on ${HOST}: stopped by signal; iteration 0 did not finish within 2000 ms\n`);
  assert.ok(Date.now() - sent < 8000, `took ${Date.now() - sent} ms`);
});

threads('a native C stage that segfaults fails its stage and rank, exit 1', () => {
  const crash = { name: 'crash', kind: 'c', ranks: 2, size: 4, source: join(fixtures, 'lifecycle', 'crash.c') };
  const r = cli(['--pipeline', pipelineFile('crash', { stages: [crash, C] }), '-i', '3', '--transport', 'threads', '--c-backend', 'native']);
  assert.is(r.status, 1);
  assert.is(r.stderr, `commloop: stage "crash" rank 1 on ${HOST}: crashed (SIGSEGV)\n`);
});

const ASYNC = { name: 'async', kind: 'ts', ranks: 2, size: 4, module: join(fixtures, 'lifecycle', 'async.mjs') };
threads('an async transform fails its stage with one line (threads)', () => {
  const r = cli(['--pipeline', pipelineFile('async', { stages: [ASYNC, C] }), '-i', '3', '--transport', 'threads']);
  assert.is(r.status, 1);
  assert.match(r.stderr, new RegExp(`^commloop: stage "async" rank [01] on ${HOST}: the transform returned a Promise: a ts transform must be synchronous\\n$`));
});

threads('an async transform fails its stage with one line (mpi)', () => {
  const r = cli(['--pipeline', pipelineFile('async-mpi', { stages: [ASYNC, C] }), '-i', '3']);
  assert.is(r.status, 1);
  assert.match(r.stderr, new RegExp(`^commloop: stage "async" rank [01] on ${HOST}: the transform returned a Promise: a ts transform must be synchronous( \\(Open MPI's messages: \\S+\\))?\\n$`));
});

threads.run();

const counts = suite('counts are checked');
// One rank: Open MPI's intercommunicator gather first gathers a stage's ranks at its rank 0,
// which then forwards its whole buffer, so only what rank 0 sends reaches the hub as sent
// (docs/PROTOCOL.md, "Counts"); a single-rank stage shows both directions.
const QUARTER = (flag) => ({ name: 'quarter', kind: 'exec', ranks: 1, size: 8, command: ['/usr/bin/python3', join(fixtures, 'exec_stage.py'), flag, '1'] });

for (const mode of ['spawn', 'mpmd']) {
  counts(`a rank that sends one element fewer is named (${mode})`, () => {
    const r = cli(['--pipeline', pipelineFile(`short-${mode}`, { stages: [C, QUARTER('--short-at')] }), '-i', '3', '--launch', mode]);
    assert.is(r.status, 1, r.stderr);
    assert.match(r.stderr, new RegExp(`^commloop: stage "quarter" rank 0 on ${HOST}: sent fewer than the 8 elements iteration 1 asked for( \\(Open MPI's messages: \\S+\\))?\\n$`));
  });
  counts(`a rank that sends one element more fails the run naming the stage (${mode})`, () => {
    const r = cli(['--pipeline', pipelineFile(`long-${mode}`, { stages: [C, QUARTER('--long-at')] }), '-i', '3', '--launch', mode]);
    assert.is(r.status, 1, r.stderr);
    assert.match(r.stderr, /^commloop: stage "quarter": a rank sent more elements than iteration 1 asked \(MPI_Gather: MPI_ERR_TRUNCATE: message truncated\)( \(Open MPI's messages: \S+\))?\n$/);
  });
}

counts('a stage that finalizes without disconnecting fails the run at shutdown, naming it', () => {
  const nodisc = { name: 'nodisc', kind: 'exec', ranks: 2, size: 4, command: ['/usr/bin/python3', join(fixtures, 'lifecycle', 'no_disconnect.py')] };
  const r = cli(['--pipeline', pipelineFile('nodisc', { stages: [C, nodisc] }), '-i', '3', '--json']);
  assert.is(r.status, 1, r.stderr);
  assert.is(r.stdout, '');
  assert.match(
    r.stderr,
    /^commloop: stage "nodisc": did not disconnect after the stop \(every rank must MPI_Comm_disconnect before MPI_Finalize\): MPI_Comm_disconnect: MPI_ERR_COMM: invalid communicator( \(Open MPI's messages: \S+\))?\n$/,
  );
});

counts.run();

const bad = suite('bad input found before the run');

bad('an output file under /proc exits 2 before anything starts', () => {
  const r = cli(['--pipeline', pipelineFile('proc', { stages: [C], output: { file: '/proc/commloop-out.npy' } }), '-i', '2', '--transport', 'threads']);
  assert.is(r.status, 2);
  assert.is(r.stderr, 'commloop: pipeline: "output" file /proc/commloop-out.npy cannot be written (ENOENT)\n');
});

bad('a C stage that does not compile leaves no temp folder in the compile cache', () => {
  const cache = mkdtempSync(join(tmpdir(), 'commloop-cache-'));
  const broken = { name: 'broken', kind: 'c', ranks: 2, size: 4, source: join(fixtures, 'pipeline', 'broken.c') };
  const r = cli(['--pipeline', pipelineFile('broken', { stages: [broken] }), '-i', '2', '--transport', 'threads', '--c-backend', 'native'], {
    env: { ...process.env, COMMLOOP_CACHE: cache },
  });
  assert.is(r.status, 2);
  assert.equal(readdirSync(cache).filter((f) => f.includes('.tmp-')), []);
});

bad.run();

const cleanup = suite('killing the CLI leaves nothing');
const isRank = (cmd) => /^\S*commloop_c_worker /.test(cmd) || /^\S*node \S*worker\.js /.test(cmd);

for (const mode of ['spawn', 'mpmd']) {
  cleanup(`kill -9 of the CLI under --launch ${mode}: no mpirun, hub, rank or shared-memory segment within 5 s, no pid file`, async () => {
    // This host's: the beds' hosts (h1, n2, ...) share /dev/shm, and their tests may run meanwhile.
    const segments = () => readdirSync('/dev/shm').filter((f) => f.startsWith(`vader_segment.${HOST}.`));
    const before = new Set(segments());
    const run = startCli(['-p', '2', '--sizes', '10,10,10', '-i', '2000000000', '--launch', mode]);
    const up = await until(() => descendants(run.child.pid).map(cmdline).filter(isRank).length === 6, 30_000);
    const pids = descendants(run.child.pid);
    assert.ok(up, 'the six stage ranks did not start');
    run.child.kill('SIGKILL');
    await run.exit;
    const gone = await until(() => pids.filter(exists).length === 0, 5000);
    const left = pids.filter(exists).map(cmdline);
    for (const p of pids.filter(exists)) process.kill(p, 'SIGKILL');
    assert.ok(gone, `left: ${left.join(' | ')}`);
    assert.equal(readdirSync(tmpdir()).filter((f) => /^commloop-mpmd-.*\.pid$/.test(f)), []);
    assert.equal(segments().filter((f) => !before.has(f)), [], 'shared-memory segments of the run left');
  });
}

cleanup.run();
