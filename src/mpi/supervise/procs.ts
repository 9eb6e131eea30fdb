/**
 * The processes of a run, from /proc: a supervisor records every process below its hub
 * (with its start time, so a reused pid is never mistaken for one of ours) and, when the
 * run is over, ends whichever of them are still there. Nothing else is ever signalled.
 */
import { readFileSync, readdirSync } from 'node:fs';

export interface Proc {
  pid: number;
  /** Field 22 of /proc/PID/stat: start time in clock ticks since boot. */
  start: string;
}

function stat(pid: number): { ppid: number; start: string } | undefined {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const rest = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return { ppid: Number(rest[1]), start: rest[19] };
  } catch {
    return undefined;
  }
}

/** One live process as a Proc (its start time too), or undefined once it is gone. */
export function procOf(pid: number): Proc | undefined {
  const st = stat(pid);
  return st && { pid, start: st.start };
}

/** Every live process below `root`, root excluded. */
export function descendants(root: number): Proc[] {
  const children = new Map<number, Proc[]>();
  for (const name of readdirSync('/proc')) {
    if (!/^[0-9]+$/.test(name)) continue;
    const st = stat(Number(name));
    if (!st) continue;
    if (!children.has(st.ppid)) children.set(st.ppid, []);
    children.get(st.ppid)!.push({ pid: Number(name), start: st.start });
  }
  const out: Proc[] = [];
  const walk = (p: number) => {
    for (const c of children.get(p) ?? []) {
      out.push(c);
      walk(c.pid);
    }
  };
  walk(root);
  return out;
}

/** A live process's arguments ([] when it is gone). */
export function cmdline(pid: number): string[] {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
  } catch {
    return [];
  }
}

/** The pids of `pid`'s children, from every thread's children list ([] once it is gone). */
export function children(pid: number): number[] {
  try {
    const out: number[] = [];
    for (const task of readdirSync(`/proc/${pid}/task`)) {
      const text = readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8').trim();
      if (text) out.push(...text.split(' ').map(Number));
    }
    return out;
  } catch {
    return [];
  }
}

/** A process that is there and not a zombie. */
export function alive(pid: number): boolean {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return s[s.lastIndexOf(')') + 2] !== 'Z';
  } catch {
    return false;
  }
}

/** The same process as recorded (not a new one that took its pid). */
export function stillThere(p: Proc): boolean {
  return stat(p.pid)?.start === p.start;
}

/** SIGKILLs every recorded process that is still the same process. */
export function killRecorded(procs: Iterable<Proc>): void {
  for (const p of procs) {
    if (!stillThere(p)) continue;
    try {
      process.kill(p.pid, 'SIGKILL');
    } catch {
      // gone between the check and the kill
    }
  }
}
