/**
 * The sections blob, manifest, verify and herd: sigil against the registry directly and a bare
 * pipe proxy (bench/run.ts sets them up and renders what they measured).
 */
import type { Agent } from 'undici';
import type { Forwarder } from '../test/helpers/forwarder.js';
import { ALL_MANIFEST_TYPES } from '../test/helpers/push.js';
import type { PushedImage } from '../test/helpers/push.js';
import { MIB, cpuMeter, cpuText, metricsText, pollUntil, record, servedFromStore, sigilUpstreamRequests, waitQuiet } from './context.js';
import type { Blob, CpuUse, Ctx } from './context.js';
import { HERD_CLIENTS, HERD_LAYER_BYTES, HERD_UPSTREAM, REPO_BLOB, REPO_HERD, RSS_SAMPLE_MS, WARMUP_DURATION_S } from './fixture.js';
import type { Counts } from './fixture.js';
import { fetchBlob, getTimed, load, median, mergeLoads, pullImage } from './measure.js';
import type { BlobRun, LoadResult } from './measure.js';
import { sampleRss } from './procs.js';
import type { Proc } from './procs.js';
import type { BlobFigures, ColdVerification, Figures, Herd, LoadScenario, Variant } from './report.js';

const BLOB_VARIANTS: readonly Variant[] = ['direct', 'pipe', 'sigil', 'sigilNoHash', 'sigilStore'];
// The store commits (fsync, rename, catalog) after the first GET's last byte: poll until it serves the blob
const STORE_COMMIT_POLL_MS = 200;
const STORE_COMMIT_TIMEOUT_MS = 20_000;
export const WARM_GETS = 3; // after each cold GET: its median is the warm figure subtracted

export interface Endpoint {
  /** Up to and including "/v2/", plus the upstream prefix that routes to the right upstream. */
  v2: string;
  /** The proxy's process (none: direct). */
  proc?: Proc;
  /** The sigil whose /metrics count its upstream requests. */
  metrics?: string;
}

export interface Bench extends Ctx {
  at: Partial<Record<Variant, Endpoint>>;
  f: Figures;
  /** How many times, and how long, each figure is measured. */
  n: Counts;
  /** Manifest requests sigil sent upstream during the measured manifest runs, and answers it gave. */
  sigilUpstream: { sent: number; answered: number };
}

export function endpoint(b: Bench, v: Variant): Endpoint {
  const e = b.at[v];
  if (e === undefined) throw new Error(`no endpoint for ${v}`);
  return e;
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
export async function blobPhase(b: Bench, blob: Blob, into: BlobFigures, big: boolean): Promise<void> {
  const label = `${blob.size / MIB} MiB`;
  for (let rep = 0; rep < (big ? b.n.blobReps : b.n.smallBlobReps); rep++) {
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
export async function fillStore(b: Bench, blob: Blob, into: BlobFigures): Promise<void> {
  const e = endpoint(b, 'sigilStore');
  const metrics = e.metrics ?? '';
  await waitQuiet(b.quiet);
  const meter = cpuMeter(b.registry.pid, e.proc?.pid);
  const run = await fetchBlob(`${e.v2}${REPO_BLOB}/blobs/${blob.digest}`, blob.size, b.agent);
  const cpu = meter.stop();
  into.storeFill = run.mbps;
  record(b, `${blob.size / MIB} MiB first GET through the content store (fills it): ${run.mbps.toFixed(0)} MB/s (${run.seconds.toFixed(2)} s); CPU s: ${cpuText(cpu, e.proc?.name)}`, cpu, run.seconds);
  const url = `${e.v2}${REPO_BLOB}/blobs/${blob.digest}`;
  await pollUntil(() => servedFromStore(b.agent, metrics, url), STORE_COMMIT_POLL_MS, STORE_COMMIT_TIMEOUT_MS, `the content store serving ${blob.digest} after its first GET`);
}

/**
 * autocannon on one manifest URL per variant, in `order`; a variant named twice (ABBA, so that
 * drift favours neither of two close variants) is reported as one, over both runs.
 */
export async function loadPhase(b: Bench, s: LoadScenario, repo: string, ref: string, order: readonly Variant[], durationS: number): Promise<void> {
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
export async function checkManifest(b: Bench, v: Variant, repo: string, ref: string, want: { digest: string; manifest: Buffer }, verification?: string): Promise<string> {
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
export async function coldPhase(b: Bench, label: string, repo: string, images: PushedImage[]): Promise<ColdVerification> {
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

export async function herdPhase(b: Bench, fwd: Forwarder, img: PushedImage): Promise<Herd> {
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
