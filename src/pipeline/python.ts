/**
 * Before a run: which interpreter runs a `kind: "python"` stage, and whether its module
 * imports and defines the function. python/commloop_stage.py --check does the Python
 * half (NumPy, mpi4py without starting MPI, the module), so a stage that cannot run
 * stops with exit 2 before any rank starts, not as a dead rank mid-spawn.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, realpathSync, statSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { pythonSdkStagePath, pythonStagePath } from '../assets.js';
import { UsageError } from '../errors.js';

export const INSTALL_HINT = 'apt-get install -y python3-mpi4py python3-numpy, or pip install mpi4py numpy';

export interface PythonCheck {
  stage: string;
  /** Absolute path of the module. */
  module: string;
  function: string;
  /** The interpreter the pipeline names (resolved to a path), or undefined for the default. */
  python?: string;
  /** Where the stage runs and what it adds to the environment: the check imports the module the same way. */
  cwd: string;
  env?: Record<string, string>;
  /** The runner script: python/commloop_stage.py (mpi4py, default) or python/commloop_stage_c.py (the C SDK). */
  runner?: string;
  /** The run's MPI, for the C SDK runner's library. */
  mpi?: 'openmpi' | 'mpich';
}

type Verdict = { ok: true } | { ok: false; interpreter: boolean; line: string };

const verdicts = new Map<string, Verdict | 'no-exec'>();
/** Interpreters (with a stage's env, which may set PYTHONPATH) that cannot run any stage: checked once per run. */
const unfit = new Map<string, Verdict | 'no-exec'>();

/** Runs `PY commloop_stage.py --check MODULE FUNCTION`; 'no-exec' when PY does not run at all. */
function runCheck(python: string, c: PythonCheck): Verdict | 'no-exec' {
  const key = JSON.stringify([python, c.runner, c.module, c.function, c.cwd, c.env]);
  const interpreterKey = JSON.stringify([python, c.runner, c.env]);
  const known = verdicts.get(key) ?? unfit.get(interpreterKey);
  if (known) return known;
  let verdict: Verdict | 'no-exec';
  try {
    execFileSync(python, [c.runner ?? pythonStagePath, '--check', c.module, c.function], {
      cwd: c.cwd,
      // The SDK runner loads the library of the run's MPI (COMMLOOP_MPI), as its ranks will.
      env: { ...process.env, ...c.env, ...(c.mpi ? { COMMLOOP_MPI: c.mpi } : {}) },
      stdio: ['ignore', 'pipe', 'pipe'],
      encoding: 'utf8',
      timeout: 60_000,
    });
    verdict = { ok: true };
  } catch (err) {
    const e = err as { code?: string; status?: number; stdout?: string; stderr?: string };
    const out = (e.stdout ?? '').trim().split('\n').pop() ?? '';
    if (e.code === 'ENOENT' || e.code === 'EACCES') verdict = 'no-exec';
    else if (e.status === 3) verdict = { ok: false, interpreter: true, line: out };
    else if (e.status === 4 || e.status === 5) verdict = { ok: false, interpreter: false, line: out };
    else {
      // Not a Python 3 that can run the stage script at all (Python 2, a crash): its last words.
      const last = (e.stderr ?? '').trim().split('\n').pop() || `exit status ${e.status}`;
      verdict = { ok: false, interpreter: true, line: `fails: ${last}` };
    }
  }
  verdicts.set(key, verdict);
  if (verdict === 'no-exec' || (!verdict.ok && verdict.interpreter)) unfit.set(interpreterKey, verdict);
  return verdict;
}

/** What is wrong with an interpreter, from the check's line: "missing mpi4py numpy", "mpi LIBRARY" or "fails: ...". */
function interpreterProblem(line: string): string {
  if (line.startsWith('missing ')) return `cannot import ${line.slice(8).split(' ').join(', ')}`;
  if (line.startsWith('mpi ')) return `has an mpi4py built for ${line.slice(4)}, not for Open MPI (the hub's MPI)`;
  return line;
}

function moduleProblem(c: PythonCheck, line: string): UsageError {
  if (line === 'function') return new UsageError(`stage "${c.stage}": "module" ${c.module} has no function "${c.function}"`);
  return new UsageError(`stage "${c.stage}": "module" ${c.module} fails to import: ${line.replace(/^import /, '')}`);
}

/** The default interpreters, in order: python3 on PATH, then /usr/bin/python3 (each once). */
function candidates(): string[] {
  const onPath = (process.env.PATH ?? '')
    .split(delimiter)
    .filter(Boolean)
    .map((d) => join(d, 'python3'))
    .find((p) => existsSync(p) && statSync(p).isFile());
  const list = [onPath, '/usr/bin/python3'].filter((p): p is string => !!p && existsSync(p));
  const real = (p: string) => {
    try {
      return realpathSync(p);
    } catch {
      return p;
    }
  };
  return list.filter((p, i) => list.findIndex((q) => real(q) === real(p)) === i);
}

/** Checks the stage can run; returns the interpreter to start it with. Throws UsageError (exit 2) otherwise. */
export function checkPythonStage(c: PythonCheck): string {
  if (c.python) {
    const v = runCheck(c.python, c);
    if (v === 'no-exec') throw new UsageError(`stage "${c.stage}": "python" interpreter cannot be run: ${c.python}`);
    if (v.ok) return c.python;
    if (!v.interpreter) throw moduleProblem(c, v.line);
    const fix = v.line.startsWith('missing ') ? `run ${c.python} -m pip install mpi4py numpy` : 'use another interpreter';
    throw new UsageError(`stage "${c.stage}": "python" ${c.python} ${interpreterProblem(v.line)}: ${fix}, or leave "python" out for the default`);
  }
  const tried: string[] = [];
  for (const py of candidates()) {
    const v = runCheck(py, c);
    if (v === 'no-exec') continue;
    if (v.ok) return py;
    if (!v.interpreter) throw moduleProblem(c, v.line);
    tried.push(`${py} ${interpreterProblem(v.line)}`);
  }
  throw new UsageError(
    `stage "${c.stage}": no Python with mpi4py and NumPy (${tried.length ? tried.join('; ') : 'no python3 on PATH nor /usr/bin/python3'}); install them: ${INSTALL_HINT}`,
  );
}
