/**
 * The library API: `import { runPipeline } from 'commloop'` (docs/API.md). Only what a
 * user calls or types against; the tests' and the bench's internals are in internal.ts.
 */
/// <reference types="node" preserve="true" />
export { runPipeline, runRing, type RunOptions, type RunResult, type TransportName, type LaunchMode } from './run.js';
export { demoPipeline, type PipelineSpec, type StageSpec, type StageKind, type CBackend, type FieldDecl } from './pipeline/model.js';
export type { Dtype } from './pipeline/fields.js';
export { readArray, writeNpy } from './pipeline/npy.js';
export type { Transform, StageContext } from './stage/transforms.js';
export type { FieldsTransform, FieldsContext, FieldInfo } from './stage/fields-views.js';
export type { Array1, FieldArray, FieldValues } from './message.js';
export { UsageError, RunError, type Failure, type FailureReason } from './errors.js';
export { MpiError } from './mpi/addon.js';
export { version } from './version.js';
