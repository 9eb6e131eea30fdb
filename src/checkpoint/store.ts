/**
 * Checkpoints on disk (docs/CHECKPOINTS.md): a folder per checkpoint, named by the number of
 * completed iterations, holding Array1 for the next iteration as `.npy`, every stage rank's
 * state, and a JSON manifest with the run's identity and a sha256 of every file. A folder
 * becomes visible only complete: it is written under a temporary name, every file and the
 * folder synced, then renamed into place, so a run killed at any moment (in a write too)
 * leaves the checkpoints before it as they were.
 */
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, readdirSync, renameSync, rmSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { version } from '../version.js';
import { identityHash, sha256, type Identity } from './identity.js';
import { STATE_BYTES, STATE_NONE, STATE_NPY, type RankState, type RunStates } from './state.js';
import { fieldCtor, fieldNpys, lanesOf, messageBytes, messageFromBytes, wordsOf, type Array1Form, type FieldArray, type FieldValues, type Message } from '../message.js';
import { DTYPES, blockOf, type Dtype } from '../pipeline/fields.js';
import { parseNpy } from '../pipeline/npy.js';

export const MANIFEST = 'manifest.json';
const PREFIX = 'checkpoint-';
const TMP = '.tmp-';
/** Iterations in a folder's name, zero-padded so that names sort as numbers do. */
const DIGITS = 12;

export interface Checkpoint {
  /** Completed iterations: the next iteration to run. */
  iterations: number;
  /** Array1 for that iteration. */
  array1: Message;
  states: RunStates;
  identity: Identity;
  /** Where it was taken (for people: not checked on resume). */
  taken: { transport: string; launch: string; cBackend: string };
}

export interface Manifest {
  format: 'commloop-checkpoint';
  version: 1;
  commloop: string;
  created: string;
  iterations: number;
  identity: Identity;
  /** sha256 of the identity's JSON: equal hashes, same run. */
  identityHash: string;
  taken: Checkpoint['taken'];
  /** Array1: one .npy (`file`), or in a ring of fields one .npy per field (`fields`: name to file). */
  array1: { file?: string; fields?: Record<string, string>; length: number };
  states: { stage: number; rank: number; format: 'bytes' | 'npy'; file: string }[];
  /** Every other file of the folder: its size and sha256. */
  files: Record<string, { bytes: number; sha256: string }>;
}

export const checkpointName = (iterations: number) => PREFIX + String(iterations).padStart(DIGITS, '0');

/** Writes `data` to `path` and syncs it to disk. */
function writeSynced(path: string, data: Uint8Array): void {
  const fd = openSync(path, 'wx');
  try {
    for (let at = 0; at < data.length; ) at += writeSync(fd, data, at, data.length - at);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

function syncDir(path: string): void {
  const fd = openSync(path, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** A stage's name as part of a file name. */
const safe = (name: string) => name.replace(/[^A-Za-z0-9_.-]/g, '_');

/**
 * Writes checkpoint `cp` into `dir` and keeps the newest `keep`; returns its folder and
 * size. Throws (an Error naming the path) when the disk refuses: the caller's run fails,
 * and the checkpoints already there stay.
 */
export function writeCheckpoint(dir: string, cp: Checkpoint, keep: number): { path: string; bytes: number } {
  mkdirSync(dir, { recursive: true });
  removeAbandoned(dir);
  const tmp = join(dir, `${TMP}${checkpointName(cp.iterations)}-${process.pid}`);
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(join(tmp, 'state'), { recursive: true });
  const files: Manifest['files'] = {};
  let bytes = 0;
  const put = (name: string, data: Uint8Array) => {
    writeSynced(join(tmp, name), data);
    files[name] = { bytes: data.length, sha256: sha256(data) };
    bytes += data.length;
  };
  const form = formOf(cp.identity);
  const array1: Manifest['array1'] = { length: cp.array1.length };
  if (form) {
    array1.fields = {};
    for (const { name, npy } of fieldNpys(form, cp.array1)) put((array1.fields[name] = `array1.${name}.npy`), npy);
  } else put((array1.file = 'array1.npy'), messageBytes(cp.array1));
  const states: Manifest['states'] = [];
  cp.states.forEach((ranks, s) =>
    ranks?.forEach((st, r) => {
      if (st.format === STATE_NONE) return;
      const file = `state/${s}-${safe(cp.identity.stages[s].name)}.${r}.${st.format === STATE_NPY ? 'npy' : 'bin'}`;
      put(file, st.bytes);
      states.push({ stage: s, rank: r, format: st.format === STATE_NPY ? 'npy' : 'bytes', file });
    }),
  );
  syncDir(join(tmp, 'state'));
  const manifest: Manifest = {
    format: 'commloop-checkpoint',
    version: 1,
    commloop: version,
    created: new Date().toISOString(),
    iterations: cp.iterations,
    identity: cp.identity,
    identityHash: identityHash(cp.identity),
    taken: cp.taken,
    array1,
    states,
    files,
  };
  const text = Buffer.from(JSON.stringify(manifest, null, 1) + '\n');
  writeSynced(join(tmp, MANIFEST), text);
  syncDir(tmp);
  const final = join(dir, checkpointName(cp.iterations));
  // The same iteration again (a resumed run that saves where it started): the old one goes
  // out of sight first. A kill between the two renames leaves the checkpoints before it.
  if (existsSync(final)) discard(final);
  renameSync(tmp, final);
  syncDir(dir);
  prune(dir, keep);
  return { path: final, bytes: bytes + text.length };
}

/** The checkpoint folders in `dir`, newest first. */
export function listCheckpoints(dir: string): string[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  return names.filter((n) => n.startsWith(PREFIX) && /^\d+$/.test(n.slice(PREFIX.length))).sort().reverse().map((n) => join(dir, n));
}

/**
 * Removes all but the newest `keep`. Each goes out of sight first (renamed to a temporary
 * name), then is deleted: a kill in the middle of a delete must not leave a half-deleted
 * folder under a checkpoint's name.
 */
function prune(dir: string, keep: number): void {
  for (const old of listCheckpoints(dir).slice(keep)) discard(old);
}

function discard(path: string): void {
  const hidden = join(dirname(path), `${TMP}old-${basename(path)}-${process.pid}`);
  renameSync(path, hidden);
  rmSync(hidden, { recursive: true, force: true });
}

/** Temporary folders of writers that are gone (killed mid-write): never a checkpoint, only clutter. */
function removeAbandoned(dir: string): void {
  for (const n of readdirSync(dir)) {
    if (!n.startsWith(TMP)) continue;
    const pid = Number(/-(\d+)$/.exec(n)?.[1]);
    if (pid === process.pid || !alive(pid)) rmSync(join(dir, n), { recursive: true, force: true });
  }
}

function alive(pid: number): boolean {
  if (!(pid > 0)) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Reads and verifies one checkpoint folder; throws an Error saying what is wrong with it. */
export function readCheckpoint(path: string): Checkpoint {
  let manifest: Manifest;
  try {
    manifest = JSON.parse(readFileSync(join(path, MANIFEST), 'utf8')) as Manifest;
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new Error(e.code === 'ENOENT' ? `no ${MANIFEST}` : `${MANIFEST} cannot be read (${e.code ?? e.message.split('\n')[0]})`);
  }
  if (manifest.format !== 'commloop-checkpoint' || manifest.version !== 1) throw new Error(`${MANIFEST} is not a commloop checkpoint of format version 1`);
  const data = new Map<string, Buffer>();
  for (const [name, want] of Object.entries(manifest.files ?? {})) {
    let buf: Buffer;
    try {
      buf = readFileSync(join(path, name));
    } catch {
      throw new Error(`${name} is missing`);
    }
    if (buf.length !== want.bytes) throw new Error(`${name} has ${buf.length} bytes where the manifest says ${want.bytes}`);
    if (sha256(buf) !== want.sha256) throw new Error(`${name} does not match its sha256 in the manifest`);
    data.set(name, buf);
  }
  const form = formOf(manifest.identity);
  let array1: Message;
  if (form) {
    const values: FieldValues = {};
    for (const f of form.block.fields) {
      const file = manifest.array1?.fields?.[f.name];
      const npy = file === undefined ? undefined : data.get(file);
      if (!npy) throw new Error(`${MANIFEST} lists no array1 file for field "${f.name}"`);
      values[f.name] = fieldFromNpy(npy, file!, f.dtype, f.count * form.ranks);
    }
    array1 = wordsOf(values, form.block, form.ranks);
    if (array1.length !== manifest.array1.length) throw new Error(`array1's fields pack into ${array1.length} words where the manifest says ${manifest.array1.length}`);
  } else {
    const a1 = manifest.array1?.file === undefined ? undefined : data.get(manifest.array1.file);
    if (!a1) throw new Error(`${MANIFEST} lists no array1 file`);
    array1 = messageFromBytes(a1, manifest.array1.file!, manifest.array1.length);
  }
  const states: RunStates = manifest.identity.stages.map(() => null);
  for (const st of manifest.states) {
    const buf = data.get(st.file);
    if (!buf) throw new Error(`${MANIFEST} lists state ${st.file} without its checksum`);
    const ranks = (states[st.stage] ??= Array.from({ length: manifest.identity.stages[st.stage].ranks }, () => ({ format: STATE_NONE, bytes: new Uint8Array(0) }) as RankState));
    ranks[st.rank] = { format: st.format === 'npy' ? STATE_NPY : STATE_BYTES, bytes: new Uint8Array(buf) };
  }
  return { iterations: manifest.iterations, array1, states, identity: manifest.identity, taken: manifest.taken };
}

/**
 * The newest checkpoint in `dir` that verifies, and a note for each newer one that did not
 * (it is named, then passed over for the one before it).
 */
export function newestCheckpoint(dir: string): { path?: string; checkpoint?: Checkpoint; notes: string[] } {
  const notes: string[] = [];
  for (const path of listCheckpoints(dir)) {
    try {
      return { path, checkpoint: readCheckpoint(path), notes };
    } catch (err) {
      notes.push(`checkpoint ${path} is damaged (${(err as Error).message}): using the one before it`);
    }
  }
  return { notes };
}

/** Array1's form in a checkpoint's identity: a ring of fields keeps one .npy per field. */
function formOf(id: Identity): Array1Form | undefined {
  if (!id.fields) return undefined;
  const S = id.stages.length;
  return { block: blockOf(id.fields[S - 1]), ranks: id.stages[S - 1].ranks };
}

/** One field of a checkpoint's Array1, checked: `count` values of `dtype`. */
function fieldFromNpy(bytes: Buffer, file: string, dtype: Dtype, count: number): FieldArray {
  const { descr, data } = parseNpy(bytes, file);
  if (descr !== DTYPES[dtype].npy || data.length !== count * DTYPES[dtype].bytes) throw new Error(`${file} is not ${count} ${dtype} values`);
  const a = new (fieldCtor(dtype))(count * lanesOf(dtype));
  new Uint8Array(a.buffer).set(data);
  return a;
}
