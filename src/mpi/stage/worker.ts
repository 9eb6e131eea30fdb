/**
 * A stage process: `node dist/worker.js ts MODULE EXPORT NAME` (a TypeScript transform:
 * builtin:NAME or a module path) or `node dist/worker.js c WASM EXPORT NAME` (a C
 * kernel's WASM build); NAME is the stage's, for what it prints. Speaks docs/PROTOCOL.md with the master, spawned or under one MPMD
 * mpirun. The native C stage is transport/c_worker.c instead.
 */
import { KernelTrap, instantiateKernel, nullGuard } from '../../stage/kernel.js';
import { ARENA_BASE, wasmRankBytes } from '../../arena.js';
import { errorLine, loadStateHooks, loadTransform, mustBeSync, type StateHooks } from '../../stage/ts-transform.js';
import { NO_STATE, STATE_NONE, stateOfValue, valueOfState, type RankState, type StateFormat } from '../../checkpoint/state.js';
import { CMD_EPOCH, CMD_LOAD, CMD_RUN, CMD_SAVE, CMD_STOP, FLAG_MERGED, FLAG_STATE, FLAG_TIMES, MAGIC, STEP_TIMEOUT_ENV, TAG_STATE, hostHash, parseFieldTable, stageComm } from '../protocol.js';
import { monoUs } from '../../trace/clock.js';
import { CLOCK_ROUNDS, chronological, newRing, slotOf, type TimingSpec } from '../../trace/log.js';
import { mpi } from '../addon.js';
import { stdoutToStderr } from '../../stage/stdout.js';
import { bytesOf } from '../../message.js';
import type { Block } from '../../pipeline/fields.js';
import { DESC_BYTES, blockViews, fieldTable, wasmDescriptors } from '../../stage/fields-views.js';

const [kind, what, exportName, stageName = kind] = process.argv.slice(2);
if (!((kind === 'ts' || kind === 'c') && what && exportName)) {
  process.stderr.write(`commloop worker: usage: worker.js ts MODULE EXPORT [NAME] | worker.js c WASM EXPORT [NAME] (got "${process.argv.slice(2).join(' ')}")\n`);
  process.exit(2);
}

// mpirun forwards SIGUSR1 and SIGUSR2 to every rank: a batch system's warning is the master's
// (a checkpoint), and Node would otherwise open its inspector on SIGUSR1.
for (const sig of ['SIGUSR1', 'SIGUSR2'] as const) process.on(sig, () => {});

const m = mpi();
m.init();
let parent: number;
let local: number | null;
try {
  ({ comm: parent, local } = stageComm(m));
} catch (err) {
  process.stderr.write(`commloop worker: ${(err as Error).message}\n`);
  process.exit(2);
}
const { rank, size: nranks } = m.describe(parent);
stdoutToStderr(() => `${stageName} ${rank}`);

const hello = new Int32Array(4);
m.bcast(parent, hello, 0);
if (hello[0] !== MAGIC || (hello[1] !== 1 && hello[1] !== 2 && hello[1] !== 3)) {
  process.stderr.write(`commloop worker: bad hello (magic ${hello[0]}, version ${hello[1]})\n`);
  m.abort(parent, 2);
}
const version = hello[1];
// v2: every step's sizes, once (docs/PROTOCOL.md): iteration i takes table[i % P], but
// iteration 0's input size is `first`.
let first = 0;
let table = new Int32Array(0);
/** With FLAG_TIMES: which iterations' step times to keep, and how many (docs/PROTOCOL.md, "Step times"). */
let timing: TimingSpec | undefined;
/** With FLAG_MERGED: the intracommunicator the steps run on. */
let merged: number | null = null;
/** With FLAG_STATE: the hub may send CMD_SAVE and CMD_LOAD between epochs. */
let stateful = false;
/** v3: the fields of this stage's input and output blocks (docs/PROTOCOL.md, "Version 3: fields"). */
let fields: { input: Block; output: Block } | undefined;
if (version >= 2) {
  const head = new Int32Array(3);
  m.bcast(parent, head, 0);
  if ((head[2] & ~(FLAG_TIMES | FLAG_MERGED | FLAG_STATE)) !== 0) {
    process.stderr.write(`commloop-fail: ${hello[2]} ${rank} ProtocolError: step table flags ${head[2]} are not known here\n`);
    m.abort(parent, 1);
  }
  first = head[1];
  table = new Int32Array(2 * head[0]);
  m.bcast(parent, table, 0);
  if (version === 3) {
    const n = new Int32Array(1);
    m.bcast(parent, n, 0);
    const text = new Uint8Array(n[0]);
    m.bcast(parent, text, 0);
    try {
      fields = parseFieldTable(new TextDecoder().decode(text), table[0], table[1]);
    } catch (err) {
      process.stderr.write(`commloop-fail: ${hello[2]} ${rank} ProtocolError: ${(err as Error).message}\n`);
      m.abort(parent, 1);
    }
  }
  if (head[2] & FLAG_TIMES) {
    const spec = new Int32Array(2);
    m.bcast(parent, spec, 0);
    timing = { every: spec[0], cap: spec[1] };
  }
  // MPMD: steps on the intercommunicator merged with the hub's side (the hub is rank 0).
  if (head[2] & FLAG_MERGED) merged = m.merge(parent, true);
  stateful = (head[2] & FLAG_STATE) !== 0;
}
const ring = timing ? newRing(timing) : undefined;
/**
 * The stage's own code failed: one failure report the supervisor turns into its line
 * (docs/PROTOCOL.md), then an abort so the hub hears of it at once.
 */
function failed(err: unknown): never {
  process.stderr.write(`commloop-fail: ${hello[2]} ${rank} ${errorLine(err)}\n`);
  m.abort(parent, 1);
  process.exit(1);
}

// Load before saying ready, so start-up time counts it and a bad module fails early.
const transform = kind === 'ts' ? await loadTransform(what, exportName).catch(failed) : undefined;
const hooks: StateHooks = kind === 'ts' && stateful ? await loadStateHooks(what).catch(failed) : {};
m.gather(parent, Int32Array.of(process.pid, hostHash()), null, 2, 0);
if (timing) {
  // The hub's clock rounds: the time this rank's clock reads when each broadcast arrives.
  const token = new Float64Array(1);
  for (let k = 0; k < CLOCK_ROUNDS; k++) {
    m.bcast(parent, token, 0);
    m.gather(parent, Float64Array.of(monoUs()), null, 1, 0);
  }
}

/** Where a step's input and output live: plain arrays for TS, the kernel's memory for WASM. */
interface Stage {
  buffers(nIn: number, nOut: number): [Float64Array, Float64Array];
  run(input: Float64Array, output: Float64Array, iteration: number): void;
}

function tsStage(): Stage {
  // Grow-only backing stores: sizes may change every step (the mixed-size run), and a
  // fresh zeroed array per step is work the C worker does not do either.
  let inStore = new Float64Array(0);
  let outStore = new Float64Array(0);
  let input = inStore;
  let output = outStore;
  return {
    buffers(nIn, nOut) {
      if (input.length !== nIn) {
        if (inStore.length < nIn) inStore = new Float64Array(nIn);
        input = inStore.subarray(0, nIn);
      }
      if (output.length !== nOut) {
        if (outStore.length < nOut) outStore = new Float64Array(nOut);
        output = outStore.subarray(0, nOut);
      }
      return [input, output];
    },
    run: fields
      ? fieldsRun()
      : (i, o, iteration) => mustBeSync(transform!(i, o, { rank, nranks, iteration })),
  };
}

/** A ts transform of fields: frozen views by name over the step's buffers, made again only when the buffers change. */
function fieldsRun(): Stage['run'] {
  const { input: inB, output: outB } = fields!;
  const ctxIn = fieldTable(inB);
  const ctxOut = fieldTable(outB);
  let bufs: [Float64Array, Float64Array] | undefined;
  let views: [object, object] = [{}, {}];
  return (i, o, iteration) => {
    if (bufs?.[0] !== i || bufs[1] !== o) {
      bufs = [i, o];
      views = [blockViews(i.buffer, i.byteOffset, inB), blockViews(o.buffer, o.byteOffset, outB)];
    }
    mustBeSync(transform!(views[0] as never, views[1] as never, { rank, nranks, iteration, input: ctxIn, output: ctxOut } as never));
  };
}

function wasmStage(): Stage {
  const PAGE = 65536;
  const memory = new WebAssembly.Memory({ initial: ARENA_BASE / PAGE, maximum: 65536, shared: true });
  const kernel = instantiateKernel(memory, what)[exportName];
  if (typeof kernel !== 'function') throw new Error(`${what} has no export ${exportName}`);
  const dirty = nullGuard(memory);
  // The MPI buffers are views into the kernel's memory: scatter and gather touch it directly.
  // Made again only when the sizes change (views of a shared memory stay valid as it grows).
  let views: [Float64Array, Float64Array] = [new Float64Array(0), new Float64Array(0)];
  let desc: ReturnType<typeof wasmDescriptors> | undefined;
  return {
    buffers(nIn, nOut) {
      if (views[0].length === nIn && views[1].length === nOut && views[0].byteOffset === ARENA_BASE) return views;
      // A kernel of fields: its descriptors right after the output (src/stage/fields-views.ts).
      const descBytes = fields ? DESC_BYTES * (fields.input.fields.length + fields.output.fields.length) + [...fields.input.fields, ...fields.output.fields].reduce((n, f) => n + f.name.length + 1, 0) : 0;
      const need = wasmRankBytes(nIn, nOut) + descBytes;
      const have = memory.buffer.byteLength;
      if (need > have) memory.grow(Math.ceil((need - have) / PAGE));
      views = [new Float64Array(memory.buffer, ARENA_BASE, nIn), new Float64Array(memory.buffer, ARENA_BASE + bytesOf(nIn), nOut)];
      if (fields) desc = wasmDescriptors(memory.buffer, wasmRankBytes(nIn, nOut), fields.input, fields.output);
      return views;
    },
    run: (i, o, iteration) => {
      if (desc) {
        // A kernel of fields: descriptors below the arena's data (ARENA_BASE - their bytes), pointed at this step's blocks.
        desc.point(i.byteOffset, o.byteOffset);
        kernel(desc.inDesc, fields!.input.fields.length, desc.outDesc, fields!.output.fields.length, rank, nranks, iteration);
      } else kernel(i.byteOffset, i.length, o.byteOffset, o.length, rank, nranks, iteration);
      const wrote = dirty();
      if (wrote) throw new KernelTrap(wrote);
    },
  };
}

let stage: Stage;
try {
  stage = kind === 'ts' ? tsStage() : wasmStage();
} catch (err) {
  failed(err);
}

/**
 * The compute watch (the addon's watchCompute): iteration + 1 while the stage's code runs,
 * and a count of computes. A thread of the addon reports a compute that outlasts the run's
 * step deadline, naming this rank: the hub's deadline could name only the stage.
 */
const computing = new Int32Array(new SharedArrayBuffer(8));
const stepTimeout = Number(process.env[STEP_TIMEOUT_ENV]);
if (stepTimeout >= 1) m.watchCompute(computing, Math.floor(stepTimeout), `commloop-fail: ${hello[2]} ${rank} `, kind === 'ts' ? 'its transform' : 'its kernel');

let steps = 0;
function step(iteration: number, nIn: number, nOut: number): void {
  const [input, output] = stage.buffers(nIn, nOut);
  const at = ring ? slotOf(iteration, timing!) : -1;
  if (at >= 0) ring![at + 1] = monoUs();
  if (merged !== null) m.scatterOthers(merged, null, input, nIn, 0);
  else m.scatter(parent, null, input, nIn, 0);
  if (at >= 0) ring![at + 2] = monoUs();
  computing[0] = iteration + 1;
  computing[1]++;
  try {
    stage.run(input, output, iteration);
  } catch (err) {
    failed(err);
  }
  computing[0] = 0;
  if (at >= 0) ring![at + 3] = monoUs();
  if (merged !== null) m.gatherOthers(merged, output, null, nOut, 0);
  else m.gather(parent, output, null, nOut, 0);
  if (at >= 0) {
    ring![at + 4] = monoUs();
    ring![at] = iteration;
  }
  steps++;
}

/** CMD_SAVE (docs/PROTOCOL.md section 5): {format, nbytes} to the hub, then the bytes. */
function save(iteration: number): void {
  let state: RankState = NO_STATE;
  if (hooks.save) {
    try {
      state = stateOfValue(hooks.save({ rank, nranks, iteration }));
    } catch (err) {
      failed(new Error(`save() failed: ${errorLine(err)}`));
    }
  }
  m.gather(parent, Int32Array.of(state.format, state.bytes.length), null, 2, 0);
  if (state.bytes.length > 0) m.send(parent, state.bytes, 0, TAG_STATE);
}

/** CMD_LOAD: this rank's {format, nbytes}, the bytes, then an ack once load() took them. */
function load(iteration: number): void {
  const size = new Int32Array(2);
  m.scatter(parent, null, size, 2, 0);
  const bytes = new Uint8Array(size[1]);
  if (size[1] > 0) m.recv(parent, bytes, 0, TAG_STATE);
  if (size[0] !== STATE_NONE) {
    try {
      if (!hooks.load) throw new Error('the checkpoint holds a state for this rank, but the module exports no load(state, ctx)');
      hooks.load(valueOfState({ format: size[0] as StateFormat, bytes }), { rank, nranks, iteration });
    } catch (err) {
      failed(new Error(`load() failed: ${errorLine(err)}`));
    }
  }
  m.gather(parent, Int32Array.of(0), null, 1, 0);
}

const header = new Int32Array(4);
const P = table.length / 2;
for (;;) {
  m.bcast(parent, header, 0);
  if (header[0] === CMD_STOP) break;
  if (header[0] === CMD_RUN && version === 1) step(header[1], header[2], header[3]);
  else if (header[0] === CMD_EPOCH && version >= 2) {
    // An epoch: header[2] steps from iteration header[1], no header in between.
    for (let i = header[1]; i < header[1] + header[2]; i++) {
      const e = 2 * (i % P);
      step(i, i === 0 ? first : table[e], table[e + 1]);
    }
  } else if (header[0] === CMD_SAVE && stateful) save(header[1]);
  else if (header[0] === CMD_LOAD && stateful) load(header[1]);
  else {
    process.stderr.write(`commloop-fail: ${hello[2]} ${rank} ProtocolError: bad header {${header.join(', ')}} for protocol ${version}\n`);
    m.abort(parent, 1);
  }
}
// Step times: this rank's kept records, oldest first, in one gather after the stop.
if (ring) {
  const kept = chronological(ring, steps, timing!);
  m.gather(parent, kept, null, kept.length, 0);
}
if (merged !== null) m.free(merged);
m.disconnect(parent);
if (local !== null) m.free(local);
m.finalize();
