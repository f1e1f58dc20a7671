/**
 * sigil's benchmark: the same figures direct (client → registry), through a bare node:http
 * pipe proxy, and through sigil (a real `bin/sigil serve` process), in one run; prints a
 * Markdown table and writes it to bench/results/latest.md. Not a test: it checks only that
 * every answer was right (status, bytes), so that the figures mean something.
 *
 *   npm run bench [-- --sigil-log LEVEL] [--mode warn|off] [--cpu-prof DIR] [--only blob|manifest] [--sigil BIN]
 *
 * --sigil-log: sigil's logLevel (default info, what sigil ships with);
 * --mode: the mode of sigil's one policy matching everything (default warn, as shipped);
 * --cpu-prof DIR: a V8 CPU profile of the sigil process, written into DIR when it exits
 *   (summarize it with `scripts/node dist/bench/cpuprofile-top.js DIR/*.cpuprofile`);
 * --only: one half of the run; --sigil BIN: another build's bin/sigil, to compare builds.
 */
import { execFileSync } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { mkdir, open, rm, writeFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { Agent, request } from 'undici';
import { PROJECT_DIR, SIGIL_BIN } from '../test/helpers/cli.js';
import { tempDir } from '../test/helpers/net.js';
import { ALL_MANIFEST_TYPES, MEDIA, pushBlobFile, pushIndex } from '../test/helpers/push.js';
import type { PushedIndex } from '../test/helpers/push.js';
import { REGISTRY_BIN, startRegistry } from '../test/helpers/registry.js';
import type { RegistryHandle } from '../test/helpers/registry.js';
import { fetchBlob, load } from './measure.js';
import type { BlobRun } from './measure.js';
import { cpuSecondsOf, machineBusySeconds, memoryOf, sampleRss } from './procs.js';
import type { Proc } from './procs.js';
import { renderPage } from './report.js';
import type { Figures, LoadScenario, PerTarget, Target } from './report.js';
import { startPipeProxy, startSigil } from './servers.js';

const BIG_BLOB_BYTES = 1024 * 1024 * 1024; // the issue's figure: a 1 GiB layer
const SMALL_BLOB_BYTES = 64 * 1024 * 1024; // for the memory comparison: RSS must not grow with blob size
const BLOB_REPS = 5; // GETs per target and blob (~2 s each for 1 GiB); medians are reported, single runs vary ±30 %
const WRITE_CHUNK_BYTES = 8 * 1024 * 1024; // random bytes written to the temp file per write
const LOAD_CONNECTIONS = 16; // enough to keep 2 cores busy, few enough not to measure queueing only
const LOAD_DURATION_S = 10;
const SERIAL_DURATION_S = 5; // c=1 runs: latency of one request, no coalescing; steadier, so shorter
const WARMUP_DURATION_S = 1; // JIT and connection pools warm before each measured run
const RSS_SAMPLE_MS = 10; // a 64 MiB stream lasts ~100-300 ms: sample often enough to see it
// The machine may be shared (other builds, tests): each measurement first waits for it to be quiet
const QUIET_PROBE_MS = 500;
const QUIET_BUSY_FRACTION = 0.15; // of all cores, over one probe
const QUIET_WAIT_BUDGET_MS = 60_000; // in all, so that the run stays under ~5 minutes
const PLATFORMS = [
  { os: 'linux', architecture: 'amd64' },
  { os: 'linux', architecture: 'arm64', variant: 'v8' },
  { os: 'linux', architecture: 'arm', variant: 'v7' },
  { os: 'linux', architecture: 's390x' },
];
const REPO_BLOB = 'bench/blobs';
const REPO_INDEX = 'bench/multi';
const TAG = 'latest';
const UPSTREAM_NAME = 'registry.bench';
const TARGETS: readonly Target[] = ['direct', 'pipe', 'sigil'];
const PROXIES = ['pipe', 'sigil'] as const;
const MIB = 1024 * 1024;

const args = parseArgs({
  options: {
    'sigil-log': { type: 'string', default: 'info' },
    mode: { type: 'string', default: 'warn' },
    'cpu-prof': { type: 'string' },
    only: { type: 'string' },
    sigil: { type: 'string', default: SIGIL_BIN },
  },
}).values;
if (args.only !== undefined && args.only !== 'blob' && args.only !== 'manifest') throw new Error('--only takes blob or manifest');
if (args.mode !== 'warn' && args.mode !== 'off') throw new Error('--mode takes warn or off');
const policyMode: 'warn' | 'off' = args.mode;
const doBlobs = args.only !== 'manifest';
const doManifests = args.only !== 'blob';

const log = (msg: string): void => void process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);

// --- cleanup, on success, failure and signals ------------------------------------------------

const cleanups: Array<() => Promise<void>> = [];
const servers: Proc[] = []; // their stderr is shown when the run fails
let cleaning: Promise<void> | undefined;
function cleanup(): Promise<void> {
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
const defer = (proc: Proc): void => {
  servers.push(proc);
  cleanups.push(() => proc.stop());
};
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    log(`${sig}: cleaning up`);
    void cleanup().then(() => process.exit(130));
  });
}

// --- CPU accounting and a quiet machine ------------------------------------------------------

interface CpuUse {
  client: number;
  registry: number;
  proxy: number;
  /** CPU used meanwhile by processes that are not part of the benchmark. */
  others: number;
}

/** Starts counting CPU seconds of the benchmark's processes and of the whole machine. */
function cpuMeter(registryPid: number, proxyPid: number | undefined): { stop(): CpuUse } {
  const c0 = process.cpuUsage();
  const r0 = cpuSecondsOf(registryPid);
  const p0 = proxyPid !== undefined ? cpuSecondsOf(proxyPid) : 0;
  const m0 = machineBusySeconds();
  return {
    stop(): CpuUse {
      const c = process.cpuUsage(c0);
      const client = (c.user + c.system) / 1e6;
      const registry = cpuSecondsOf(registryPid) - r0;
      const proxy = proxyPid !== undefined ? cpuSecondsOf(proxyPid) - p0 : 0;
      const others = Math.max(0, machineBusySeconds() - m0 - client - registry - proxy);
      return { client, registry, proxy, others };
    },
  };
}

function cpuText(cpu: CpuUse, t: Target): string {
  const proxy = t === 'direct' ? '' : `, ${t} ${cpu.proxy.toFixed(2)}`;
  return `client ${cpu.client.toFixed(2)}, registry ${cpu.registry.toFixed(2)}${proxy}, other processes ${cpu.others.toFixed(2)}`;
}

/** Waits, within the whole run's budget, until the machine is nearly idle. */
async function waitQuiet(budget: { ms: number }): Promise<void> {
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

/** Writes a random file, pushes it as a blob, deletes the file (the registry has its copy). */
async function pushRandomBlob(registry: RegistryHandle, dir: string, size: number): Promise<{ size: number; digest: string }> {
  const path = join(dir, `blob-${size}.bin`);
  try {
    log(`writing ${size / MIB} MiB of random bytes and pushing them`);
    await writeRandomFile(path, size);
    return { size, digest: await pushBlobFile({ url: registry.url }, REPO_BLOB, path) };
  } finally {
    await rm(path, { force: true });
  }
}

// --- the run ---------------------------------------------------------------------------------

interface Bench {
  registry: RegistryHandle;
  base: Record<Target, string>;
  procs: PerTarget<Proc>;
  agent: Agent;
  f: Figures;
  runs: string[];
  quiet: { ms: number };
  measured: { othersCpuS: number; seconds: number };
  /** Manifest requests sigil sent upstream during the measured manifest runs, and answers it gave. */
  sigilUpstream: { sent: number; answered: number };
}

function record(b: Bench, line: string, cpu: CpuUse, seconds: number): void {
  b.runs.push(line);
  b.measured.othersCpuS += cpu.others;
  b.measured.seconds += seconds;
  log(line);
}

/** Whole-blob GETs, targets interleaved so that drift (page cache, neighbours) favours none. */
async function blobPhase(b: Bench, blob: { size: number; digest: string }, into: { mbps: PerTarget<number[]>; rss: PerTarget<number> }, big: boolean): Promise<void> {
  for (let rep = 0; rep < BLOB_REPS; rep++) {
    await waitQuiet(b.quiet);
    for (const t of TARGETS) {
      const pid = b.procs[t]?.pid;
      const sampler = pid !== undefined ? sampleRss(pid, RSS_SAMPLE_MS) : undefined;
      const meter = cpuMeter(b.registry.pid, pid);
      let run: BlobRun;
      let maxRss = 0;
      try {
        run = await fetchBlob(`${b.base[t]}/v2/${REPO_BLOB}/blobs/${blob.digest}`, blob.size, b.agent);
      } finally {
        maxRss = Math.max(0, ...(sampler?.stop() ?? []));
      }
      const cpu = meter.stop();
      (into.mbps[t] ??= []).push(run.mbps);
      if (pid !== undefined) into.rss[t] = Math.max(into.rss[t] ?? 0, maxRss);
      if (big) {
        if (pid !== undefined) (b.f.bigCpuProxy[t] ??= []).push(cpu.proxy);
        (b.f.bigCpuAll[t] ??= []).push(cpu.client + cpu.registry + cpu.proxy);
      }
      const rss = pid !== undefined ? `; ${t} RSS max ${(maxRss / MIB).toFixed(0)} MiB` : '';
      record(b, `${blob.size / MIB} MiB #${rep + 1} ${t}: ${run.mbps.toFixed(0)} MB/s (${run.seconds.toFixed(2)} s); CPU s: ${cpuText(cpu, t)}${rss}`, cpu, run.seconds);
    }
  }
}

/** sigil's own count of requests it sent upstream (its /metrics), or undefined when it has none. */
async function sigilUpstreamRequests(b: Bench): Promise<number | undefined> {
  const res = await request(`${b.base.sigil}/metrics`, { dispatcher: b.agent });
  const text = await res.body.text();
  let sum: number | undefined;
  for (const m of text.matchAll(/^sigil_upstream_requests_total\{[^}]*\} (\S+)$/gm)) sum = (sum ?? 0) + Number(m[1]);
  return sum;
}

/** autocannon on one manifest URL per target. */
async function loadPhase(b: Bench, s: LoadScenario, ref: string, durationS: number): Promise<void> {
  const headers = { accept: ALL_MANIFEST_TYPES };
  for (const t of TARGETS) {
    const url = `${b.base[t]}/v2/${REPO_INDEX}/manifests/${ref}`;
    await load(url, headers, s.connections, WARMUP_DURATION_S);
    await waitQuiet(b.quiet);
    const upstream0 = t === 'sigil' ? await sigilUpstreamRequests(b) : undefined;
    const meter = cpuMeter(b.registry.pid, b.procs[t]?.pid);
    const r = await load(url, headers, s.connections, durationS);
    const cpu = meter.stop();
    s.results[t] = r;
    let upstream = '';
    if (upstream0 !== undefined) {
      const sent = ((await sigilUpstreamRequests(b)) ?? upstream0) - upstream0;
      b.sigilUpstream.sent += sent;
      b.sigilUpstream.answered += r.requests;
      upstream = `; sigil sent ${sent} requests upstream`;
    }
    record(b, `${s.label} c=${s.connections} ${t}: ${r.rps.toFixed(0)} req/s, p50 ${r.p50.toFixed(2)} ms, p99 ${r.p99.toFixed(2)} ms (${r.requests} requests); CPU s: ${cpuText(cpu, t)}${upstream}`, cpu, durationS);
  }
}

/**
 * Every target answers the index by tag with its exact bytes before anything is measured.
 * Returns sigil's Sigil-Verification header.
 */
async function checkTargets(b: Bench, index: PushedIndex): Promise<string> {
  let verification = '';
  for (const t of TARGETS) {
    const res = await request(`${b.base[t]}/v2/${REPO_INDEX}/manifests/${TAG}`, { headers: { accept: MEDIA.OCI_INDEX }, dispatcher: b.agent });
    const body = Buffer.from(await res.body.arrayBuffer());
    if (res.statusCode !== 200 || res.headers['docker-content-digest'] !== index.digest || !body.equals(index.manifest)) {
      throw new Error(`${t}: ${REPO_INDEX}:${TAG} answered ${res.statusCode}, digest ${String(res.headers['docker-content-digest'])}: ${body.toString().slice(0, 300)}`);
    }
    if (t === 'sigil') verification = String(res.headers['sigil-verification']);
  }
  return verification;
}

async function main(): Promise<void> {
  const started = Date.now();
  const dir = await tempDir('sigil-bench');
  cleanups.push(() => rm(dir, { recursive: true, force: true }));

  log('starting the registry');
  const registry = await startRegistry();
  cleanups.push(() => registry.stop());
  const small = doBlobs ? await pushRandomBlob(registry, dir, SMALL_BLOB_BYTES) : undefined;
  const big = doBlobs ? await pushRandomBlob(registry, dir, BIG_BLOB_BYTES) : undefined;
  log(`pushing a ${PLATFORMS.length}-platform index`);
  const index = await pushIndex({ url: registry.url }, REPO_INDEX, TAG, PLATFORMS);

  log('starting the pipe proxy and sigil');
  const pipe = await startPipeProxy(registry.url, defer);
  const sigil = await startSigil(
    { bin: args.sigil, dir, upstream: registry.url, upstreamName: UPSTREAM_NAME, logLevel: args['sigil-log'], mode: policyMode, cpuProfDir: args['cpu-prof'] },
    defer,
  );
  const agent = new Agent();
  cleanups.push(() => agent.close());
  const b: Bench = {
    registry,
    base: { direct: registry.url, pipe: pipe.url, sigil: sigil.url },
    procs: { pipe: pipe.proc, sigil: sigil.proc },
    agent,
    f: { bigMbps: {}, smallMbps: {}, bigCpuProxy: {}, bigCpuAll: {}, rssIdle: {}, rssSmall: {}, rssBig: {}, hwmAfterBlobs: {}, hwmEnd: {}, load: [] },
    runs: [],
    quiet: { ms: QUIET_WAIT_BUDGET_MS },
    measured: { othersCpuS: 0, seconds: 0 },
    sigilUpstream: { sent: 0, answered: 0 },
  };
  const verification = await checkTargets(b, index);
  for (const t of PROXIES) b.f.rssIdle[t] = memoryOf(b.procs[t]?.pid ?? -1).rss;

  if (small !== undefined && big !== undefined) {
    // 64 MiB first: the RSS it shows is not left over from a 1 GiB stream
    await blobPhase(b, small, { mbps: b.f.smallMbps, rss: b.f.rssSmall }, false);
    await blobPhase(b, big, { mbps: b.f.bigMbps, rss: b.f.rssBig }, true);
    for (const t of PROXIES) b.f.hwmAfterBlobs[t] = memoryOf(b.procs[t]?.pid ?? -1).hwm;
  }
  if (doManifests) {
    for (const [label, ref] of [['index by tag', TAG], ['index by digest', index.digest]] as const) {
      for (const [connections, durationS] of [[LOAD_CONNECTIONS, LOAD_DURATION_S], [1, SERIAL_DURATION_S]] as const) {
        const s: LoadScenario = { label, connections, results: {} };
        b.f.load.push(s);
        await loadPhase(b, s, ref, durationS);
      }
    }
  }
  for (const t of PROXIES) b.f.hwmEnd[t] = memoryOf(b.procs[t]?.pid ?? -1).hwm;

  let registryVersion = REGISTRY_BIN;
  try {
    registryVersion = execFileSync(REGISTRY_BIN, ['--version'], { encoding: 'utf8' }).trim().replace(/^\S+\s+/, '');
  } catch {
    // only informative
  }
  const page = renderPage(b.f, {
    sigil: args.sigil === SIGIL_BIN ? 'bin/sigil' : args.sigil,
    logLevel: args['sigil-log'],
    mode: policyMode,
    verification,
    cpuProfiled: args['cpu-prof'] !== undefined,
    registryVersion,
    blobReps: BLOB_REPS,
    blobBytes: BIG_BLOB_BYTES,
    loadDurationS: LOAD_DURATION_S,
    serialDurationS: SERIAL_DURATION_S,
    warmupS: WARMUP_DURATION_S,
    platforms: PLATFORMS.length,
    seconds: Math.round((Date.now() - started) / 1000),
    othersCpuS: b.measured.othersCpuS,
    sigilUpstream: b.sigilUpstream,
    measuredS: b.measured.seconds,
  }, b.runs);
  process.stdout.write(page);
  const out = join(PROJECT_DIR, 'bench/results/latest.md');
  await mkdir(join(PROJECT_DIR, 'bench/results'), { recursive: true });
  await writeFile(out, page);
  log(`written to ${out}`);
}

try {
  await main();
} catch (err) {
  log(`failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  for (const p of servers) {
    const exit = p.child.exitCode ?? p.child.signalCode;
    if (exit !== null || p.stderrTail() !== '') log(`${p.name} (exit: ${exit ?? 'running'}) stderr:\n${p.stderrTail()}`);
  }
  process.exitCode = 1;
} finally {
  await cleanup();
}
process.exit(process.exitCode ?? 0);
