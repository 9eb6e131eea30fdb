// MPICH beside Open MPI (issue 28): the same rings give the same checksums under --mpi mpich
// (Debian's MPICH 4.0.2, ch4:ucx, which cannot spawn: MPMD under mpiexec.hydra), and its
// failures keep the promises: bounded, exit 1 (130 for a signal), one line naming stage, rank
// and host, nothing of the run left. The MPI-specific parts (src/mpi/impl/) are held here to
// Open MPI's results, run for run; the slow beds' MPICH variants are left to docs/CLUSTERS.md.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { referenceRing } from './reference.mjs';
import { MPI_MISSING, STOPPED_BY_TERM, cli, cliJson, cmdline, descendants, exists, haveMpi, mpichKilled, pipelineFiles, root, startCli, terminateAll, until } from './helpers.mjs';

if (!haveMpi()) throw new Error(MPI_MISSING);
if (!existsSync('/usr/bin/mpiexec.hydra') || spawnSync('mpicc.mpich', ['-show']).error) {
  throw new Error('MPICH is missing: apt-get install -y mpich libmpich-dev (bash build.sh --test installs it), then bash build.sh');
}
if (!existsSync(join(root, 'build', 'Release', 'commloop_mpi_mpich.node'))) throw new Error("commloop's addon for MPICH is not built: bash build.sh");

const HOST = hostname();
const fixtures = join(root, 'test', 'fixtures');
const { dir, file: pipelineFile } = pipelineFiles('mpich');
const MPICH = ['--mpi', 'mpich'];
const JSON_STAGES = (file) => JSON.parse(readFileSync(file, 'utf8')).stages;

const rings = suite('MPICH: the same checksums as Open MPI');

rings('the demo ring (native and WebAssembly C), MPMD because this MPICH cannot spawn, and the run says which MPI and why', () => {
  for (const backend of ['native', 'wasm']) {
    const args = ['-p', '2', '-i', '5', '--c-backend', backend];
    const ours = cliJson([...args, ...MPICH]);
    const theirs = cliJson([...args, '--mpi', 'openmpi']);
    assert.is(ours.checksum, theirs.checksum);
    assert.is(ours.mpi, 'mpich');
    assert.is(ours.mpiReason, '--mpi mpich');
    assert.is(ours.launch, 'mpmd');
    assert.is(ours.launchReason, 'auto: MPICH here cannot spawn (MPI_Comm_spawn refused)');
    assert.is(theirs.mpi, 'openmpi');
  }
});

rings('a pipeline of ts, c and an exec stage built with the SDK by mpicc.mpich (--cflags), and a ring of fields', () => {
  const exe = join(dir, 'third_stage');
  const cflags = cli(['--cflags']).stdout.trim().split(/\s+/);
  execFileSync('mpicc.mpich', ['-O2', '-ffp-contract=off', join(fixtures, 'stages', 'third_stage.c'), join(fixtures, 'pipeline', 'third.c'), ...cflags, '-o', exe]);
  const stages = [
    { name: 'shift', kind: 'ts', ranks: 2, size: 6, module: join(fixtures, 'pipeline', 'shift.ts') },
    { name: 'third', kind: 'exec', ranks: 3, size: 4, command: [exe], protocol: 2 },
    { name: 'halve', kind: 'c', ranks: 2, size: 3, source: join(fixtures, 'pipeline', 'third.c'), function: 'third' },
  ];
  const file = pipelineFile('kinds', { stages, initial: 0.5 });
  // The exec stage is MPICH's own build; Open MPI's reference runs the same code as a c stage.
  const ref = pipelineFile('kinds-ref', { stages: [stages[0], { ...stages[2], name: 'third', ranks: 3, size: 4 }, stages[2]], initial: 0.5 });
  assert.is(cliJson(['--pipeline', file, '-i', '4', ...MPICH]).checksum, cliJson(['--pipeline', ref, '-i', '4', '--mpi', 'openmpi']).checksum);
  const fields = join(fixtures, 'fields');
  const ring = pipelineFile('fields', {
    stages: [
      { name: 'sample', kind: 'ts', ranks: 3, module: join(fields, 'sample.mjs'), fields: { p: { dtype: 'float32', shape: [2, 3] }, k: { dtype: 'int64', to: 'all' }, z: { dtype: 'complex64', shape: [2] } } },
      { name: 'model', kind: 'c', ranks: 2, source: join(fields, 'model.c'), function: 'model', fields: { x: { dtype: 'float64', shape: [3] }, n: { dtype: 'int32', shape: [3] }, g: { dtype: 'uint8', shape: [3], to: 'all' } } },
    ],
    initial: { x: 0.1, g: 7 },
  });
  const ours = cliJson(['--pipeline', ring, '-i', '6', ...MPICH]);
  assert.equal(ours.fields, cliJson(['--pipeline', ring, '-i', '6', '--transport', 'threads']).fields);
  // sample as a python stage: under MPICH the runner that speaks the protocol through the C SDK.
  const py = pipelineFile('fields-py', { stages: [{ name: 'sample', kind: 'python', ranks: 3, module: join(fields, 'sample.py'), python: '/usr/bin/python3', fields: { p: { dtype: 'float32', shape: [2, 3] }, k: { dtype: 'int64', to: 'all' }, z: { dtype: 'complex64', shape: [2] } } }, ...JSON_STAGES(ring).slice(1)], initial: { x: 0.1, g: 7 } });
  assert.equal(cliJson(['--pipeline', py, '-i', '6', ...MPICH]).fields, ours.fields);
});

rings('--breakdown and --trace, and a checkpointed run killed (kill -9 of the CLI) and resumed to the uninterrupted checksum', async () => {
  const r = cli(['-p', '2', '-i', '20', '--breakdown', '--trace', join(dir, 'trace.json'), ...MPICH]);
  assert.is(r.status, 0, r.stderr);
  assert.match(r.stdout, /^\| c +\| compute \|/m);
  assert.ok(existsSync(join(dir, 'trace.json')));
  const ck = join(dir, 'ck');
  // MPICH's ranks spin while they wait (7 processes on this machine's 2 cores: ~50 ms a step): few iterations.
  const args = ['-p', '2', '--sizes', '10,10,10', '-i', '80', '--checkpoint', ck, '--checkpoint-every', '10', ...MPICH];
  const run = startCli(args);
  assert.ok(await until(() => existsSync(ck) && readdirSync(ck).some((d) => d.startsWith('checkpoint-')), 60_000), 'no checkpoint was written');
  const pids = descendants(run.child.pid);
  run.child.kill('SIGKILL');
  await run.exit;
  await until(() => pids.filter(exists).length === 0, 5000);
  assert.equal(pids.filter(exists).map(cmdline), [], 'processes of the killed run are left');
  const resumed = cliJson([...args, '--resume']);
  assert.ok(resumed.resumedFrom > 0 && resumed.resumedFrom < 80, `resumed from ${resumed.resumedFrom}`);
  assert.is(resumed.checksum, cliJson(['-p', '2', '--sizes', '10,10,10', '-i', '80', '--transport', 'threads']).checksum);
});

// The ring checks of mpi.test.mjs that are about commloop, not Open MPI: a message of 1 MB a
// rank and sizes that change every iteration, against the published and reference checksums.
rings('the published ring of 1 MB a rank and sizes that change every iteration give the reference checksums', () => {
  assert.is(cliJson(['-p', '2', '--sizes', '10,1000,1000000', '-i', '5', ...MPICH]).checksum, 11431291.134835951);
  const schedule = [[1, 1, 1], [10, 10, 10], [100, 100, 100], [1000, 1000, 1000], [10000, 10000, 10000]];
  const r = cliJson(['-p', '2', '--sizes', schedule.map((t) => t.join(',')).join('/'), '-i', '7', '--c-backend', 'wasm', ...MPICH]);
  assert.is(r.checksum, referenceRing(2, schedule, 7).checksum);
});

rings('--launch spawn exits 2 saying this MPICH cannot spawn; an MPI not asked for by its name exits 2', () => {
  let r = cli(['-p', '2', '-i', '1', '--launch', 'spawn', ...MPICH]);
  assert.is(r.status, 2);
  assert.is(r.stderr, 'commloop: --launch spawn: MPICH here cannot spawn (MPI_Comm_spawn was tried and refused); use --launch mpmd or auto\n');
  r = cli(['-p', '2', '-i', '1', '--mpi', 'intel']);
  assert.is(r.status, 2);
  assert.is(r.stderr, 'commloop: --mpi must be one of auto, openmpi, mpich (got "intel")\n');
});

rings.run();

const failures = suite('MPICH: failures keep their promises');
const isRank = (cmd) => /^\S*commloop_c_worker_mpich /.test(cmd) || /^\S*node \S*worker\.js /.test(cmd);

/** A long run whose six stage ranks are up and past Ready (its first status line). */
async function longRun(extra = []) {
  const run = startCli(['-p', '2', '--sizes', '10,10,10', '-i', '2000000000', '--status-every', '0.2', ...MPICH, ...extra]);
  assert.ok(await run.done(1, 60_000), 'the run did not start');
  assert.is(descendants(run.child.pid).map(cmdline).filter(isRank).length, 6);
  return run;
}

async function assertNoneLeft(pids) {
  await until(() => pids.filter(exists).length === 0, 5000);
  assert.equal(pids.filter(exists).map(cmdline), [], 'processes of the run are left');
}

const last = (stderr) => stderr.trim().split('\n').filter((l) => l.startsWith('commloop:')).pop();

/** MPICH's shared memory on this host: the files in /dev/shm and the SysV segments (UCX may use either). */
const sharedMemory = () => [...readdirSync('/dev/shm').map((f) => `/dev/shm/${f}`), ...readFileSync('/proc/sysvipc/shm', 'utf8').trim().split('\n').slice(1).map((l) => `sysv ${l.trim().split(/\s+/)[1]}`)];

failures('a killed C rank ends the run within 10 s, exit 1, one line (naming the stage, rank and host when the hub wins the race with Hydra), nothing left, its shared memory too', async () => {
  const before = new Set(sharedMemory());
  const run = await longRun();
  const pids = descendants(run.child.pid);
  const victim = pids.find((p) => /commloop_c_worker_mpich/.test(cmdline(p).split(' ')[0]));
  process.kill(victim, 'SIGKILL');
  const t = Date.now();
  const r = await run.exit;
  assert.ok(Date.now() - t < 10_000, `took ${Date.now() - t} ms`);
  assert.is(r.code, 1);
  // Hydra SIGKILLs the whole job, the hub too, ~10 ms after a rank dies: the hub names the rank
  // when its watchdog (woken by the rank's pidfd) gets a core first, which on this oversubscribed
  // 2-core machine it does not always (issue 28 stays open for it). Either way: one line, exit 1.
  const line = last(r.stderr);
  const byHub = `^commloop: (stage "c" rank [01] on ${HOST}: (was killed by SIGKILL|died) \\(pid ${victim}\\)|mpiexec exited with code 9 before the run ended)( \\(MPICH's messages: \\S+\\))?$`;
  // Or from Hydra's statuses, where the cleanup's SIGKILLs look like the kill: the host and the ranks it may be.
  assert.match(line, new RegExp(`${byHub}|${mpichKilled('stage "c" rank [01]', HOST)}`), r.stderr);
  assert.is(r.stderr.split('\n').filter((l) => l.startsWith('commloop:')).length, 1, r.stderr);
  console.log(`mpich.test.mjs: a killed rank: ${line}`);
  await assertNoneLeft(pids);
  assert.equal(sharedMemory().filter((m) => !before.has(m)), [], 'shared memory of the run left');
});

failures('SIGINT stops cleanly (exit 130, the result so far); a transform that hangs ends at --timeout naming its rank; a Python exception and a C crash name their rank', async () => {
  const run = await longRun(['--json']);
  const pids = descendants(run.child.pid);
  run.child.kill('SIGINT');
  const r = await run.exit;
  assert.is(r.code, 130, r.stderr);
  assert.is(JSON.parse(r.stdout).stopped, true);
  await assertNoneLeft(pids);
  const C = { name: 'c', kind: 'c', ranks: 2, size: 4, source: 'builtin:halffirst' };
  const hang = { name: 'hang', kind: 'ts', ranks: 2, size: 4, module: join(fixtures, 'lifecycle', 'hang.mjs') };
  let t = Date.now();
  let h = cli(['--pipeline', pipelineFile('hang', { stages: [hang, C] }), '-i', '3', '--timeout', '2', ...MPICH]);
  assert.is(h.status, 1, h.stderr);
  assert.match(last(h.stderr), new RegExp(`^commloop: stage "hang" rank 0 on ${HOST}: did not return from its transform within 2000 ms \\(iteration 0\\)`), h.stderr);
  assert.ok(Date.now() - t < 2000 + 15_000, `took ${Date.now() - t} ms`);
  const boom = { name: 'boom', kind: 'python', ranks: 2, size: 6, module: join(fixtures, 'stages', 'boom.py'), python: '/usr/bin/python3' };
  h = cli(['--pipeline', pipelineFile('boom', { stages: [C, boom] }), '-i', '10', ...MPICH]);
  assert.is(h.status, 1, h.stderr);
  assert.match(last(h.stderr), new RegExp(`^commloop: stage "boom" rank 1 on ${HOST}: ValueError: boom`), h.stderr);
  const crash = { name: 'crash', kind: 'c', ranks: 2, size: 4, source: join(fixtures, 'lifecycle', 'crash.c') };
  t = Date.now();
  h = cli(['--pipeline', pipelineFile('crash', { stages: [crash, C] }), '-i', '3', ...MPICH]);
  assert.is(h.status, 1, h.stderr);
  assert.match(last(h.stderr), new RegExp(`^commloop: stage "crash" rank 1 on ${HOST}: crashed \\(SIGSEGV\\)`), h.stderr);
});

// scancel and a time limit send SIGTERM to every process of a job at once (mpi.test.mjs does it under Open MPI).
failures('SIGTERM to every process of the run at once: exit 130, one "stopped by signal" line, nothing left; a C rank killed as it starts is named within 5 s', async () => {
  let { r, pids, lines } = await terminateAll(await longRun());
  assert.equal([r.code, lines.length], [130, 1], r.stderr);
  assert.match(lines[0], STOPPED_BY_TERM(2000000000), lines[0]);
  console.log(`mpich.test.mjs: SIGTERM to all: ${lines[0]}`);
  await assertNoneLeft(pids);

  const run = startCli(['-p', '2', '--sizes', '10,10,10', '-i', '2000000000', ...MPICH]);
  let victim;
  assert.ok(await until(() => (victim = descendants(run.child.pid).find((p) => /^\S*commloop_c_worker_mpich /.test(cmdline(p)))), 30_000), 'the C stage never started');
  pids = descendants(run.child.pid);
  process.kill(victim, 'SIGKILL');
  const t = Date.now();
  r = await run.exit;
  assert.ok(Date.now() - t < 5_000, `took ${Date.now() - t} ms`);
  assert.is(r.code, 1, r.stderr);
  console.log(`mpich.test.mjs: a rank killed as it starts: ${last(r.stderr)}`);
  // The start-up watch names it when it saw it go alone (or, from the order Hydra starts the
  // ranks in, missing below one that is there); when Hydra's cleanup took the others before
  // the next look, MPICH's exit statuses name the host and the ranks it may be.
  const named = `^commloop: stage "c" rank [01] on ${HOST}: (was killed by SIGKILL|died)( during start-up)? \\((pid ${victim}|before its pid was seen)\\)( \\(MPICH's messages: \\S+\\))?$`;
  assert.match(last(r.stderr), new RegExp(`${named}|${mpichKilled('stage "c" rank [01]', HOST)}`), r.stderr);
  await assertNoneLeft(pids);
});

failures.run();
