/**
 * What every section of the benchmark measures with: the log, the servers to stop at the end,
 * CPU accounting, waiting for a quiet machine, the record of every run, sigil's own counts.
 */
import { randomFillSync } from 'node:crypto';
import { open, rm } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { request } from 'undici';
import type { Agent } from 'undici';
import { pushBlobFile } from '../test/helpers/push.js';
import type { RegistryHandle } from '../test/helpers/registry.js';
import { cpuSecondsOf, machineBusySeconds, mainThreadCpuSecondsOf } from './procs.js';
import type { Proc } from './procs.js';

// The machine may be shared (other builds, tests): each measurement first waits for it to be quiet
const QUIET_PROBE_MS = 500;
const QUIET_BUSY_FRACTION = 0.15; // of all cores, over one probe
export const QUIET_WAIT_BUDGET_MS = 60_000; // in all, so that the run stays under ~7 minutes
const WRITE_CHUNK_BYTES = 8 * 1024 * 1024; // random bytes written to the temp file per write
export const MIB = 1024 * 1024;

export const log = (msg: string): void => void process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);

// --- cleanup, on success, failure and signals ------------------------------------------------

const cleanups: Array<() => Promise<void>> = [];
/** Every server started; their stderr is shown when the run fails. */
export const servers: Proc[] = [];
let cleaning: Promise<void> | undefined;

/** Runs every registered cleanup once, the last registered first. */
export function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    for (const fn of cleanups.reverse()) {
      try {
        await fn();
      } catch (err) {
        log(`cleanup: ${String(err)}`);
      }
    }
  })();
  return cleaning;
}

export function onCleanup(fn: () => Promise<void>): void {
  cleanups.push(fn);
}

/** A started server: stopped at the end, its stderr shown if the run fails. */
export const defer = (proc: Proc): void => {
  servers.push(proc);
  cleanups.push(() => proc.stop());
};

// --- CPU accounting and a quiet machine ------------------------------------------------------

export interface CpuUse {
  client: number;
  registry: number;
  /** The proxy's process; several proxies (replicas): their sum. */
  proxy: number;
  /** The proxy's main thread (its event loop) alone; several: their sum. */
  proxyMain: number;
  /** Each proxy process's own CPU seconds, in the order given. */
  each: number[];
  /** CPU used meanwhile by processes that are not part of the benchmark. */
  others: number;
}

/** Starts counting CPU seconds of the benchmark's processes (the proxy: one, several or none) and of the whole machine. */
export function cpuMeter(registryPid: number, proxyPid: number | readonly number[] | undefined): { stop(): CpuUse } {
  const pids = proxyPid === undefined ? [] : typeof proxyPid === 'number' ? [proxyPid] : proxyPid;
  const c0 = process.cpuUsage();
  const r0 = cpuSecondsOf(registryPid);
  const p0 = pids.map(cpuSecondsOf);
  const t0 = pids.map(mainThreadCpuSecondsOf);
  const m0 = machineBusySeconds();
  return {
    stop(): CpuUse {
      const c = process.cpuUsage(c0);
      const client = (c.user + c.system) / 1e6;
      const registry = cpuSecondsOf(registryPid) - r0;
      const each = pids.map((p, i) => cpuSecondsOf(p) - p0[i]);
      const proxy = each.reduce((a, s) => a + s, 0);
      const proxyMain = pids.reduce((a, p, i) => a + mainThreadCpuSecondsOf(p) - t0[i], 0);
      const others = Math.max(0, machineBusySeconds() - m0 - client - registry - proxy);
      return { client, registry, proxy, proxyMain, each, others };
    },
  };
}

export function cpuText(cpu: CpuUse, proxyName: string | undefined): string {
  const proxy = proxyName === undefined ? '' : `, ${proxyName} ${cpu.proxy.toFixed(2)} (main thread ${cpu.proxyMain.toFixed(2)})`;
  return `client ${cpu.client.toFixed(2)}, registry ${cpu.registry.toFixed(2)}${proxy}, other processes ${cpu.others.toFixed(2)}`;
}

/** Waits, within the whole run's budget, until the machine is nearly idle. */
export async function waitQuiet(budget: { ms: number }): Promise<void> {
  const cores = availableParallelism();
  while (budget.ms > 0) {
    const b0 = machineBusySeconds();
    await sleep(QUIET_PROBE_MS);
    const busy = (machineBusySeconds() - b0) / (QUIET_PROBE_MS / 1000) / cores;
    if (busy < QUIET_BUSY_FRACTION) return;
    budget.ms -= QUIET_PROBE_MS;
    if (budget.ms <= 0) log('the machine stays busy with other work: measuring anyway (see "other processes" in the runs)');
  }
}

// --- the record of a run ---------------------------------------------------------------------

/** What a section measures with and where it records its runs. */
export interface Ctx {
  /** The origin registry. */
  registry: RegistryHandle;
  agent: Agent;
  /** Every run, as a line of the page's "every run". */
  runs: string[];
  quiet: { ms: number };
  measured: { othersCpuS: number; seconds: number };
}

export function record(c: Ctx, line: string, cpu: CpuUse, seconds: number): void {
  c.runs.push(line);
  c.measured.othersCpuS += cpu.others;
  c.measured.seconds += seconds;
  log(line);
}

export async function metricsText(base: string, agent: Agent): Promise<string> {
  const res = await request(`${base}/metrics`, { dispatcher: agent });
  return res.body.text();
}

/** sigil's own count of requests it sent upstream (its /metrics). */
export async function sigilUpstreamRequests(base: string, agent: Agent): Promise<number> {
  let sum = 0;
  for (const m of (await metricsText(base, agent)).matchAll(/^sigil_upstream_requests_total\{[^}]*\} (\S+)$/gm)) sum += Number(m[1]);
  return sum;
}

/** A sigil with a content store serves `blobUrl` from it: a HEAD answered 200 without a request upstream. */
export async function servedFromStore(agent: Agent, sigilBase: string, blobUrl: string): Promise<boolean> {
  const before = await sigilUpstreamRequests(sigilBase, agent);
  const res = await request(blobUrl, { method: 'HEAD', dispatcher: agent });
  await res.body.dump();
  return res.statusCode === 200 && (await sigilUpstreamRequests(sigilBase, agent)) === before;
}

/** Asks `done` every `pollMs` until it says yes; fails after `timeoutMs` naming `what`. */
export async function pollUntil(done: () => Promise<boolean>, pollMs: number, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await done())) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await sleep(pollMs);
  }
}

// --- setup -----------------------------------------------------------------------------------

async function writeRandomFile(path: string, size: number): Promise<void> {
  const fh = await open(path, 'w');
  try {
    const buf = Buffer.allocUnsafe(WRITE_CHUNK_BYTES);
    for (let done = 0; done < size; ) {
      const n = Math.min(WRITE_CHUNK_BYTES, size - done);
      randomFillSync(buf, 0, n);
      await fh.write(buf, 0, n);
      done += n;
    }
  } finally {
    await fh.close();
  }
}

export interface Blob {
  size: number;
  digest: string;
}

/** Writes a random file, pushes it as a blob of `repo`, deletes the file (the registry has its copy). */
export async function pushRandomBlob(registry: RegistryHandle, dir: string, repo: string, size: number): Promise<Blob> {
  const path = join(dir, `blob-${size}.bin`);
  try {
    log(`writing ${size / MIB} MiB of random bytes and pushing them to ${repo}`);
    await writeRandomFile(path, size);
    return { size, digest: await pushBlobFile({ url: registry.url }, repo, path) };
  } finally {
    await rm(path, { force: true });
  }
}
