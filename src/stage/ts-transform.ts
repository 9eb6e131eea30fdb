/** Loading a ts stage's transform: a built-in by name, or a module's named (or default) export. */
import { pathToFileURL } from 'node:url';
import { TS_TRANSFORMS, type Transform } from './transforms.js';

export async function loadTransform(module: string, exportName: string): Promise<Transform> {
  if (module.startsWith('builtin:')) return TS_TRANSFORMS[module.slice(8)];
  const fn = pickTransform((await import(pathToFileURL(module).href)) as Record<string, unknown>, exportName);
  if (!fn) throw new Error(`${module} has no function export "${exportName}"`);
  return fn;
}

/** A ts stage module's state hooks (docs/CHECKPOINTS.md): `save(ctx)` and `load(state, ctx)`, each optional. */
export interface StateHooks {
  save?: (ctx: StageCtx) => unknown;
  load?: (state: unknown, ctx: StageCtx) => unknown;
}
export interface StageCtx {
  rank: number;
  nranks: number;
  iteration: number;
}

export async function loadStateHooks(module: string): Promise<StateHooks> {
  if (module.startsWith('builtin:')) return {};
  const mod = (await import(pathToFileURL(module).href)) as Record<string, unknown>;
  const fn = (name: string) => (typeof mod[name] === 'function' ? (mod[name] as never) : undefined);
  return { save: fn('save'), load: fn('load') };
}

/** The named export; for the default name "transform", the default export also serves. */
export function pickTransform(mod: Record<string, unknown>, exportName: string): Transform | undefined {
  const fn = mod[exportName] ?? (exportName === 'transform' ? mod.default : undefined);
  return typeof fn === 'function' ? (fn as Transform) : undefined;
}

/**
 * Transforms are synchronous: the ring moves on when the call returns. A Promise back
 * (an async transform) would be dropped and its rejection would surface nowhere useful,
 * so it fails the stage; its own rejection is silenced here because this throw reports it.
 */
export function mustBeSync(result: unknown): void {
  if (result && typeof (result as PromiseLike<unknown>).then === 'function') {
    (result as Promise<unknown>).catch?.(() => {});
    throw new Error('the transform returned a Promise: a ts transform must be synchronous');
  }
}

/** What user code threw, as one line: "TypeError: x is undefined" or the thrown value. */
export function errorLine(err: unknown): string {
  // A WASM kernel's trap (out-of-bounds access, unreachable): where the native build would crash.
  if (err instanceof WebAssembly.RuntimeError) return `crashed (WebAssembly trap: ${err.message.split('\n')[0]})`;
  if (err instanceof Error) return err.message.split('\n')[0] || err.name;
  return `threw ${String(err).split('\n')[0]}`;
}
