/**
 * What the tests and the benchmark reach into, bundled as dist/internal.js: not in
 * package.json's exports and not in the tarball, so nothing here is API.
 */
export { parseArgs, HELP, type CliOptions } from './cli/options.js';
export { breakdown, formatTime, toJson } from './cli/report.js';
export { makePlan, sizesToSchedule, iterationSteps } from './pipeline/model.js';
export { loadPipelineFile, validatePipeline, preparePlan } from './pipeline/load.js';
export { cacheDir } from './pipeline/compile.js';
export { halfmean, halffirst, sum, checksum } from './stage/transforms.js';
export { instantiateKernel } from './stage/kernel.js';
export { ARENA_BASE, layout, makeArena, wasmAddressed } from './arena.js';
export { partIndex, partView, messageView, lastOfPart, regionBytes, messageBytes, messageFromBytes, valuesOf, wordsOf, outputBytes } from './message.js';
export { ringFields, blockOf, parseFields, duplicateKey } from './pipeline/fields.js';
export { kernelModule, kernelWasmPath, nativeKernels, type KernelAddon } from './assets.js';
export { chooseWire, ucxSelectable, UCX_ENV } from './mpi/impl/openmpi-wire.js';
export { firstFailure, isDeadline } from './mpi/supervise/blame.js';
export { Supervision } from './mpi/supervise/supervision.js';
export { chooseLaunch, placementOf } from './mpi/launch/placement.js';
export { chooseMpi, mpiImpl } from './mpi/impl/index.js';
export { statusLine, formatSpan, formatClock } from './cli/status.js';
export { IterStats } from './trace/stats.js';
export { writeCheckpoint, readCheckpoint, newestCheckpoint, listCheckpoints, checkpointName } from './checkpoint/store.js';
export { identityOf } from './checkpoint/identity.js';
export { expandHostlist, slurmAllocation } from './mpi/launch/slurm.js';
export { writeFailureLog } from './mpi/supervise/leftovers.js';
