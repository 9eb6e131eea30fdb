/**
 * One MPI run, supervised from the caller's process: the hub runs in a child process
 * (spawn mode: `node dist/hub.js`; MPMD: rank 0 of an mpirun), so Open MPI's one-init-per-
 * process limit, its aborts and its exit codes never reach the caller, and any number
 * of runs can follow one another. This side only supervises: it enforces deadlines,
 * ends exactly the run's own processes, turns what happened into one RunError, keeps
 * Open MPI's banners in a log, and forwards onIteration.
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { distDir } from '../assets.js';
import { RunError, type Failure } from '../errors.js';
import type { RingPlan } from '../pipeline/model.js';
import type { RingOutcome } from '../run.js';
import type { CBackend } from '../stage/kernel.js';
import { setMpiEnvironment } from './addon.js';
import { HUB_FDS_ENV, MARK, STAGE_FAIL, decodeArray, stepTimesFromWire, toWire, type FromHub, type ToHub } from './channel.js';
import type { TimingSpec } from '../trace/log.js';
import type { Readable, Writable } from 'node:stream';
import { firstFailure } from './blame.js';
import { chooseWire, type WireRequest } from './wire.js';
import { jobFamily, removeSegments, writeFailureLog } from './leftovers.js';
import { mpmdCommand } from './mpmd.js';
import { failureFromOpenMpi, openMpiLines } from './openmpi-text.js';
import { cmdline, descendants, killRecorded, procOf, type Proc } from './procs.js';
import { STEP_TIMEOUT_ENV, hostHash, hostLabel } from './protocol.js';
import { DEATH_GRACE_MS, STARTUP_LOOK_MS, StartupWatch } from './startup-watch.js';
import { STOP_GRACE_MS } from '../transport.js';

export interface SuperviseOptions {
  iterations: number;
  cBackend: CBackend;
  launch: 'spawn' | 'mpmd';
  wire: WireRequest;
  spawnInfo: Record<string, string>;
  timeoutMs: number;
  verbose: boolean;
  timing?: TimingSpec;
}

export interface SuperviseHooks {
  signal?: AbortSignal;
  onIteration?: (iteration: number, array: Float64Array) => boolean | void;
  onOutput?: (iteration: number, array: Float64Array) => void;
  onProgress?: (iterations: number) => void;
}

/** After a failure or the result, how long the hub and its job get to be gone. */
const EXIT_GRACE_MS = 10_000;
/** Beyond the hub's own per-call deadline: node and mpirun starting, a slow host. */
const START_SLACK_MS = 2_000;
/**
 * With other hosts, after the hub's failure: how long Open MPI gets to take the job down
 * before the supervisor does. Its abort waits on every daemon, and one behind a partition
 * never answers; the daemons that outlive mpirun end when they lose it.
 */
const REMOTE_FAIL_GRACE_MS = 1_000;
/**
 * The hub's watchdog pulses every 500 ms; with none for this long past the timeout (at least
 * 1 s), the hub or its host is lost: a partition, with the hub on the far side.
 */
const PULSE_SLACK_MS = 1_500;

export function superviseMpiRun(plan: RingPlan, opts: SuperviseOptions, hooks: SuperviseHooks): Promise<RingOutcome> {
  const env: NodeJS.ProcessEnv = { ...process.env };
  const remote = Boolean(opts.spawnInfo.host || opts.spawnInfo.hostfile);
  setMpiEnvironment(!remote, env);
  const wire = chooseWire({ launch: opts.launch, local: !remote, request: opts.wire, env });
  for (const [k, v] of Object.entries(wire.env)) env[k] ??= v; // what the user set stays
  const hub = join(distDir, 'hub.js');
  const mpirun = existsSync('/usr/bin/mpirun.openmpi') ? '/usr/bin/mpirun.openmpi' : 'mpirun';
  const [cmd, args] =
    opts.launch === 'mpmd' ? [mpirun, mpmdCommand(plan, opts.cBackend, opts.spawnInfo)] : [process.execPath, [hub]];
  // Its own process group: a terminal's Ctrl-C reaches the caller, who asks for a clean stop.
  const spawnMode = opts.launch === 'spawn';
  if (spawnMode) env[HUB_FDS_ENV] = '3,4';
  env[STEP_TIMEOUT_ENV] = String(opts.timeoutMs);
  const child = spawn(cmd, args, { stdio: spawnMode ? ['ignore', 'pipe', 'pipe', 'pipe', 'pipe'] : ['pipe', 'pipe', 'pipe'], detached: true, env });
  const toHub = (spawnMode ? child.stdio[3] : child.stdin) as Writable;
  const fromHub = (spawnMode ? child.stdio[4] : child.stdout) as Readable;
  const launchHosts = listedHosts(opts.spawnInfo);
  const hostNames = knownHosts(launchHosts);

  return new Promise<RingOutcome>((resolve, reject) => {
    const t0 = Date.now();
    let lastWord = t0;
    let lastPulse = 0;
    /** Until Ready: the hosts whose launch (ssh HOST orted ...) was still running at the last look. */
    let launching: string[] = [];
    let hubHost = '';
    let readyAt = 0;
    let endedAt = 0;
    let outcome: RingOutcome | undefined;
    let hubFailure: Failure | undefined;
    let callerError: unknown;
    const stageFailures: Failure[] = [];
    const noise: string[] = [];
    const ranks = new Map<string, { host: number; pid: number }>();
    const recorded = new Map<number, Proc>();
    const tell = (m: ToHub) => {
      if (toHub.writable) toHub.write(JSON.stringify(m) + '\n');
    };
    /** The run's Open MPI job families, for its shared-memory files (leftovers.ts). */
    const families = new Set<number>();
    const keep = (p: Proc) => {
      if (!recorded.has(p.pid)) {
        const family = jobFamily(p.pid);
        if (family !== undefined) families.add(family);
      }
      recorded.set(p.pid, p);
    };
    const record = () => {
      if (child.pid) for (const p of descendants(child.pid)) keep(p);
    };
    const hostOf = (stage?: string, rank?: number) => {
      const s = plan.stages.findIndex((st) => st.name === stage);
      const r = ranks.get(`${s}/${rank}`);
      return r ? hostLabel(r.host, hostNames) : undefined;
    };

    toHub.on('error', () => {}); // the hub may be gone; its exit says why
    const { wire: _request, ...hubOpts } = opts;
    tell({ t: 'run', plan: toWire(plan), opts: { ...hubOpts, merged: wire.merged, lockstep: Boolean(hooks.onIteration) } });

    // Spawn mode: whatever reaches the hub's stdout is a stage's (they should use stderr).
    if (spawnMode) createInterface({ input: child.stdout!, crlfDelay: Infinity }).on('line', (line) => process.stderr.write(line + '\n'));
    createInterface({ input: fromHub, crlfDelay: Infinity }).on('line', (line) => {
      if (!line.startsWith(MARK)) {
        process.stderr.write(line + '\n'); // not ours: a stage wrote to the hub's stdout
        return;
      }
      const m = JSON.parse(line.slice(MARK.length)) as FromHub;
      if (m.t === 'pulse') {
        lastPulse = Date.now();
        hubHost = m.host;
        return;
      }
      lastWord = Date.now();
      if (m.t === 'ready') {
        readyAt = lastWord;
        for (const [s, r, pid, host] of m.ranks) ranks.set(`${s}/${r}`, { pid, host });
        record();
      } else if (m.t === 'beat') {
        hooks.onProgress?.(m.i + 1);
      } else if (m.t === 'it') {
        let go = false;
        try {
          go = hooks.onIteration!(m.i, decodeArray(m.a)) !== false;
        } catch (err) {
          callerError ??= err;
        }
        hooks.onProgress?.(m.i + 1);
        tell({ t: go ? 'go' : 'halt' });
      } else if (m.t === 'out') {
        hooks.onOutput?.(m.i, decodeArray(m.a));
      } else if (m.t === 'done') {
        endedAt = lastWord;
        outcome = {
          startS: m.startS,
          totalS: m.totalS,
          times: m.times,
          final: decodeArray(m.final),
          steps: m.steps && stepTimesFromWire(m.steps),
          hostName: (hash) => hostLabel(hash, hostNames),
          wire: wire.name,
        };
      } else if (m.t === 'fail') {
        endedAt ||= lastWord;
        record();
        hubFailure ??= { stage: m.stage, rank: m.rank, host: m.host, reason: m.reason, detail: m.detail };
      }
    });

    const isOpenMpi = openMpiLines();
    createInterface({ input: child.stderr!, crlfDelay: Infinity }).on('line', (line) => {
      const mark = STAGE_FAIL.exec(line);
      if (mark) {
        const st = plan.stages[Number(mark[1])];
        if (st) stageFailures.push({ stage: st.name, rank: Number(mark[2]), reason: 'user-code', detail: mark[3] });
        return;
      }
      if (isOpenMpi(line)) {
        noise.push(line);
        if (opts.verbose) process.stderr.write(line + '\n');
      } else process.stderr.write(line + '\n');
    });

    let abortedAt = 0;
    const onAbort = () => {
      abortedAt = Date.now();
      tell({ t: 'stop' });
    };
    hooks.signal?.addEventListener('abort', onAbort);
    if (hooks.signal?.aborted) onAbort();

    // A local job: its ranks are mpirun's (or the hub's orted's) children here, watched until Ready.
    const startup = launchHosts.length ? undefined : new StartupWatch(plan, opts.launch);
    const startupLooks =
      startup &&
      setInterval(() => {
        if (readyAt || endedAt) clearInterval(startupLooks);
        else if (child.pid) {
          startup.look(child.pid, Date.now());
          // Recorded as they appear: mpirun killed before Ready leaves them orphans, which the
          // end of the run must still find (and their shared-memory files with them).
          for (const pid of startup.pids) {
            if (recorded.has(pid)) continue;
            const p = procOf(pid);
            if (p && jobFamily(pid) !== undefined) keep(p);
          }
        }
      }, STARTUP_LOOK_MS);

    const S = plan.stages.length;
    const watch = setInterval(() => {
      const now = Date.now();
      // Looked at now, before a deadline ends them: the hub's own ends the daemon and its ssh.
      if (!readyAt && !endedAt && launchHosts.length && child.pid) launching = pendingLaunches(descendants(child.pid), launchHosts);
      let late: Failure | undefined;
      if (endedAt) {
        // The result (or the failure) is in: a job slow to go is ended, not reported.
        const grace = remote && hubFailure ? REMOTE_FAIL_GRACE_MS : EXIT_GRACE_MS;
        if (now - endedAt > grace) kill();
        return;
      } else if (abortedAt && now - abortedAt > STOP_GRACE_MS + EXIT_GRACE_MS) {
        // Asked to stop, and the hub neither finished the step nor shut down: a stage hangs.
        late = { reason: 'timeout', detail: `stopped by signal; the run did not stop within ${STOP_GRACE_MS + EXIT_GRACE_MS} ms` };
      } else if (lastPulse && now - lastPulse > Math.max(opts.timeoutMs, 1_000) + PULSE_SLACK_MS) {
        late = {
          reason: 'timeout',
          host: hubHost,
          detail: `the hub on ${hubHost} fell silent for ${now - lastPulse} ms: the host or the network to it is down`,
        };
      } else if (!readyAt) {
        if (startup?.first && now - startup.first.at > DEATH_GRACE_MS) {
          // A rank died and mpirun has not ended the job: the hub would wait for it until its deadline.
          late = startup.failure();
        } else if (now - t0 > opts.timeoutMs + START_SLACK_MS) {
          late = unreachable(noise, launching, opts.timeoutMs);
          if (!late) {
            const where = launchHosts.length ? ` on ${launchHosts.join(', ')} (is every host reachable, by ssh too?)` : '';
            late = { reason: 'start', detail: `the stages did not start within ${opts.timeoutMs} ms${where}` };
          }
        }
      } else if (now - lastWord > (S + 1) * opts.timeoutMs + START_SLACK_MS) {
        late = { reason: 'timeout', detail: `the hub stopped answering for ${now - lastWord} ms` };
      }
      if (late) {
        hubFailure ??= late;
        endedAt ||= now;
        record();
        kill();
      }
    }, 100);

    let killedHere = false;
    const kill = () => {
      killedHere = true;
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        // the group is gone already
      }
      killRecorded(recorded.values());
    };

    child.on('error', (err) => {
      hubFailure ??= { reason: 'start', detail: `cannot start ${cmd}: ${err.message}${cmd === mpirun ? ' (apt-get install -y openmpi-bin)' : ''}` };
    });

    child.on('close', (code, signal) => {
      clearInterval(watch);
      clearInterval(startupLooks);
      hooks.signal?.removeEventListener('abort', onAbort);
      // Whatever of the run is still there (an orted that outlived its hub) goes now, and
      // with it the shared-memory files that a daemon killed with SIGKILL could not remove.
      killRecorded(recorded.values());
      removeSegments(families);
      if (callerError !== undefined) return reject(callerError);
      if (outcome && !hubFailure) return resolve(outcome);
      // A host that ssh could not reach is the cause of whatever failed at start-up.
      const lostHost = readyAt ? undefined : unreachable(noise, launching, opts.timeoutMs);
      // mpirun or the hub process killed by a signal nobody here sent: that is the cause (a rank's
      // death makes mpirun exit with a code, not die by a signal).
      const launcher: Failure = {
        reason: signal ? 'killed' : 'exited',
        detail: `${cmd === mpirun ? 'mpirun' : 'the MPI hub'} ${signal ? `was killed by ${signal}` : `exited with code ${code}`} before the run ended`,
      };
      const failure = firstFailure({
        stages: stageFailures,
        lostHost,
        launcher: signal && !killedHere ? launcher : undefined,
        hub: hubFailure,
        openMpi: failureFromOpenMpi(noise, plan, opts.launch),
        startup: startup?.failure(code),
      }) ?? launcher;
      failure.host ??= hostOf(failure.stage, failure.rank);
      const err = new RunError(failure);
      if (noise.length) err.log = writeFailureLog(noise, t0, child.pid);
      reject(err);
    });
  });
}

/** The hosts of --host and the hostfile, by name, in order. */
function listedHosts(info: Record<string, string>): string[] {
  const names: string[] = [];
  if (info.host) names.push(...info.host.split(',').map((h) => h.split(':')[0]));
  if (info.hostfile) {
    try {
      for (const line of readFileSync(info.hostfile, 'utf8').split('\n')) {
        const name = line.replace(/#.*/, '').trim().split(/\s+/)[0];
        if (name) names.push(name);
      }
    } catch {
      // the hub reports an unreadable hostfile itself
    }
  }
  return [...new Set(names)];
}

/**
 * A host of the run that could not be reached, as a Failure: one ssh named (it could not
 * resolve or connect to it; Open MPI's rsh launcher passes ssh's words on), or else one
 * whose launch was still running when the start-up failed or its deadline passed (a
 * host that drops packets: ssh would wait minutes for it).
 */
export function unreachable(lines: string[], launching: string[], waitedMs: number): Failure | undefined {
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
function pendingLaunches(procs: Proc[], hosts: string[]): string[] {
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

/** Host-name hashes we can name: this host, and the run's hosts (listedHosts). */
function knownHosts(listed: string[]): Map<number, string> {
  return new Map([hostname(), 'localhost', ...listed].map((n) => [hostHash(n), n]));
}
