/** The library API: `import { runPipeline } from 'commloop'`. */
export { runPipeline, runRing, type RunOptions, type RunResult, type TransportName, type LaunchMode } from './run.js';
export { parseArgs, HELP, type CliOptions } from './cli/options.js';
export {
  makePlan,
  demoPipeline,
  sizesToSchedule,
  iterationSteps,
  type PipelineSpec,
  type StageSpec,
  type StageKind,
  type RingPlan,
  type RingStage,
  type StageStep,
} from './pipeline/model.js';
export { loadPipelineFile, validatePipeline, preparePlan } from './pipeline/load.js';
export { readArray, writeNpy } from './pipeline/npy.js';
export { halfmean, halffirst, sum, checksum, type Transform, type StageContext } from './stage/transforms.js';
export { instantiateKernel, type CBackend } from './stage/kernel.js';
export { UsageError, StageError } from './errors.js';
export { MpiError } from './mpi/addon.js';
export { ARENA_BASE } from './arena.js';
export { kernelModule, kernelWasmPath, nativeKernels, type KernelAddon } from './assets.js';
