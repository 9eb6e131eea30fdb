// The wire of an MPI run (src/mpi/impl/openmpi-wire.ts) and which failure a run reports (src/mpi/supervise/blame.ts):
// the decisions as pure functions, then the CLI on each wire this machine offers. (dist/internal.js
// bundles its own error classes: errors are matched by name.)
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Supervision, UCX_ENV, chooseLaunch, chooseWire, firstFailure, isDeadline, mpiImpl, placementOf, ucxSelectable } from '../dist/internal.js';
import { MPI_MISSING, cli, cliJson, haveMpi } from './helpers.mjs';
import { referenceRing } from './reference.mjs';

if (!haveMpi()) throw new Error(MPI_MISSING);

const choose = suite('the wire is chosen in one place');
const yes = () => true;
const no = () => false;
const pick = (w) => [w.name, w.env, w.merged];

choose('spawn mode on this host: UCX shared memory with merged communicators, where UCX can be selected', () => {
  assert.equal(pick(chooseWire({ launch: 'spawn', local: true, request: 'auto', env: {}, ucx: yes })), ['shm', UCX_ENV, true]);
  // UCX_MEM_EVENTS=no: UCX's hot-patching of mmap crashed Node stage processes; UCX's signal
  // handlers printed backtraces over a stage's report and would take V8's SIGSEGV (wire.ts).
  assert.equal(UCX_ENV, {
    OMPI_MCA_pml: 'ucx',
    OMPI_MCA_pml_ucx_tls: 'any',
    OMPI_MCA_pml_ucx_devices: 'any',
    UCX_MEM_EVENTS: 'no',
    UCX_ERROR_SIGNALS: '',
    UCX_HANDLE_ERRORS: 'none',
  });
});

choose('spawn mode without UCX falls back to TCP quietly; across hosts TCP (ob1), not merged', () => {
  assert.equal(pick(chooseWire({ launch: 'spawn', local: true, request: 'auto', env: {}, ucx: no })), ['tcp', { OMPI_MCA_pml: 'ob1' }, false]);
  assert.equal(pick(chooseWire({ launch: 'spawn', local: false, request: 'auto', env: {}, ucx: yes })), ['tcp', { OMPI_MCA_pml: 'ob1' }, false]);
  assert.equal(pick(chooseWire({ launch: 'spawn', local: true, request: 'tcp', env: {}, ucx: yes })), ['tcp', { OMPI_MCA_pml: 'ob1' }, false]);
});

choose('MPMD: ob1 (vader within a host), merged; by hand TCP only', () => {
  assert.equal(pick(chooseWire({ launch: 'mpmd', local: true, request: 'auto', env: {}, ucx: yes })), ['shm', { OMPI_MCA_pml: 'ob1' }, true]);
  assert.equal(pick(chooseWire({ launch: 'mpmd', local: false, request: 'auto', env: {}, ucx: yes })), ['shm', { OMPI_MCA_pml: 'ob1' }, true]);
  assert.equal(pick(chooseWire({ launch: 'mpmd', local: true, request: 'tcp', env: {}, ucx: yes })), ['tcp', { OMPI_MCA_pml: 'ob1', OMPI_MCA_btl: 'self,tcp' }, true]);
});

choose("the user's MCA variables win; a wire asked by hand against them, or shm without UCX, is bad input", () => {
  assert.equal(pick(chooseWire({ launch: 'spawn', local: true, request: 'auto', env: { OMPI_MCA_pml: 'ob1' }, ucx: yes })), ['user', {}, false]);
  assert.throws(
    () => chooseWire({ launch: 'spawn', local: true, request: 'shm', env: { OMPI_MCA_btl: 'self,tcp' }, ucx: yes }),
    (e) => e.name === 'UsageError' && e.message === '--wire shm: OMPI_MCA_btl=self,tcp is set in the environment and chooses the wire; unset it or use --wire auto',
  );
  assert.throws(
    () => chooseWire({ launch: 'spawn', local: true, request: 'shm', env: {}, ucx: no }),
    (e) => e.name === 'UsageError' && e.message === '--wire shm needs Open MPI built with UCX whose pml can be selected here (it could not); use --wire auto or --wire tcp',
  );
});

choose.run();

const blame = suite('the first failure wins');
const killed = (stage, rank, sig, host = 'h1') => ({ stage, rank, host, reason: 'killed', detail: `was killed by ${sig} (pid 1)` });
const ompi = { stage: 'ts2', rank: 1, host: 'h2', reason: 'killed', detail: 'was killed by SIGKILL (reported by Open MPI)' };

blame("Open MPI's notice of the first death beats what the hub saw of the teardown after it", () => {
  for (const hub of [
    killed('ts1', 0, 'SIGTERM'),
    { reason: 'exited', host: 'vm', detail: "Open MPI's daemon on vm (orted, pid 9) exited with code 137" },
    { stage: 'ts2', reason: 'start', detail: 'could not start 2 ranks: MPI_Comm_spawn: MPI_ERR_INTERN: internal error' },
    { stage: 'c', rank: 0, reason: 'exited', detail: 'exited with code 195 (pid 3)' },
    { stage: 'c', reason: 'protocol', detail: 'MPI_Gather: MPI_ERR_OTHER in iteration 4' },
  ]) {
    assert.equal(firstFailure({ stages: [], hub, openMpi: ompi }), ompi, hub.detail);
  }
});

blame("the hub's own findings, a death it saw directly and a stage's report are kept", () => {
  const timeout = { stage: 'c', reason: 'timeout', detail: 'did not answer a gather within 2000 ms' };
  assert.equal(firstFailure({ stages: [], hub: timeout, openMpi: ompi }), timeout);
  assert.equal(firstFailure({ stages: [], hub: killed('c', 1, 'SIGSEGV'), openMpi: ompi }), killed('c', 1, 'SIGSEGV'));
  const own = { stage: 'c', rank: 1, reason: 'user-code', detail: 'crashed (SIGABRT)' };
  assert.equal(firstFailure({ stages: [own], hub: killed('ts1', 0, 'SIGTERM'), openMpi: ompi }), own);
  const daemon = { reason: 'killed', host: 'vm', detail: "Open MPI's daemon on vm (orted, pid 9) was killed by SIGKILL" };
  assert.equal(firstFailure({ stages: [], hub: daemon }), daemon);
});

blame('mpirun killed from outside is the cause, not the rank the start-up watch then saw go', () => {
  const launcher = { reason: 'killed', detail: 'mpirun was killed by SIGKILL before the run ended' };
  const startup = { stage: 'ts1', rank: 0, host: 'vm', reason: 'exited', detail: 'died during start-up (pid 5)' };
  assert.equal(firstFailure({ stages: [], launcher, startup }), launcher);
  const own = { stage: 'c', rank: 1, reason: 'user-code', detail: 'crashed (SIGABRT)' };
  assert.equal(firstFailure({ stages: [own], launcher }), own);
});

blame('a rank seen going at start-up beats the ranks killed after it; nothing known is undefined', () => {
  const startup = { stage: 'c', rank: 0, host: 'vm', reason: 'exited', detail: 'died during start-up (pid 5)' };
  assert.equal(firstFailure({ stages: [], hub: killed('ts1', 0, 'SIGKILL'), startup }), startup);
  assert.equal(firstFailure({ stages: [] }), undefined);
});

blame("a deadline's own teardown never outranks it: Open MPI's account of a death after the deadline is not read", () => {
  // A spawn across hosts that hung (Slurm bed): the supervisor's start deadline passes, it
  // kills the job, and Open MPI then reports the SIGKILL it sent as a rank's death.
  const plan = { stages: [{ name: 'where', ranks: 2 }, { name: 'acc', ranks: 2 }] };
  const hub = { remote: true, launchHosts: [], hostNames: new Map(), mpi: mpiImpl('openmpi'), child: {}, wire: { name: 'tcp' }, tell() {} };
  const killedNotice = [
    'Child job 2 terminated normally, but 1 process returned',
    'mpirun noticed that process rank 0 with PID 0 on node n1 exited on signal 9 (Killed).',
  ];
  const run = new Supervision(plan, { timeoutMs: 1000, launch: 'spawn', verbose: false }, {}, hub);
  run.tick(run.t0 + 3100);
  for (const line of killedNotice) run.onStderrLine(line);
  const { error } = run.settle(null, 'SIGKILL');
  assert.equal([error.stage, error.reason, error.detail], [undefined, 'start', 'the stages did not start within 1000 ms']);
  // The same notice before any deadline is the cause, as before.
  const early = new Supervision(plan, { timeoutMs: 1000, launch: 'spawn', verbose: false }, {}, hub);
  for (const line of killedNotice) early.onStderrLine(line);
  early.tick(early.t0 + 3100);
  const { error: first } = early.settle(null, 'SIGKILL');
  assert.equal([first.stage, first.rank, first.host, first.detail], ['where', 0, 'n1', 'was killed by SIGKILL (reported by Open MPI)']);
  assert.ok(isDeadline({ reason: 'start', detail: 'did not answer its spawn within 20000 ms' }));
  assert.not.ok(isDeadline({ reason: 'protocol', detail: 'MPI_Gather: MPI_ERR_OTHER in iteration 4' }));
});

blame.run();

const launches = suite('--launch auto');

launches('spawn where every rank is on this host, MPMD where they span several hosts; --launch spawn|mpmd force one', () => {
  const none = placementOf({}, {});
  assert.equal(chooseLaunch('auto', none), { launch: 'spawn', why: 'auto: every rank on this host' });
  assert.equal(chooseLaunch('auto', placementOf({ host: 'localhost,127.0.0.1' }, {})), { launch: 'spawn', why: 'auto: every rank on this host' });
  assert.equal(chooseLaunch('auto', placementOf({ host: 'h1,h2:4' }, {})), { launch: 'mpmd', why: 'auto: ranks on 2 other hosts' });
  const slurm = { SLURM_JOB_ID: '7', SLURM_JOB_NODELIST: 'n[1-3]' };
  const alloc = placementOf({}, slurm);
  assert.equal([alloc.remote, alloc.spawnInfo], [true, { map_by: 'node' }]);
  assert.equal(chooseLaunch('auto', alloc), { launch: 'mpmd', why: "auto: ranks on the Slurm allocation's 3 nodes" });
  // An allocation of one node is this host.
  assert.equal(chooseLaunch('auto', placementOf({}, { SLURM_JOB_ID: '8', SLURM_JOB_NODELIST: 'n1' })).launch, 'spawn');
  assert.equal(chooseLaunch('spawn', alloc), { launch: 'spawn', why: '--launch spawn' });
  assert.equal(chooseLaunch('mpmd', none), { launch: 'mpmd', why: '--launch mpmd' });
});

launches.run();

const wires = suite('the CLI on each wire');
const WIRES = ucxSelectable() ? ['shm', 'tcp'] : ['tcp'];
if (WIRES.length === 1) console.log('wire.test.mjs: --wire shm not tried: Open MPI cannot select UCX here');

for (const launch of ['spawn', 'mpmd']) {
  for (const wire of WIRES) {
    wires(`--launch ${launch} --wire ${wire}: the one-host checksum, and the wire in --json and -g`, () => {
      const r = cliJson(['-p', '2', '--sizes', '10,1000,1000', '-i', '3', '--launch', launch, '--wire', wire]);
      assert.is(r.checksum, referenceRing(2, [[10, 1000, 1000]], 3).checksum);
      assert.is(r.wire, wire);
      const g = cli(['-p', '2', '--sizes', '10,10,10', '-i', '2', '--launch', launch, '--wire', wire, '-g']);
      assert.is(g.status, 0, g.stderr);
      assert.ok(g.stdout.split('\n')[1].endsWith(`, wire ${wire}`), g.stdout);
    });
  }
}

wires('auto picks shm in spawn mode on one host where UCX can be selected, and the environment wins', () => {
  assert.is(cliJson(['-p', '2', '--sizes', '10,10,10', '-i', '2']).wire, WIRES[0]);
  const r = cli(['-p', '2', '--sizes', '10,10,10', '-i', '2', '--json'], { env: { ...process.env, OMPI_MCA_pml: 'ob1' } });
  assert.is(r.status, 0, r.stderr);
  assert.is(JSON.parse(r.stdout).wire, 'user');
  const bad = cli(['-p', '2', '-i', '2', '--wire', 'shm'], { env: { ...process.env, OMPI_MCA_pml: 'ob1' } });
  assert.is(bad.status, 2);
  assert.is(bad.stderr, 'commloop: --wire shm: OMPI_MCA_pml=ob1 is set in the environment and chooses the wire; unset it or use --wire auto\n');
});

wires('a threads run has the wire "memory"; --wire is an mpi option', () => {
  assert.is(cliJson(['-p', '2', '--sizes', '10,10,10', '-i', '2', '--transport', 'threads']).wire, 'memory');
  const r = cli(['-i', '2', '--transport', 'threads', '--wire', 'tcp']);
  assert.is(r.status, 2);
  assert.is(r.stderr, 'commloop: --wire needs --transport mpi (got --transport threads)\n');
});

wires.run();
