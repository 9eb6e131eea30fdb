/** The library API. */
export { runRing, type RunOptions, type RunResult, type TransportName } from './run.js';
export { parseArgs, HELP, type CliOptions } from './options.js';
export { makePlan, demoStages, demoSchedule, iterationSteps, type RingPlan, type StageSpec, type StageStep } from './pipeline.js';
export { halfmean, halffirst, sum, checksum, type Transform, type StageContext } from './transforms.js';
export { UsageError, StageError } from './errors.js';
export { instantiateKernel, ARENA_BASE, type CBackend } from './executor.js';
export { kernelModule, kernelWasmPath, nativeKernels, type KernelAddon } from './assets.js';
