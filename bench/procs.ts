/** Child processes of the benchmark (sigil, the pipe proxy) and their memory and CPU, read from /proc. */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { exited, waitExit } from '../test/helpers/process.js';

const SETPRIV_BIN = '/usr/bin/setpriv'; // --pdeathsig: children die with the benchmark, even on SIGKILL
const STOP_GRACE_MS = 10_000; // SIGTERM, then SIGKILL; long enough for --cpu-prof to write its profile
const STDERR_TAIL_BYTES = 8 * 1024; // kept for error messages

export interface Proc {
  readonly name: string;
  readonly pid: number;
  readonly child: ChildProcess;
  /** The last bytes the process wrote to stderr. */
  stderrTail(): string;
  stop(): Promise<void>;
}

/**
 * Spawns a long-running server. `setpriv`, `taskset` and the `sh` wrappers (bin/sigil,
 * scripts/node) all exec, so the pid is the pid of the node (or Go) process itself.
 */
export function spawnServer(
  name: string,
  argv: string[],
  opts: { env: Record<string, string>; cwd?: string; stdoutFile?: string; cpus?: string },
): Proc {
  const pinned = opts.cpus !== undefined ? ['taskset', '-c', opts.cpus, ...argv] : argv;
  const full = existsSync(SETPRIV_BIN) ? [SETPRIV_BIN, '--pdeathsig', 'KILL', ...pinned] : pinned;
  const out = opts.stdoutFile !== undefined ? openSync(opts.stdoutFile, 'a') : 'ignore';
  const child = spawn(full[0], full.slice(1), { env: opts.env, cwd: opts.cwd, stdio: ['ignore', out, 'pipe'] });
  if (typeof out === 'number') closeSync(out);
  let tail = '';
  child.stderr?.on('data', (d: Buffer) => {
    tail = (tail + d.toString('utf8')).slice(-STDERR_TAIL_BYTES);
  });
  child.on('error', (err) => {
    tail += `\nspawn failed: ${err.message}`;
  });
  const onExit = (): void => {
    if (!exited(child)) child.kill('SIGKILL');
  };
  process.on('exit', onExit);
  let stopping: Promise<void> | undefined;
  return {
    name,
    pid: child.pid ?? -1,
    child,
    stderrTail: () => tail,
    stop(): Promise<void> {
      stopping ??= (async () => {
        if (!exited(child)) {
          child.kill('SIGTERM');
          if (!(await waitExit(child, STOP_GRACE_MS))) {
            child.kill('SIGKILL');
            await waitExit(child, STOP_GRACE_MS);
          }
        }
        process.off('exit', onExit);
      })();
      return stopping;
    },
  };
}

export interface Memory {
  /** Resident set size now, bytes. */
  rss: number;
  /** Peak resident set size (VmHWM), bytes. */
  hwm: number;
}

/** VmRSS and VmHWM of a live process, from /proc/<pid>/status (values are in kB). */
export function memoryOf(pid: number): Memory {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (key: string): number => {
    const m = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status);
    if (!m) throw new Error(`no ${key} in /proc/${pid}/status`);
    return Number(m[1]) * 1024;
  };
  return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
}

/** Samples a process's VmRSS every `intervalMs` until stopped; returns the samples. */
export function sampleRss(pid: number, intervalMs: number): { stop(): number[] } {
  const samples: number[] = [];
  const take = (): void => {
    try {
      samples.push(memoryOf(pid).rss);
    } catch {
      // the process is gone: the caller notices through its request failing
    }
  };
  take();
  const timer = setInterval(take, intervalMs);
  return {
    stop(): number[] {
      clearInterval(timer);
      take();
      return samples;
    },
  };
}

const CLOCK_TICKS_PER_S = 100; // USER_HZ: /proc/<pid>/stat counts CPU time in these on Linux

/** CPU seconds (user + system) a live process has used so far, from /proc/<pid>/stat. */
export function cpuSecondsOf(pid: number): number {
  return cpuSecondsIn(`/proc/${pid}/stat`);
}

/** CPU seconds of a process's main thread alone (for node: the event loop), from /proc/<pid>/task/<pid>/stat. */
export function mainThreadCpuSecondsOf(pid: number): number {
  return cpuSecondsIn(`/proc/${pid}/task/${pid}/stat`);
}

function cpuSecondsIn(path: string): number {
  const stat = readFileSync(path, 'utf8');
  // the command name (field 2) may hold spaces: fields are counted after its closing parenthesis
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const utime = Number(fields[11]); // field 14
  const stime = Number(fields[12]); // field 15
  return (utime + stime) / CLOCK_TICKS_PER_S;
}

/** Busy CPU seconds of the whole machine so far (all cores), from the first line of /proc/stat. */
export function machineBusySeconds(): number {
  const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0];
  const [, ...ticks] = line.trim().split(/\s+/).map(Number);
  const [user, nice, system, , , irq, softirq, steal] = ticks;
  return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS_PER_S;
}

/**
 * Resets a process's VmHWM to its current RSS (Linux ≥ 4.0: "5" into /proc/<pid>/clear_refs),
 * so that the next peak is the peak of what follows. False where the kernel refuses it.
 */
export function resetPeakRss(pid: number): boolean {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false;
  }
}

/** CPU seconds of a live process's threads so far, summed by thread name (/proc/<pid>/task/<tid>/comm). */
export function threadCpuSecondsOf(pid: number): Map<string, number> {
  const out = new Map<string, number>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const name = readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim();
      out.set(name, (out.get(name) ?? 0) + cpuSecondsIn(`/proc/${pid}/task/${tid}/stat`));
    } catch {
      // the thread ended meanwhile
    }
  }
  return out;
}
