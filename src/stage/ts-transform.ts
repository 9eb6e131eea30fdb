/** Loading a ts stage's transform: a built-in by name, or a module's named (or default) export. */
import { pathToFileURL } from 'node:url';
import { TS_TRANSFORMS, type Transform } from './transforms.js';

export async function loadTransform(module: string, exportName: string): Promise<Transform> {
  if (module.startsWith('builtin:')) return TS_TRANSFORMS[module.slice(8)];
  const fn = pickTransform((await import(pathToFileURL(module).href)) as Record<string, unknown>, exportName);
  if (!fn) throw new Error(`${module} has no function export "${exportName}"`);
  return fn;
}

/** The named export; for the default name "transform", the default export also serves. */
export function pickTransform(mod: Record<string, unknown>, exportName: string): Transform | undefined {
  const fn = mod[exportName] ?? (exportName === 'transform' ? mod.default : undefined);
  return typeof fn === 'function' ? (fn as Transform) : undefined;
}
