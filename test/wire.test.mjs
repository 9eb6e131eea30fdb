// The wire of an MPI run (src/mpi/wire.ts) and which failure a run reports (src/mpi/blame.ts):
// the decisions as pure functions, then the CLI on each wire this machine offers. (dist/internal.js
// bundles its own error classes: errors are matched by name.)
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { UCX_ENV, chooseWire, firstFailure, ucxSelectable } from '../dist/internal.js';
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
  assert.equal(pick(chooseWire({ launch: 'spawn', local: true, request: 'auto', env: {}, ucx: no })), ['tcp', {}, false]);
  assert.equal(pick(chooseWire({ launch: 'spawn', local: false, request: 'auto', env: {}, ucx: yes })), ['tcp', {}, false]);
  assert.equal(pick(chooseWire({ launch: 'spawn', local: true, request: 'tcp', env: {}, ucx: yes })), ['tcp', {}, false]);
});

choose('MPMD: ob1 (vader within a host), merged; by hand TCP only', () => {
  assert.equal(pick(chooseWire({ launch: 'mpmd', local: true, request: 'auto', env: {}, ucx: yes })), ['shm', {}, true]);
  assert.equal(pick(chooseWire({ launch: 'mpmd', local: false, request: 'auto', env: {}, ucx: yes })), ['shm', {}, true]);
  assert.equal(pick(chooseWire({ launch: 'mpmd', local: true, request: 'tcp', env: {}, ucx: yes })), ['tcp', { OMPI_MCA_btl: 'self,tcp' }, true]);
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

blame.run();

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
