/**
 * A run inside a Slurm allocation (salloc, sbatch): which nodes it was given, from the
 * environment Slurm sets. A run of one node is as local as a run on a workstation; a run of
 * several spreads every stage's ranks over them (docs/CLUSTERS.md), and its ranks on other
 * nodes are named by the node's name.
 */
import { spawnSync } from 'node:child_process';
import { hostname } from 'node:os';

export interface SlurmAllocation {
  jobId: string;
  /** The allocation's nodes, in Slurm's order. */
  nodes: string[];
}

export function slurmAllocation(env: NodeJS.ProcessEnv = process.env): SlurmAllocation | undefined {
  const jobId = env.SLURM_JOB_ID;
  const list = env.SLURM_JOB_NODELIST ?? env.SLURM_NODELIST;
  if (!jobId || !list) return undefined;
  return { jobId, nodes: expandHostlist(list) ?? scontrolHostnames(list) ?? [list] };
}

/**
 * This host's name among the allocation's nodes (slurmd's, SLURMD_NODENAME, in a job script;
 * the host name elsewhere), or undefined where this host is not one of them (salloc's shell
 * on a login node).
 */
export function thisNode(alloc: SlurmAllocation | undefined, env: NodeJS.ProcessEnv = process.env): string | undefined {
  return [env.SLURMD_NODENAME, hostname()].find((n) => n !== undefined && alloc?.nodes.includes(n));
}

/**
 * Slurm's hostlist syntax, the common forms: `n1,n2`, `n[1-3,7]`, `node[01-12]`,
 * `rack[1-2]-gpu`; undefined for anything else (two bracket groups in a name), which
 * scontrol expands instead.
 */
export function expandHostlist(list: string): string[] | undefined {
  const out: string[] = [];
  // Commas inside brackets belong to the range, not to the list.
  for (const item of list.match(/[^,[]+(\[[^\]]*\][^,[]*)?/g) ?? []) {
    const m = /^([^[\]]*)\[([^\]]+)\]([^[\]]*)$/.exec(item);
    if (!m) {
      if (/[[\]]/.test(item)) return undefined;
      out.push(item);
      continue;
    }
    const [, pre, ranges, post] = m;
    for (const r of ranges.split(',')) {
      const [a, b = a] = r.split('-');
      if (!/^\d+$/.test(a) || !/^\d+$/.test(b) || Number(b) < Number(a)) return undefined;
      for (let i = Number(a); i <= Number(b); i++) out.push(`${pre}${String(i).padStart(a.length, '0')}${post}`);
    }
  }
  return out.length ? out : undefined;
}

function scontrolHostnames(list: string): string[] | undefined {
  const r = spawnSync('scontrol', ['show', 'hostnames', list], { encoding: 'utf8', timeout: 10_000 });
  const names = r.status === 0 ? r.stdout.split('\n').filter(Boolean) : [];
  return names.length ? names : undefined;
}
