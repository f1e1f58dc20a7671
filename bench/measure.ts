/** The load generators: one whole-blob GET that discards the bytes, autocannon, timed GETs and whole-image pulls. */
import { createHash } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import autocannon from 'autocannon';
import { request } from 'undici';
import type { Dispatcher } from 'undici';

export interface BlobRun {
  bytes: number;
  seconds: number;
  /** 10^6 bytes per second. */
  mbps: number;
}

/** GETs a whole blob, counts and drops the bytes; fails unless 200 with exactly `size` bytes. */
export async function fetchBlob(url: string, size: number, dispatcher: Dispatcher): Promise<BlobRun> {
  const start = performance.now();
  const res = await request(url, { dispatcher });
  if (res.statusCode !== 200) {
    const text = await res.body.text();
    throw new Error(`GET ${url}: ${res.statusCode} ${text.slice(0, 300)}`);
  }
  let bytes = 0;
  await new Promise<void>((resolve, reject) => {
    res.body.on('data', (chunk: Buffer) => {
      bytes += chunk.length;
    });
    res.body.once('end', resolve);
    res.body.once('error', reject);
  });
  const seconds = (performance.now() - start) / 1000;
  if (bytes !== size) throw new Error(`GET ${url}: got ${bytes} bytes, expected ${size}`);
  return { bytes, seconds, mbps: bytes / 1e6 / seconds };
}

export interface LoadResult {
  /** 2xx answers per second. */
  rps: number;
  /** Latency of 2xx answers, ms (autocannon's own histogram keeps whole ms only: these are exact). */
  p50: number;
  p99: number;
  requests: number;
  /** Seconds measured. */
  seconds: number;
  /** Every 2xx answer's latency, ms (to merge runs). */
  latencies: number[];
}

/** Several runs of one URL as one: requests over the time of all, percentiles of all latencies. */
export function mergeLoads(runs: readonly LoadResult[]): LoadResult {
  const latencies = runs.flatMap((r) => r.latencies);
  const requests = runs.reduce((a, r) => a + r.requests, 0);
  const seconds = runs.reduce((a, r) => a + r.seconds, 0);
  return { rps: requests / seconds, p50: percentile(latencies, 50), p99: percentile(latencies, 99), requests, seconds, latencies };
}

/** One autocannon run; fails when any answer was not 2xx or any request errored. */
export async function load(url: string, headers: Record<string, string>, connections: number, durationS: number): Promise<LoadResult> {
  const latencies: number[] = [];
  const job = autocannon({ url, headers, connections, duration: durationS });
  job.on('response', (_client, status, _bytes, ms) => {
    if (status >= 200 && status < 300) latencies.push(ms);
  });
  const r = await job;
  if (r.non2xx > 0 || r.errors > 0 || r.timeouts > 0 || r['2xx'] === 0) {
    throw new Error(
      `autocannon ${url}: ${r['2xx']} ok, ${r.non2xx} non-2xx (${JSON.stringify(r.statusCodeStats)}), ${r.errors} errors, ${r.timeouts} timeouts`,
    );
  }
  return { rps: r['2xx'] / r.duration, p50: percentile(latencies, 50), p99: percentile(latencies, 99), requests: r['2xx'], seconds: r.duration, latencies };
}

/** Nearest-rank percentile. */
export function percentile(xs: number[], p: number): number {
  if (xs.length === 0) throw new Error('percentile of nothing');
  const s = Float64Array.from(xs).sort();
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
}

export function median(xs: number[]): number {
  if (xs.length === 0) throw new Error('median of nothing');
  const s = Float64Array.from(xs).sort();
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

export interface Fetched {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  /** Until the last byte, ms. */
  ms: number;
}

/** One GET, read whole and timed. */
export async function getTimed(url: string, headers: Record<string, string>, dispatcher: Dispatcher): Promise<Fetched> {
  const start = performance.now();
  const res = await request(url, { headers, dispatcher });
  const body = Buffer.from(await res.body.arrayBuffer());
  return { status: res.statusCode, headers: res.headers, body, ms: performance.now() - start };
}

export interface ImageToPull {
  manifest: Buffer;
  config: { digest: string };
  layers: ReadonlyArray<{ digest: string }>;
}

/**
 * Pulls an image the way a client does: the manifest by tag (its exact bytes checked, and
 * `Sigil-Verification` when `verification` is given), then the config and each layer by
 * digest, each hashed and checked. `v2` is the base up to and including "/v2/" (plus any
 * upstream prefix). Returns the number of requests sent.
 */
export async function pullImage(
  v2: string,
  repo: string,
  tag: string,
  img: ImageToPull,
  accept: string,
  dispatcher: Dispatcher,
  verification?: string,
): Promise<number> {
  const m = await getTimed(`${v2}${repo}/manifests/${tag}`, { accept }, dispatcher);
  if (m.status !== 200 || !m.body.equals(img.manifest)) throw new Error(`${v2}${repo}:${tag}: ${m.status} ${m.body.toString().slice(0, 300)}`);
  if (verification !== undefined && m.headers['sigil-verification'] !== verification) {
    throw new Error(`${v2}${repo}:${tag}: Sigil-Verification ${String(m.headers['sigil-verification'])}, expected ${verification}`);
  }
  let sent = 1;
  for (const d of [img.config, ...img.layers]) {
    const res = await request(`${v2}${repo}/blobs/${d.digest}`, { dispatcher });
    sent++;
    const hash = createHash('sha256');
    for await (const chunk of res.body) hash.update(chunk as Buffer);
    const got = `sha256:${hash.digest('hex')}`;
    if (res.statusCode !== 200 || got !== d.digest) throw new Error(`${v2}${repo} blob ${d.digest}: ${res.statusCode}, bytes hash to ${got}`);
  }
  return sent;
}
