/**
 * The section `store`: sigil with its content store against CNCF distribution's pull-through
 * cache (`docker-registry` with `proxy.remoteurl` = the origin), both empty at the start, both
 * pinned to the same single core (taskset) so that neither wins by using more cores:
 *
 * - cold fill: the first GET of each of a few 256 MiB blobs through each (alternating which goes
 *   first), timed to its last byte and until the peer serves the blob from its own store; then,
 *   as references that keep nothing, the same GET through a bare node:http pipe proxy and a
 *   store-less sigil pinned the same (what Node.js itself streams on that core);
 * - warm reads: the first blob again, served from each one's store;
 * - manifests by tag (the index, c=16): sigil with the store, sigil without it, distribution;
 * - memory: VmHWM and sampled RSS of each peer through all of the above;
 * - streams: one 64 MiB blob downloaded by 1 and by 64 concurrent clients through a store sigil
 *   (not pinned: as deployed), cold then warm, its peak RSS (VmHWM reset before each phase) and
 *   its RSS after.
 */
import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { ALL_MANIFEST_TYPES } from '../test/helpers/push.js';
import type { PushedIndex } from '../test/helpers/push.js';
import { startRegistry } from '../test/helpers/registry.js';
import { MIB, cpuMeter, cpuText, defer, log, onCleanup, pollUntil, pushRandomBlob, record, servedFromStore, sigilUpstreamRequests, waitQuiet } from './context.js';
import type { Blob, Ctx } from './context.js';
import { LOAD_CONNECTIONS, REPO_INDEX, REPO_STORE, RSS_SAMPLE_MS, STORE_MAX_BYTES, TAG, UPSTREAM_NAME, WARMUP_DURATION_S } from './fixture.js';
import type { Counts } from './fixture.js';
import { fetchBlob, getTimed, load, mergeLoads } from './measure.js';
import type { BlobRun, LoadResult } from './measure.js';
import { memoryOf, resetPeakRss, sampleRss } from './procs.js';
import { startPipeProxy, startSigil } from './servers.js';
import type { SigilOptions } from './servers.js';
import type { Peer, Reference, StoreFigures, StreamPhase } from './store-report.js';

export const STORE_BLOB_BYTES = 256 * MIB; // ~1-3 s per GET here: long enough to measure, short enough for several
export const STREAM_BLOB_BYTES = 64 * MIB; // the issue's figure
export const STREAMS = 64; // the issue's figure
const WARM_UP_BLOB_BYTES = 16 * MIB; // big enough to be hashed on a worker thread (≥ 1 MiB)

interface StreamBlobs {
  warmUp: Blob;
  one: Blob;
  many: Blob;
}
const TASKSET_BIN = '/usr/bin/taskset';
const STORED_POLL_MS = 50; // "until stored" is read to this precision
const STORED_TIMEOUT_MS = 60_000;
const SETTLE_MS = 2_000; // after a streams phase, before "RSS after": timers and GC have run
const MANIFEST_ORDER: readonly Peer[] = ['sigil', 'sigilStore', 'distribution', 'distribution', 'sigilStore', 'sigil']; // ABCCBA: drift favours none

/** sigil's settings shared by every sigil of the section (bin, log level, policies, profiling). */
export type SigilCommon = Omit<SigilOptions, 'label' | 'upstreams' | 'store' | 'cpus'>;

interface Target {
  peer: Peer;
  name: string;
  pid: number;
  /** Up to and including "/v2/". */
  v2: string;
  /** sigil's base URL (its /metrics count requests sent upstream). */
  metrics?: string;
  /** Whether the peer now serves `blob` from its own store. */
  stored(blob: Blob): Promise<boolean>;
}

const blobUrl = (t: Target, blob: Blob): string => `${t.v2}${REPO_STORE}/blobs/${blob.digest}`;

const sigilStored = (c: Ctx, t: Target, blob: Blob): Promise<boolean> => servedFromStore(c.agent, t.metrics ?? '', blobUrl(t, blob));

/** A cold-fill reference (keeps nothing): its name, pid and "/v2/" URL. */
interface RefTarget {
  ref: Reference;
  name: string;
  pid: number;
  v2: string;
}

async function startPeers(c: Ctx, sigil: SigilCommon, dir: string, cpus: string | undefined): Promise<{ peers: Record<Peer, Target>; refs: RefTarget[] }> {
  const pin = cpus !== undefined ? { cpus } : {};
  const dist = await startRegistry({ proxy: c.registry.url, ...pin });
  onCleanup(() => dist.stop());
  // distribution's filesystem layout: a blob is served locally once its data and the repository's link exist
  const root = join(dist.dir, 'data/docker/registry/v2');
  const upstreams = [{ name: UPSTREAM_NAME, url: c.registry.url }];
  const store = await startSigil({ ...sigil, ...pin, label: 'sigil-store-pinned', upstreams, store: { dir: join(dir, 'store-pinned'), maxBytes: STORE_MAX_BYTES } }, defer);
  const plain = await startSigil({ ...sigil, ...pin, label: 'sigil-pinned', upstreams }, defer);
  const peers: Record<Peer, Target> = {
    distribution: {
      peer: 'distribution',
      name: 'distribution',
      pid: dist.pid,
      v2: `${dist.url}/v2/`,
      stored: (blob) => {
        const hex = blob.digest.slice('sha256:'.length);
        const link = join(root, 'repositories', REPO_STORE, '_layers/sha256', hex, 'link');
        return Promise.resolve(existsSync(link) && existsSync(join(root, 'blobs/sha256', hex.slice(0, 2), hex, 'data')));
      },
    },
    sigilStore: { peer: 'sigilStore', name: 'sigil-store', pid: store.proc.pid, v2: `${store.url}/v2/`, metrics: store.url, stored: (b) => sigilStored(c, peers.sigilStore, b) },
    sigil: { peer: 'sigil', name: 'sigil', pid: plain.proc.pid, v2: `${plain.url}/v2/`, metrics: plain.url, stored: () => Promise.resolve(false) },
  };
  const pipe = await startPipeProxy(c.registry.url, defer, cpus);
  const refs: RefTarget[] = [
    { ref: 'pipe', name: 'pipe-pinned', pid: pipe.proc.pid, v2: `${pipe.url}/v2/` },
    { ref: 'sigil', name: 'sigil-pinned', pid: plain.proc.pid, v2: `${plain.url}/v2/` },
  ];
  log(`store section: distribution proxy pid ${dist.pid}, sigil-store-pinned pid ${store.proc.pid}, sigil-pinned pid ${plain.proc.pid}, pipe-pinned pid ${pipe.proc.pid}${cpus !== undefined ? `, all on CPU ${cpus}` : ' (not pinned: no taskset)'}`);
  return { peers, refs };
}

/** Runs `fn` while sampling the peer's RSS; the largest sample goes into `f.memory.maxSampled`. */
async function sampled<T>(f: StoreFigures, t: Target, fn: () => Promise<T>): Promise<T> {
  const sampler = sampleRss(t.pid, RSS_SAMPLE_MS);
  try {
    return await fn();
  } finally {
    f.memory.maxSampled[t.peer] = Math.max(f.memory.maxSampled[t.peer] ?? 0, ...sampler.stop());
  }
}

function untilStored(t: Target, blob: Blob): Promise<void> {
  return pollUntil(() => t.stored(blob), STORED_POLL_MS, STORED_TIMEOUT_MS, `${t.name} serving ${blob.digest} from its store after its first GET`);
}

/** The first GET of `blob` through `t` (empty of it), and the time until `t` serves it from its store. */
async function coldFill(c: Ctx, f: StoreFigures, t: Target, blob: Blob, i: number): Promise<void> {
  await waitQuiet(c.quiet);
  const meter = cpuMeter(c.registry.pid, t.pid);
  const t0 = performance.now();
  const first = await sampled(f, t, async () => {
    const run = await fetchBlob(blobUrl(t, blob), blob.size, c.agent);
    await untilStored(t, blob);
    return run;
  });
  const storedS = (performance.now() - t0) / 1000;
  const cpu = meter.stop();
  const p = t.peer as 'distribution' | 'sigilStore';
  (f.cold.firstMbps[p] ??= []).push(first.mbps);
  (f.cold.storedMbps[p] ??= []).push(blob.size / 1e6 / storedS);
  (f.cold.cpuS[p] ??= []).push(cpu.proxy);
  record(
    c,
    `store: cold fill ${i + 1} ${t.name}: first GET ${first.mbps.toFixed(0)} MB/s (${first.seconds.toFixed(2)} s), stored after ${storedS.toFixed(2)} s; CPU s until stored: ${cpuText(cpu, t.name)}`,
    cpu,
    storedS,
  );
}

/** The first GET of `blob` through a reference that keeps nothing. */
async function referenceGet(c: Ctx, f: StoreFigures, t: RefTarget, blob: Blob, i: number): Promise<void> {
  await waitQuiet(c.quiet);
  const meter = cpuMeter(c.registry.pid, t.pid);
  const run = await fetchBlob(`${t.v2}${REPO_STORE}/blobs/${blob.digest}`, blob.size, c.agent);
  const cpu = meter.stop();
  const r = (f.cold.reference[t.ref] ??= { mbps: [], cpuS: [] });
  r.mbps.push(run.mbps);
  r.cpuS.push(cpu.proxy);
  record(c, `store: cold reference ${i + 1} ${t.name}: ${run.mbps.toFixed(0)} MB/s (${run.seconds.toFixed(2)} s); CPU s: ${cpuText(cpu, t.name)}`, cpu, run.seconds);
}

/** The blob again from `t`'s store; sigil must not ask its upstream meanwhile. */
async function warmRead(c: Ctx, f: StoreFigures, t: Target, blob: Blob, rep: number): Promise<void> {
  await waitQuiet(c.quiet);
  const upstream0 = t.metrics !== undefined ? await sigilUpstreamRequests(t.metrics, c.agent) : undefined;
  const meter = cpuMeter(c.registry.pid, t.pid);
  const run = await sampled(f, t, () => fetchBlob(blobUrl(t, blob), blob.size, c.agent));
  const cpu = meter.stop();
  if (upstream0 !== undefined && t.metrics !== undefined) {
    const sent = (await sigilUpstreamRequests(t.metrics, c.agent)) - upstream0;
    if (sent !== 0) throw new Error(`${t.name}: a warm read sent ${sent} requests upstream (not served from its store)`);
  }
  const p = t.peer as 'distribution' | 'sigilStore';
  (f.warm.mbps[p] ??= []).push(run.mbps);
  (f.warm.cpuS[p] ??= []).push(cpu.proxy);
  record(c, `store: warm read #${rep + 1} ${t.name}: ${run.mbps.toFixed(0)} MB/s (${run.seconds.toFixed(2)} s); CPU s: ${cpuText(cpu, t.name)} (registry: ~0 when served from the store)`, cpu, run.seconds);
}

async function checkIndex(c: Ctx, t: Target, index: PushedIndex): Promise<void> {
  const r = await getTimed(`${t.v2}${REPO_INDEX}/manifests/${TAG}`, { accept: ALL_MANIFEST_TYPES }, c.agent);
  if (r.status !== 200 || r.headers['docker-content-digest'] !== index.digest || !r.body.equals(index.manifest)) {
    throw new Error(`${t.name}: ${REPO_INDEX}:${TAG} answered ${r.status}, digest ${String(r.headers['docker-content-digest'])}: ${r.body.toString().slice(0, 300)}`);
  }
}

async function manifestLoad(c: Ctx, f: StoreFigures, t: Target, n: Counts): Promise<LoadResult> {
  const url = `${t.v2}${REPO_INDEX}/manifests/${TAG}`;
  const headers = { accept: ALL_MANIFEST_TYPES };
  await load(url, headers, LOAD_CONNECTIONS, WARMUP_DURATION_S);
  await waitQuiet(c.quiet);
  const upstream0 = t.metrics !== undefined ? await sigilUpstreamRequests(t.metrics, c.agent) : undefined;
  const meter = cpuMeter(c.registry.pid, t.pid);
  const r = await sampled(f, t, () => load(url, headers, LOAD_CONNECTIONS, n.loadS));
  const cpu = meter.stop();
  const sent = upstream0 !== undefined && t.metrics !== undefined ? `; sigil sent ${(await sigilUpstreamRequests(t.metrics, c.agent)) - upstream0} requests upstream` : '';
  record(c, `store: index by tag c=${LOAD_CONNECTIONS} ${t.name}: ${r.rps.toFixed(0)} req/s, p50 ${r.p50.toFixed(2)} ms, p99 ${r.p99.toFixed(2)} ms; CPU s: ${cpuText(cpu, t.name)}${sent}`, cpu, n.loadS);
  return r;
}

/** `streams` concurrent GETs of `blob` through `t`; peak RSS from VmHWM (reset first) and the samples. */
async function streamPhase(c: Ctx, t: Target, blob: Blob, streams: number, warm: boolean): Promise<StreamPhase> {
  await waitQuiet(c.quiet);
  const upstream0 = warm && t.metrics !== undefined ? await sigilUpstreamRequests(t.metrics, c.agent) : undefined;
  const before = memoryOf(t.pid).rss;
  const reset = resetPeakRss(t.pid);
  const sampler = sampleRss(t.pid, RSS_SAMPLE_MS);
  const meter = cpuMeter(c.registry.pid, t.pid);
  const t0 = performance.now();
  let runs: BlobRun[];
  let samples: number[] = [];
  try {
    runs = await Promise.all(Array.from({ length: streams }, () => fetchBlob(blobUrl(t, blob), blob.size, c.agent)));
  } finally {
    samples = sampler.stop();
  }
  const wallS = (performance.now() - t0) / 1000;
  const cpu = meter.stop();
  const mem = memoryOf(t.pid);
  if (upstream0 !== undefined && t.metrics !== undefined) {
    const sent = (await sigilUpstreamRequests(t.metrics, c.agent)) - upstream0;
    if (sent !== 0) throw new Error(`${t.name}: ${streams} warm streams sent ${sent} requests upstream`);
  }
  const maxSampled = Math.max(0, ...samples);
  const phase: StreamPhase = {
    streams,
    warm,
    before,
    peak: reset ? Math.max(mem.hwm, maxSampled) : maxSampled,
    peakFrom: reset ? 'VmHWM' : 'sampled',
    after: mem.rss,
    settled: mem.rss,
    wallS,
    mbps: runs.reduce((a, r) => a + r.bytes, 0) / 1e6 / wallS,
  };
  record(
    c,
    `store: ${streams} stream${streams > 1 ? 's' : ''} ${warm ? 'warm' : 'cold'} of ${blob.size / MIB} MiB through ${t.name}: ${wallS.toFixed(2)} s, ${phase.mbps.toFixed(0)} MB/s in all; ` +
      `RSS before ${(before / MIB).toFixed(0)} MiB, peak ${(phase.peak / MIB).toFixed(0)} MiB (${phase.peakFrom}), right after ${(mem.rss / MIB).toFixed(0)} MiB; CPU s: ${cpuText(cpu, t.name)}`,
    cpu,
    wallS,
  );
  return phase;
}

/**
 * The streams scenario, in a store sigil of its own (not pinned: memory as deployed). A warm-up
 * blob goes through first, cold and warm, so that what a process pays once (the hash worker's
 * thread and heap, compiled code) is paid before the 1-stream phases as it is before the
 * 64-stream ones: the difference of their peaks is then the streams' own.
 */
async function streamsScenario(c: Ctx, sigil: SigilCommon, dir: string, f: StoreFigures, blobs: StreamBlobs, index: PushedIndex): Promise<void> {
  const s = await startSigil(
    { ...sigil, label: 'sigil-store-streams', upstreams: [{ name: UPSTREAM_NAME, url: c.registry.url }], store: { dir: join(dir, 'store-streams'), maxBytes: STORE_MAX_BYTES } },
    defer,
  );
  const t: Target = { peer: 'sigilStore', name: 'sigil-store-streams', pid: s.proc.pid, v2: `${s.url}/v2/`, metrics: s.url, stored: (b) => sigilStored(c, t, b) };
  log(`store section: sigil-store-streams pid ${t.pid} (not pinned)`);
  await checkIndex(c, t, index);
  const idle = memoryOf(t.pid).rss;
  const warmUp = `${t.v2}${REPO_STORE}/blobs/${blobs.warmUp.digest}`;
  await fetchBlob(warmUp, blobs.warmUp.size, c.agent);
  await untilStored(t, blobs.warmUp);
  await fetchBlob(warmUp, blobs.warmUp.size, c.agent);
  const phases: StreamPhase[] = [];
  for (const [streams, blob] of [[1, blobs.one], [STREAMS, blobs.many]] as const) {
    for (const warm of [false, true]) {
      const p = await streamPhase(c, t, blob, streams, warm);
      if (!warm) await untilStored(t, blob);
      await sleep(SETTLE_MS);
      p.settled = memoryOf(t.pid).rss;
      phases.push(p);
    }
  }
  f.streams = { blobBytes: STREAM_BLOB_BYTES, idle, phases, hwmEnd: memoryOf(t.pid).hwm };
}

export interface StoreSetup {
  dir: string;
  sigil: SigilCommon;
  /** The index pushed as REPO_INDEX:TAG (manifests by tag). */
  index: PushedIndex;
  n: Counts;
}

export async function storeSection(c: Ctx, o: StoreSetup): Promise<StoreFigures> {
  const blobs: Blob[] = [];
  for (let i = 0; i < o.n.coldFills; i++) blobs.push(await pushRandomBlob(c.registry, o.dir, REPO_STORE, STORE_BLOB_BYTES));
  const streamBlobs: StreamBlobs = {
    warmUp: await pushRandomBlob(c.registry, o.dir, REPO_STORE, WARM_UP_BLOB_BYTES),
    one: await pushRandomBlob(c.registry, o.dir, REPO_STORE, STREAM_BLOB_BYTES),
    many: await pushRandomBlob(c.registry, o.dir, REPO_STORE, STREAM_BLOB_BYTES),
  };
  const cpus = existsSync(TASKSET_BIN) ? String(availableParallelism() - 1) : undefined;
  const { peers, refs } = await startPeers(c, o.sigil, o.dir, cpus);
  const f: StoreFigures = {
    pinnedCpu: cpus,
    blobBytes: STORE_BLOB_BYTES,
    coldFills: o.n.coldFills,
    warmReps: o.n.warmReps,
    loadS: o.n.loadS,
    connections: LOAD_CONNECTIONS,
    cold: { firstMbps: {}, storedMbps: {}, cpuS: {}, reference: {} },
    warm: { mbps: {}, cpuS: {} },
    manifests: {},
    memory: { idle: {}, maxSampled: {}, hwm: {} },
  };
  for (const t of Object.values(peers)) {
    await checkIndex(c, t, o.index);
    f.memory.idle[t.peer] = memoryOf(t.pid).rss;
  }
  const pair = (k: number): Target[] => (k % 2 === 0 ? [peers.sigilStore, peers.distribution] : [peers.distribution, peers.sigilStore]);
  for (const [i, blob] of blobs.entries()) {
    for (const t of pair(i)) await coldFill(c, f, t, blob, i);
    for (const r of i % 2 === 0 ? refs : [...refs].reverse()) await referenceGet(c, f, r, blob, i);
  }
  for (let rep = 0; rep < o.n.warmReps; rep++) for (const t of pair(rep)) await warmRead(c, f, t, blobs[0], rep);
  const runs: Partial<Record<Peer, LoadResult[]>> = {};
  for (const p of MANIFEST_ORDER) (runs[p] ??= []).push(await manifestLoad(c, f, peers[p], o.n));
  for (const [p, rs] of Object.entries(runs) as Array<[Peer, LoadResult[]]>) {
    const m = mergeLoads(rs);
    f.manifests[p] = { rps: m.rps, p50: m.p50, p99: m.p99 };
  }
  for (const t of Object.values(peers)) f.memory.hwm[t.peer] = memoryOf(t.pid).hwm;
  await streamsScenario(c, o.sigil, o.dir, f, streamBlobs, o.index);
  return f;
}
