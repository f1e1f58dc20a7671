/**
 * sigil's benchmark: the same figures direct (client → registry), through a bare node:http
 * pipe proxy, and through sigil (real `bin/sigil serve` processes), in one run; prints a
 * Markdown table and writes it to bench/results/latest.md. Not a test: it checks only that
 * every answer was right (status, bytes, verification), so that the figures mean something.
 *
 *   npm run bench [-- --sigil-log LEVEL] [--mode warn|off] [--cpu-prof DIR] [--only SECTIONS] [--sigil BIN] [--node-options=OPTS]
 *
 * --sigil-log: sigil's logLevel (default info, what sigil ships with);
 * --mode: the mode of sigil's catch-all policy (default warn, as shipped);
 * --cpu-prof DIR: V8 CPU profiles of the sigil processes, written into DIR when they exit
 *   (summarize one with `scripts/node dist/bench/cpuprofile-top.js DIR/*.cpuprofile`);
 * --only: some of the sections, comma-separated: blob, manifest, verify, herd;
 * --sigil BIN: another build's bin/sigil, to compare builds;
 * --node-options=OPTS: NODE_OPTIONS of the sigil processes (V8 flags to try; with "=", as they start with a dash).
 * Only a whole, unprofiled run replaces bench/results/latest.md; every run prints its table.
 *
 * Two sigil processes: "sigil" (no content store; upstreams registry.bench with the default
 * blob hashing, nohash.bench with `verifyBlobDigests: false`, off.bench under a `mode: off`
 * policy, all the same registry) and "sigil-store" (a content store in a temp dir; the herd
 * reaches the registry through a counting pass-through).
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
import { startForwarder } from '../test/helpers/forwarder.js';
import type { Forwarder } from '../test/helpers/forwarder.js';
import { tempDir } from '../test/helpers/temp.js';
import { createPrivateSigstore } from '../test/helpers/private-sigstore.js';
import type { PrivateSigstore } from '../test/helpers/private-sigstore.js';
import { pushLegacySignature } from '../test/helpers/publish.js';
import { ALL_MANIFEST_TYPES, pushBlobFile, pushImage, pushIndex } from '../test/helpers/push.js';
import type { ImageOptions, PushedImage } from '../test/helpers/push.js';
import { REGISTRY_BIN, startRegistry } from '../test/helpers/registry.js';
import type { RegistryHandle } from '../test/helpers/registry.js';
import { generateKey, legacyLayer } from '../test/helpers/signer.js';
import type { LegacySignatureLayer, TestKey } from '../test/helpers/signer.js';
import { fetchBlob, getTimed, load, median, mergeLoads, pullImage } from './measure.js';
import type { BlobRun, LoadResult } from './measure.js';
import { cpuSecondsOf, machineBusySeconds, mainThreadCpuSecondsOf, memoryOf, sampleRss } from './procs.js';
import type { Proc } from './procs.js';
import { renderPage } from './report.js';
import type { BlobFigures, ColdVerification, Figures, Herd, LoadScenario, Target, Variant } from './report.js';
import { startPipeProxy, startSigil } from './servers.js';

const BIG_BLOB_BYTES = 1024 * 1024 * 1024; // the issue's figure: a 1 GiB layer
const SMALL_BLOB_BYTES = 64 * 1024 * 1024; // for the memory comparison: RSS must not grow with blob size
const BLOB_REPS = 5; // GETs per target of the 1 GiB blob (~2 s each); medians are reported, single runs vary ±30 %
const SMALL_BLOB_REPS = 15; // a 64 MiB GET lasts 0.05-0.2 s and varies ±50 %: more of them, still ~15 s in all
const WRITE_CHUNK_BYTES = 8 * 1024 * 1024; // random bytes written to the temp file per write
const LOAD_CONNECTIONS = 16; // enough to keep 2 cores busy, few enough not to measure queueing only
const LOAD_DURATION_S = 10;
const SERIAL_DURATION_S = 5; // c=1 runs: latency of one request, no coalescing; steadier, so shorter
const WARMUP_DURATION_S = 1; // JIT and connection pools warm before each measured run
const RSS_SAMPLE_MS = 10; // a 64 MiB stream lasts ~100-300 ms: sample often enough to see it
// The machine may be shared (other builds, tests): each measurement first waits for it to be quiet
const QUIET_PROBE_MS = 500;
const QUIET_BUSY_FRACTION = 0.15; // of all cores, over one probe
const QUIET_WAIT_BUDGET_MS = 60_000; // in all, so that the run stays under ~7 minutes
const STORE_MAX_BYTES = 4 * 1024 ** 3; // both blobs, the herd and the manifests, with room to spare: nothing evicted
// The store commits (fsync, rename, catalog) after the first GET's last byte: poll until it serves the blob
const STORE_COMMIT_POLL_MS = 200;
const STORE_COMMIT_TIMEOUT_MS = 20_000;
const COLD_IMAGES = 5; // distinct digests per signature kind: each verification is cold
const WARM_GETS = 3; // after each cold GET: its median is the warm figure subtracted
const HERD_CLIENTS = 32; // the issue's herd
const HERD_LAYERS = 10; // manifest + config + 10 layers = 12 objects
const HERD_LAYER_BYTES = 1024 * 1024; // random, so gzip keeps them ~1 MiB: 10 MiB per client, 320 MiB in all
const ENFORCE_VS_OFF = 0.9; // the issue's bar: warm verified answers at ≥ 0.9× the req/s of the `off` path
const PLATFORMS = [
  { os: 'linux', architecture: 'amd64' },
  { os: 'linux', architecture: 'arm64', variant: 'v8' },
  { os: 'linux', architecture: 'arm', variant: 'v7' },
  { os: 'linux', architecture: 's390x' },
];
const REPO_BLOB = 'bench/blobs';
const REPO_INDEX = 'bench/multi';
const REPO_SIGNED = 'bench/signed';
const REPO_KEY_COLD = 'bench/key-cold';
const REPO_KEYLESS_COLD = 'bench/keyless-cold';
const REPO_HERD = 'bench/herd';
const TAG = 'latest';
const UPSTREAM_NAME = 'registry.bench';
const NOHASH_UPSTREAM = 'nohash.bench';
const OFF_UPSTREAM = 'off.bench';
const HERD_UPSTREAM = 'herd.bench';
const ISSUER = 'https://issuer.bench.test';
const SUBJECT = 'https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main';
const TARGETS: readonly Target[] = ['direct', 'pipe', 'sigil'];
const BLOB_VARIANTS: readonly Variant[] = ['direct', 'pipe', 'sigil', 'sigilNoHash', 'sigilStore'];
// off and enforce twice each, ABBA: the goal compares them, and single runs of either vary by ±10 %
const SIGNED_ORDER: readonly Variant[] = ['direct', 'pipe', 'sigilOff', 'sigil', 'sigil', 'sigilOff'];
const MIB = 1024 * 1024;
const SECTIONS = ['blob', 'manifest', 'verify', 'herd'] as const;
type Section = (typeof SECTIONS)[number];

const args = parseArgs({
  options: {
    'sigil-log': { type: 'string', default: 'info' },
    mode: { type: 'string', default: 'warn' },
    'cpu-prof': { type: 'string' },
    only: { type: 'string' },
    sigil: { type: 'string', default: SIGIL_BIN },
    'node-options': { type: 'string' },
  },
}).values;
const only = args.only?.split(',').map((s) => s.trim());
for (const s of only ?? []) if (!(SECTIONS as readonly string[]).includes(s)) throw new Error(`--only takes some of ${SECTIONS.join(', ')}`);
if (args.mode !== 'warn' && args.mode !== 'off') throw new Error('--mode takes warn or off');
const policyMode: 'warn' | 'off' = args.mode;
const doing = (s: Section): boolean => only === undefined || only.includes(s);

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
  /** The proxy's main thread (its event loop) alone. */
  proxyMain: number;
  /** CPU used meanwhile by processes that are not part of the benchmark. */
  others: number;
}

/** Starts counting CPU seconds of the benchmark's processes and of the whole machine. */
function cpuMeter(registryPid: number, proxyPid: number | undefined): { stop(): CpuUse } {
  const c0 = process.cpuUsage();
  const r0 = cpuSecondsOf(registryPid);
  const p0 = proxyPid !== undefined ? cpuSecondsOf(proxyPid) : 0;
  const t0 = proxyPid !== undefined ? mainThreadCpuSecondsOf(proxyPid) : 0;
  const m0 = machineBusySeconds();
  return {
    stop(): CpuUse {
      const c = process.cpuUsage(c0);
      const client = (c.user + c.system) / 1e6;
      const registry = cpuSecondsOf(registryPid) - r0;
      const proxy = proxyPid !== undefined ? cpuSecondsOf(proxyPid) - p0 : 0;
      const proxyMain = proxyPid !== undefined ? mainThreadCpuSecondsOf(proxyPid) - t0 : 0;
      const others = Math.max(0, machineBusySeconds() - m0 - client - registry - proxy);
      return { client, registry, proxy, proxyMain, others };
    },
  };
}

function cpuText(cpu: CpuUse, proxyName: string | undefined): string {
  const proxy = proxyName === undefined ? '' : `, ${proxyName} ${cpu.proxy.toFixed(2)} (main thread ${cpu.proxyMain.toFixed(2)})`;
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

/** A fresh image in `repo` under `tag`, with a cosign `.sig` made by `sign`. */
async function pushSigned(
  registry: RegistryHandle,
  repo: string,
  tag: string,
  sign: (digest: string) => LegacySignatureLayer,
  opts: ImageOptions = {},
): Promise<PushedImage> {
  const target = { url: registry.url };
  const img = await pushImage(target, repo, tag, opts);
  await pushLegacySignature(target, repo, img.digest, [sign(img.digest)]);
  return img;
}

/** The enforce policies of the signed images (YAML list items), tried before the catch-all. */
function signedPolicies(keyPath: string, herdKeyPath: string): string {
  return [
    '  - name: bench-off',
    `    match: ["${OFF_UPSTREAM}/**"]`,
    '    mode: off',
    '  - name: bench-key',
    `    match: ["${UPSTREAM_NAME}/${REPO_SIGNED}", "${UPSTREAM_NAME}/${REPO_KEY_COLD}"]`,
    '    mode: enforce',
    '    authorities:',
    `      - { key: ${keyPath}, tlog: ignore }`,
    '  - name: bench-keyless',
    `    match: ["${UPSTREAM_NAME}/${REPO_KEYLESS_COLD}"]`,
    '    mode: enforce',
    '    authorities:',
    `      - keyless: { issuer: "${ISSUER}", subjectRegExp: '^https://github\\.com/acme/.+$' }`,
    '  - name: bench-herd',
    `    match: ["${HERD_UPSTREAM}/**"]`,
    '    mode: enforce',
    '    authorities:',
    `      - { key: ${herdKeyPath}, tlog: ignore }`,
  ].join('\n');
}

/** The source the measured sigil was built from: the commit, and src/ files changed since (others may be editing). */
function sourceOf(): string {
  try {
    const git = (...a: string[]): string => execFileSync('git', a, { cwd: PROJECT_DIR, encoding: 'utf8' });
    const sha = git('rev-parse', '--short', 'HEAD').trim();
    const changed = git('status', '--porcelain', '--', 'src').split('\n').filter((l) => l !== '').map((l) => l.slice(3));
    return changed.length > 0 ? `git ${sha} + uncommitted changes in ${changed.join(', ')}` : `git ${sha}`;
  } catch {
    return 'not a git checkout';
  }
}

// --- the run ---------------------------------------------------------------------------------

interface Endpoint {
  /** Up to and including "/v2/", plus the upstream prefix that routes to the right upstream. */
  v2: string;
  /** The proxy's process (none: direct). */
  proc?: Proc;
  /** The sigil whose /metrics count its upstream requests. */
  metrics?: string;
}

interface Bench {
  registry: RegistryHandle;
  at: Partial<Record<Variant, Endpoint>>;
  agent: Agent;
  f: Figures;
  runs: string[];
  quiet: { ms: number };
  measured: { othersCpuS: number; seconds: number };
  /** Manifest requests sigil sent upstream during the measured manifest runs, and answers it gave. */
  sigilUpstream: { sent: number; answered: number };
}

function endpoint(b: Bench, v: Variant): Endpoint {
  const e = b.at[v];
  if (e === undefined) throw new Error(`no endpoint for ${v}`);
  return e;
}

function record(b: Bench, line: string, cpu: CpuUse, seconds: number): void {
  b.runs.push(line);
  b.measured.othersCpuS += cpu.others;
  b.measured.seconds += seconds;
  log(line);
}

async function metricsText(base: string, agent: Agent): Promise<string> {
  const res = await request(`${base}/metrics`, { dispatcher: agent });
  return res.body.text();
}

/** sigil's own count of requests it sent upstream (its /metrics). */
async function sigilUpstreamRequests(base: string, agent: Agent): Promise<number> {
  let sum = 0;
  for (const m of (await metricsText(base, agent)).matchAll(/^sigil_upstream_requests_total\{[^}]*\} (\S+)$/gm)) sum += Number(m[1]);
  return sum;
}

/** sigil_verification_duration_seconds{outcome="verified"}: sum (s) and count. */
async function verifiedDuration(base: string, agent: Agent): Promise<{ sum: number; count: number }> {
  const text = await metricsText(base, agent);
  const value = (suffix: string): number => {
    const m = new RegExp(`^sigil_verification_duration_seconds_${suffix}\\{outcome="verified"\\} (\\S+)$`, 'm').exec(text);
    return m ? Number(m[1]) : 0;
  };
  return { sum: value('sum'), count: value('count') };
}

/** Whole-blob GETs, variants interleaved so that drift (page cache, neighbours) favours none. */
async function blobPhase(b: Bench, blob: { size: number; digest: string }, into: BlobFigures, big: boolean): Promise<void> {
  const label = `${blob.size / MIB} MiB`;
  for (let rep = 0; rep < (big ? BLOB_REPS : SMALL_BLOB_REPS); rep++) {
    await waitQuiet(b.quiet);
    for (const v of BLOB_VARIANTS) {
      const e = b.at[v];
      if (e === undefined) continue;
      const pid = e.proc?.pid;
      const upstream0 = v === 'sigilStore' && e.metrics !== undefined ? await sigilUpstreamRequests(e.metrics, b.agent) : undefined;
      const sampler = pid !== undefined ? sampleRss(pid, RSS_SAMPLE_MS) : undefined;
      const meter = cpuMeter(b.registry.pid, pid);
      let run: BlobRun;
      let maxRss = 0;
      try {
        run = await fetchBlob(`${e.v2}${REPO_BLOB}/blobs/${blob.digest}`, blob.size, b.agent);
      } finally {
        maxRss = Math.max(0, ...(sampler?.stop() ?? []));
      }
      const cpu = meter.stop();
      if (upstream0 !== undefined && e.metrics !== undefined) {
        const sent = (await sigilUpstreamRequests(e.metrics, b.agent)) - upstream0;
        if (sent !== 0) throw new Error(`${label} from sigil's content store: sigil sent ${sent} requests upstream (not served from disk)`);
      }
      (into.mbps[v] ??= []).push(run.mbps);
      if (pid !== undefined) into.rss[v] = Math.max(into.rss[v] ?? 0, maxRss);
      if (big) {
        if (pid !== undefined) (b.f.bigCpuProxy[v] ??= []).push(cpu.proxy);
        if (pid !== undefined) (b.f.bigCpuProxyMain[v] ??= []).push(cpu.proxyMain);
        (b.f.bigCpuAll[v] ??= []).push(cpu.client + cpu.registry + cpu.proxy);
      }
      const rss = pid !== undefined ? `; ${e.proc?.name} RSS max ${(maxRss / MIB).toFixed(0)} MiB` : '';
      record(b, `${label} #${rep + 1} ${v}: ${run.mbps.toFixed(0)} MB/s (${run.seconds.toFixed(2)} s); CPU s: ${cpuText(cpu, e.proc?.name)}${rss}`, cpu, run.seconds);
    }
  }
}

/**
 * The first GET of a blob through the store sigil (it downloads, hashes, fsyncs and commits
 * it), then waits until the store serves it: a HEAD that sigil answers without the upstream.
 */
async function fillStore(b: Bench, blob: { size: number; digest: string }, into: BlobFigures): Promise<void> {
  const e = endpoint(b, 'sigilStore');
  const metrics = e.metrics ?? '';
  await waitQuiet(b.quiet);
  const meter = cpuMeter(b.registry.pid, e.proc?.pid);
  const run = await fetchBlob(`${e.v2}${REPO_BLOB}/blobs/${blob.digest}`, blob.size, b.agent);
  const cpu = meter.stop();
  into.storeFill = run.mbps;
  record(b, `${blob.size / MIB} MiB first GET through the content store (fills it): ${run.mbps.toFixed(0)} MB/s (${run.seconds.toFixed(2)} s); CPU s: ${cpuText(cpu, e.proc?.name)}`, cpu, run.seconds);
  const deadline = Date.now() + STORE_COMMIT_TIMEOUT_MS;
  for (;;) {
    const before = await sigilUpstreamRequests(metrics, b.agent);
    const res = await request(`${e.v2}${REPO_BLOB}/blobs/${blob.digest}`, { method: 'HEAD', dispatcher: b.agent });
    await res.body.dump();
    if (res.statusCode === 200 && (await sigilUpstreamRequests(metrics, b.agent)) === before) return;
    if (Date.now() > deadline) throw new Error(`the content store did not serve ${blob.digest} within ${STORE_COMMIT_TIMEOUT_MS} ms of its first GET`);
    await sleep(STORE_COMMIT_POLL_MS);
  }
}

/**
 * autocannon on one manifest URL per variant, in `order`; a variant named twice (ABBA, so that
 * drift favours neither of two close variants) is reported as one, over both runs.
 */
async function loadPhase(b: Bench, s: LoadScenario, repo: string, ref: string, order: readonly Variant[], durationS: number): Promise<void> {
  const headers = { accept: ALL_MANIFEST_TYPES };
  const runs: Partial<Record<Variant, LoadResult[]>> = {};
  for (const v of order) {
    const e = endpoint(b, v);
    const url = `${e.v2}${repo}/manifests/${ref}`;
    await load(url, headers, s.connections, WARMUP_DURATION_S);
    await waitQuiet(b.quiet);
    const upstream0 = e.metrics !== undefined ? await sigilUpstreamRequests(e.metrics, b.agent) : undefined;
    const meter = cpuMeter(b.registry.pid, e.proc?.pid);
    const r = await load(url, headers, s.connections, durationS);
    const cpu = meter.stop();
    (runs[v] ??= []).push(r);
    let upstream = '';
    if (upstream0 !== undefined && e.metrics !== undefined) {
      const sent = (await sigilUpstreamRequests(e.metrics, b.agent)) - upstream0;
      b.sigilUpstream.sent += sent;
      b.sigilUpstream.answered += r.requests;
      upstream = `; sigil sent ${sent} requests upstream`;
    }
    record(b, `${s.label} c=${s.connections} ${v}: ${r.rps.toFixed(0)} req/s, p50 ${r.p50.toFixed(2)} ms, p99 ${r.p99.toFixed(2)} ms (${r.requests} requests); CPU s: ${cpuText(cpu, e.proc?.name)}${upstream}`, cpu, durationS);
  }
  for (const [v, rs] of Object.entries(runs) as Array<[Variant, LoadResult[]]>) {
    // the figures keep what the table needs, not every latency
    s.results[v] = { ...(rs.length === 1 ? rs[0] : mergeLoads(rs)), latencies: [] };
  }
}

/** `variant` answers `repo:ref` with exactly `manifest` (and `verification`, when given). */
async function checkManifest(b: Bench, v: Variant, repo: string, ref: string, want: { digest: string; manifest: Buffer }, verification?: string): Promise<string> {
  const e = endpoint(b, v);
  const r = await getTimed(`${e.v2}${repo}/manifests/${ref}`, { accept: ALL_MANIFEST_TYPES }, b.agent);
  if (r.status !== 200 || r.headers['docker-content-digest'] !== want.digest || !r.body.equals(want.manifest)) {
    throw new Error(`${v}: ${repo}:${ref} answered ${r.status}, digest ${String(r.headers['docker-content-digest'])}: ${r.body.toString().slice(0, 300)}`);
  }
  const got = String(r.headers['sigil-verification']);
  if (verification !== undefined && got !== verification) throw new Error(`${v}: ${repo}:${ref}: Sigil-Verification ${got}, expected ${verification}`);
  return got;
}

/**
 * Cold verification cost: for each image (a digest sigil has never seen), the first GET by
 * digest against the median of the GETs after it, and what sigil's histogram recorded.
 */
async function coldPhase(b: Bench, label: string, repo: string, images: PushedImage[]): Promise<ColdVerification> {
  const e = endpoint(b, 'sigil');
  const metrics = e.metrics ?? '';
  const c: ColdVerification = { label, deltasMs: [], metricMs: [], warmMs: [] };
  for (const [i, img] of images.entries()) {
    await waitQuiet(b.quiet);
    const url = `${e.v2}${repo}/manifests/${img.digest}`;
    const m0 = await verifiedDuration(metrics, b.agent);
    const meter = cpuMeter(b.registry.pid, e.proc?.pid);
    const cold = await getTimed(url, { accept: ALL_MANIFEST_TYPES }, b.agent);
    const cpu = meter.stop();
    if (cold.status !== 200 || cold.headers['sigil-verification'] !== 'verified') {
      throw new Error(`${label}: ${repo}@${img.digest}: ${cold.status}, Sigil-Verification ${String(cold.headers['sigil-verification'])}: ${cold.body.toString().slice(0, 300)}`);
    }
    const m1 = await verifiedDuration(metrics, b.agent);
    if (m1.count - m0.count !== 1) throw new Error(`${label}: ${m1.count - m0.count} verifications recorded for one cold GET`);
    const warm: number[] = [];
    for (let k = 0; k < WARM_GETS; k++) {
      const w = await getTimed(url, { accept: ALL_MANIFEST_TYPES }, b.agent);
      if (w.status !== 200 || w.headers['sigil-verification'] !== 'verified') throw new Error(`${label}: warm GET ${w.status}`);
      warm.push(w.ms);
    }
    const warmMs = median(warm);
    const metricMs = (m1.sum - m0.sum) * 1000;
    c.deltasMs.push(cold.ms - warmMs);
    c.metricMs.push(metricMs);
    c.warmMs.push(warmMs);
    record(
      b,
      `cold verification, ${label}, image ${i + 1}: first GET ${cold.ms.toFixed(1)} ms, warm GET ${warmMs.toFixed(2)} ms (median of ${WARM_GETS}), ` +
        `sigil_verification_duration_seconds ${metricMs.toFixed(1)} ms; CPU s: ${cpuText(cpu, e.proc?.name)}`,
      cpu,
      cold.ms / 1000,
    );
  }
  return c;
}

/** HERD_CLIENTS concurrent pulls of one image through `v`; returns the wall time (s) and requests sent. */
async function herdPull(b: Bench, v: Variant, repo: string, img: PushedImage, verification?: string): Promise<{ wallS: number; sent: number; cpu: CpuUse }> {
  const e = endpoint(b, v);
  await waitQuiet(b.quiet);
  const meter = cpuMeter(b.registry.pid, e.proc?.pid);
  const t0 = performance.now();
  const sent = await Promise.all(Array.from({ length: HERD_CLIENTS }, () => pullImage(e.v2, repo, 'v1', img, ALL_MANIFEST_TYPES, b.agent, verification)));
  const wallS = (performance.now() - t0) / 1000;
  return { wallS, sent: sent.reduce((a, n) => a + n, 0), cpu: meter.stop() };
}

async function herdPhase(b: Bench, fwd: Forwarder, img: PushedImage): Promise<Herd> {
  const objects = 2 + img.layers.length;
  const h: Herd = { clients: HERD_CLIENTS, objects, layers: img.layers.length, layerBytes: HERD_LAYER_BYTES, wallS: {}, upstream: {}, perObjectMax: {}, perObjectMin: {}, tagLookups: 0, signatureLookups: 0 };
  // sigil first, cold: the image is fresh and the store has never seen it
  const seen0 = fwd.requests.length;
  const s = await herdPull(b, 'sigilStore', `${HERD_UPSTREAM}/${REPO_HERD}`, img, 'verified');
  const seen = fwd.requests.slice(seen0).map((r) => `${r.method} ${r.url.split('?')[0]}`);
  const prefix = `/v2/${REPO_HERD}`;
  // per object: the GETs of its bytes; besides them, the tag lookup and signature discovery
  const perObject = [img.digest, img.config.digest, ...img.layers.map((l) => l.digest)].map(
    (d, i) => seen.filter((r) => r === `GET ${prefix}/${i === 0 ? 'manifests' : 'blobs'}/${d}`).length,
  );
  const forObjects = perObject.reduce((a, n) => a + n, 0);
  h.tagLookups = seen.filter((r) => r.endsWith(`${prefix}/manifests/v1`)).length;
  h.wallS.sigil = s.wallS;
  h.upstream.sigil = seen.length;
  h.perObjectMax.sigil = Math.max(...perObject);
  h.perObjectMin.sigil = Math.min(...perObject);
  h.signatureLookups = seen.length - forObjects - h.tagLookups;
  const counts = new Map<string, number>();
  for (const r of seen) counts.set(r, (counts.get(r) ?? 0) + 1);
  record(
    b,
    `herd sigil (content store, cold): ${s.wallS.toFixed(2)} s for ${s.sent} client requests; ${seen.length} requests reached the registry: ` +
      `${[...counts].map(([r, n]) => `${r.replace(/sha256:([0-9a-f]{8})[0-9a-f]+/, 'sha256:$1…').replace(/sha256-([0-9a-f]{8})[0-9a-f]+/, 'sha256-$1…')} ×${n}`).join(', ')}; CPU s: ${cpuText(s.cpu, 'sigil-store')}`,
    s.cpu,
    s.wallS,
  );
  for (const v of ['direct', 'pipe'] as const) {
    const r = await herdPull(b, v, REPO_HERD, img);
    h.wallS[v] = r.wallS;
    h.upstream[v] = r.sent; // every client request reaches the registry
    h.perObjectMax[v] = HERD_CLIENTS;
    h.perObjectMin[v] = HERD_CLIENTS;
    record(b, `herd ${v}: ${r.wallS.toFixed(2)} s for ${r.sent} client requests; CPU s: ${cpuText(r.cpu, v === 'pipe' ? 'pipe' : undefined)}`, r.cpu, r.wallS);
  }
  return h;
}

async function main(): Promise<void> {
  const started = Date.now();
  const source = args.sigil === SIGIL_BIN ? sourceOf() : 'another build';
  const dir = await tempDir('sigil-bench');
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  const doBlobs = doing('blob');
  const doManifests = doing('manifest');
  const doVerify = doing('verify');
  const doHerd = doing('herd');
  const needStore = doBlobs || doHerd;

  log('starting the registry');
  const registry = await startRegistry();
  cleanups.push(() => registry.stop());
  const target = { url: registry.url };
  const small = doBlobs ? await pushRandomBlob(registry, dir, SMALL_BLOB_BYTES) : undefined;
  const big = doBlobs ? await pushRandomBlob(registry, dir, BIG_BLOB_BYTES) : undefined;
  log(`pushing a ${PLATFORMS.length}-platform index and the signed images`);
  const index = await pushIndex(target, REPO_INDEX, TAG, PLATFORMS);
  const key = generateKey('p256');
  const herdKey = generateKey('p256');
  const keyPath = join(dir, 'bench-p256.pub');
  const herdKeyPath = join(dir, 'herd-p256.pub');
  await writeFile(keyPath, key.publicPem);
  await writeFile(herdKeyPath, herdKey.publicPem);
  const sigstore: PrivateSigstore = await createPrivateSigstore(join(dir, 'sigstore'));
  const byKey = (k: TestKey) => (digest: string) => legacyLayer(k, digest);
  const signed = await pushSigned(registry, REPO_SIGNED, TAG, byKey(key));
  const keyCold: PushedImage[] = [];
  const keylessCold: PushedImage[] = [];
  if (doVerify) {
    for (let i = 0; i < COLD_IMAGES; i++) {
      keyCold.push(await pushSigned(registry, REPO_KEY_COLD, `v${i}`, byKey(key)));
      // a fresh certificate each, as each CI run gets one
      const id = sigstore.issueIdentity(SUBJECT, ISSUER);
      keylessCold.push(await pushSigned(registry, REPO_KEYLESS_COLD, `v${i}`, (digest) => legacyLayer(id, digest, { rekor: sigstore })));
    }
  }
  const herdImage = doHerd ? await pushSigned(registry, REPO_HERD, 'v1', byKey(herdKey), { layers: HERD_LAYERS, layerSize: HERD_LAYER_BYTES }) : undefined;

  log('starting the pipe proxy and sigil');
  const pipe = await startPipeProxy(registry.url, defer);
  const policies = signedPolicies(keyPath, herdKeyPath);
  const common = { bin: args.sigil, dir, logLevel: args['sigil-log'], mode: policyMode, policies, cpuProfDir: args['cpu-prof'], nodeOptions: args['node-options'] };
  const sigil = await startSigil(
    {
      ...common,
      label: 'sigil',
      upstreams: [
        { name: UPSTREAM_NAME, url: registry.url },
        { name: NOHASH_UPSTREAM, url: registry.url, verifyBlobDigests: false },
        { name: OFF_UPSTREAM, url: registry.url },
      ],
      trustedRoot: ['public-good', sigstore.trustedRootPath],
    },
    defer,
  );
  let fwd: Forwarder | undefined;
  let store: Awaited<ReturnType<typeof startSigil>> | undefined;
  if (needStore) {
    fwd = await startForwarder(registry.url);
    const f = fwd;
    cleanups.push(() => f.stop());
    store = await startSigil(
      {
        ...common,
        label: 'sigil-store',
        upstreams: [{ name: UPSTREAM_NAME, url: registry.url }, { name: HERD_UPSTREAM, url: fwd.url }],
        store: { dir: join(dir, 'store'), maxBytes: STORE_MAX_BYTES },
      },
      defer,
    );
  }
  const agent = new Agent();
  cleanups.push(() => agent.close());
  const b: Bench = {
    registry,
    at: {
      direct: { v2: `${registry.url}/v2/` },
      pipe: { v2: `${pipe.url}/v2/`, proc: pipe.proc },
      sigil: { v2: `${sigil.url}/v2/`, proc: sigil.proc, metrics: sigil.url },
      sigilNoHash: { v2: `${sigil.url}/v2/${NOHASH_UPSTREAM}/`, proc: sigil.proc, metrics: sigil.url },
      sigilOff: { v2: `${sigil.url}/v2/${OFF_UPSTREAM}/`, proc: sigil.proc, metrics: sigil.url },
      ...(store ? { sigilStore: { v2: `${store.url}/v2/`, proc: store.proc, metrics: store.url } } : {}),
    },
    agent,
    f: {
      big: { mbps: {}, rss: {} },
      small: { mbps: {}, rss: {} },
      bigCpuProxy: {},
      bigCpuProxyMain: {},
      bigCpuAll: {},
      rssIdle: {},
      hwmAfterBlobs: {},
      hwmEnd: {},
      load: [],
      cold: [],
    },
    runs: [],
    quiet: { ms: QUIET_WAIT_BUDGET_MS },
    measured: { othersCpuS: 0, seconds: 0 },
    sigilUpstream: { sent: 0, answered: 0 },
  };

  // Every target answers right before anything is measured
  let verification = '';
  for (const v of TARGETS) {
    const got = await checkManifest(b, v, REPO_INDEX, TAG, index);
    if (v === 'sigil') verification = got;
  }
  if (store) await checkManifest(b, 'sigilStore', REPO_INDEX, TAG, index);
  for (const v of ['direct', 'pipe'] as const) await checkManifest(b, v, REPO_SIGNED, TAG, signed);
  await checkManifest(b, 'sigil', REPO_SIGNED, TAG, signed, 'verified');
  await checkManifest(b, 'sigilOff', REPO_SIGNED, TAG, signed, 'skipped');
  const procs: Array<[Variant, Proc | undefined]> = [['pipe', pipe.proc], ['sigil', sigil.proc], ['sigilStore', store?.proc]];
  for (const [v, p] of procs) if (p) b.f.rssIdle[v] = memoryOf(p.pid).rss;

  if (small !== undefined && big !== undefined) {
    await fillStore(b, small, b.f.small);
    await fillStore(b, big, b.f.big);
    // 64 MiB first: the RSS it shows is not left over from a 1 GiB stream
    await blobPhase(b, small, b.f.small, false);
    await blobPhase(b, big, b.f.big, true);
    for (const [v, p] of procs) if (p) b.f.hwmAfterBlobs[v] = memoryOf(p.pid).hwm;
  }
  if (doManifests) {
    const scenarios = [
      ['index by tag', REPO_INDEX, TAG, TARGETS, undefined],
      ['index by digest', REPO_INDEX, index.digest, TARGETS, undefined],
      ['signed image by tag', REPO_SIGNED, TAG, SIGNED_ORDER, 'signed'],
    ] as const;
    for (const [label, repo, ref, variants, kind] of scenarios) {
      for (const [connections, durationS] of [[LOAD_CONNECTIONS, LOAD_DURATION_S], [1, SERIAL_DURATION_S]] as const) {
        const s: LoadScenario = { label, connections, results: {} };
        if (kind === 'signed') {
          s.variants = [{ variant: 'sigilOff', suffix: ', policy `off`' }, { variant: 'sigil', suffix: ', policy `enforce` (verified)' }];
          s.against = { variant: 'sigilOff', name: 'sigil `off`', atLeast: ENFORCE_VS_OFF };
        }
        b.f.load.push(s);
        await loadPhase(b, s, repo, ref, variants, durationS);
      }
    }
  }
  if (doVerify) {
    b.f.cold.push(await coldPhase(b, 'key (P-256, `tlog: ignore`)', REPO_KEY_COLD, keyCold));
    b.f.cold.push(await coldPhase(b, 'keyless (private Sigstore, `.sig` with Rekor SET)', REPO_KEYLESS_COLD, keylessCold));
  }
  if (herdImage !== undefined && fwd !== undefined) b.f.herd = await herdPhase(b, fwd, herdImage);
  for (const [v, p] of procs) if (p) b.f.hwmEnd[v] = memoryOf(p.pid).hwm;

  let registryVersion = REGISTRY_BIN;
  try {
    registryVersion = execFileSync(REGISTRY_BIN, ['--version'], { encoding: 'utf8' }).trim().replace(/^\S+\s+/, '');
  } catch {
    // only informative
  }
  const page = renderPage(b.f, {
    sigil: args.sigil === SIGIL_BIN ? 'bin/sigil' : args.sigil,
    source,
    logLevel: args['sigil-log'],
    mode: policyMode,
    verification,
    cpuProfiled: args['cpu-prof'] !== undefined,
    registryVersion,
    blobReps: BLOB_REPS,
    smallBlobReps: SMALL_BLOB_REPS,
    blobBytes: BIG_BLOB_BYTES,
    smallBlobBytes: SMALL_BLOB_BYTES,
    storeMaxBytes: STORE_MAX_BYTES,
    loadDurationS: LOAD_DURATION_S,
    serialDurationS: SERIAL_DURATION_S,
    warmupS: WARMUP_DURATION_S,
    platforms: PLATFORMS.length,
    coldImages: COLD_IMAGES,
    warmGets: WARM_GETS,
    seconds: Math.round((Date.now() - started) / 1000),
    othersCpuS: b.measured.othersCpuS,
    sigilUpstream: b.sigilUpstream,
    measuredS: b.measured.seconds,
  }, b.runs);
  process.stdout.write(page);
  if (only !== undefined || args['cpu-prof'] !== undefined || args['node-options'] !== undefined) {
    log('a partial or profiled run: bench/results/latest.md left as it was');
    return;
  }
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
