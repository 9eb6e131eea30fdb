/** The library API: `import { runPipeline } from 'commloop'`. */
export {
  runPipeline,
  runRing,
  type RunOptions,
  type RunResult,
  type TransportName,
  type LaunchMode,
} from './run.js';
export { parseArgs, HELP, type CliOptions } from './options.js';
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
} from './pipeline.js';
export { loadPipelineFile, validatePipeline, preparePlan } from './pipeline-load.js';
export { halfmean, halffirst, sum, checksum, type Transform, type StageContext } from './transforms.js';
export { UsageError, StageError } from './errors.js';
export { MpiError } from './mpi.js';
export { readArray, writeNpy } from './npy.js';
export { instantiateKernel, ARENA_BASE, type CBackend } from './executor.js';
export { kernelModule, kernelWasmPath, nativeKernels, type KernelAddon } from './assets.js';
