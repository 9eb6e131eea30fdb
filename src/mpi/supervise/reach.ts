/**
 * Which host of a run across hosts could not be reached, from what the launcher shows: ssh's
 * own words (Open MPI's rsh launcher passes them on), or the daemon launches still running
 * when the start-up failed or its deadline passed.
 */
import type { Failure } from '../../errors.js';
import { cmdline, type Proc } from './procs.js';

/**
 * A host of the run that could not be reached, as a Failure: one ssh named (it could not
 * resolve or connect to it; Open MPI's rsh launcher passes ssh's words on), or else one
 * whose launch was still running when the start-up failed or its deadline passed (a
 * host that drops packets: ssh would wait minutes for it).
 */
export function unreachable(lines: readonly string[], launching: readonly string[], waitedMs: number): Failure | undefined {
  for (const line of lines) {
    const m = /^ssh: (?:Could not resolve hostname (\S+?): (.*)|connect to host (\S+) port \d+: (.*))$/.exec(line.trim());
    if (!m) continue;
    const host = m[1] ?? m[3];
    return { reason: 'start', host, detail: `host ${host} cannot be reached: ${(m[2] ?? m[4]).trim()} (ssh)` };
  }
  const host = launching[0];
  return host ? { reason: 'start', host, detail: `host ${host} cannot be reached: ssh to it did not connect within ${waitedMs} ms` } : undefined;
}

/**
 * The hosts that Open MPI's launcher is still starting a daemon on: processes of the run
 * whose arguments hold one of the hosts and then the daemon's command line
 * (`ssh -x HOST "PATH=... ; orted ..."`, or an agent's equivalent).
 */
export function pendingLaunches(procs: Proc[], hosts: string[]): string[] {
  const out = new Set<string>();
  for (const p of procs) {
    const argv = cmdline(p.pid);
    const at = argv.findIndex((a) => /(^|[\s/;])orted(\s|$)/.test(a));
    if (at < 1) continue;
    const host = argv.slice(0, at).reverse().find((a) => hosts.includes(a));
    if (host) out.add(host);
  }
  return [...out];
}
