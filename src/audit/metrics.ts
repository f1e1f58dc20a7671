import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { sigilVersion } from '../version.js';

/**
 * prom-client's default metrics that break the exposition format's naming rules: gauges named
 * `_total`, which `promtool check metrics` refuses ("non-counter metrics should not have _total
 * suffix"). Left out: each is the sum of the gauge of the same name without `_total` (by type).
 */
export const NON_CONFORMING_DEFAULT_METRICS = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'] as const;

/** What the store gauges read at each scrape (store/content-store.ts). */
export interface ObservedStore {
  usage(): { bytes: number; objects: number };
  readonly maxBytes: number;
  /** Set while the store does not write after a file system fault. */
  readonly fault: unknown;
}

/** All of sigil's Prometheus metrics, on a registry of this app's own (never the global one). */
export class Metrics {
  readonly registry: Registry;
  readonly httpRequests: Counter<'route' | 'method' | 'status'>;
  readonly httpDuration: Histogram<'route' | 'method'>;
  readonly upstreamRequests: Counter<'upstream' | 'kind' | 'status'>;
  readonly upstreamErrors: Counter<'upstream' | 'kind' | 'code'>;
  readonly upstreamDuration: Histogram<'upstream' | 'kind'>;
  readonly bytesStreamed: Counter<'upstream' | 'direction'>;
  readonly manifestDecisions: Counter<'upstream' | 'verification' | 'policy'>;
  readonly verifications: Counter<'outcome' | 'policy'>;
  readonly verificationDuration: Histogram<'outcome'>;
  readonly verdictCache: Counter<'result'>;
  readonly staleResponses: Counter<'upstream'>;
  readonly storeDamaged: Counter;
  readonly storeFaults: Counter<'op' | 'code'>;
  readonly configReloads: Counter<'result'>;
  readonly configLastReloadSuccess: Gauge;
  readonly configLastReloadSuccessful: Gauge;
  readonly storeLookups: Counter<'kind' | 'result'>;
  readonly storeFilled: Counter;
  readonly storeEvictions: Counter;
  readonly storeEvictedBytes: Counter;
  readonly sharedUnavailable: Counter<'engine'>;
  readonly sharedUp: Gauge<'engine'>;
  readonly sharedReplications: Counter<'kind' | 'result'>;
  readonly sharedStoreLookups: Counter<'kind' | 'result'>;
  readonly sharedVerdicts: Counter<'result'>;
  readonly blobFlights: Counter<'upstream' | 'outcome'>;
  readonly buildInfo: Gauge<'version' | 'node'>;
  /** The store the gauges read, once one is watched (watchStore). */
  #store: ObservedStore | undefined;

  constructor(opts: { defaultMetrics?: boolean } = {}) {
    const registry = new Registry();
    this.registry = registry;
    if (opts.defaultMetrics ?? true) {
      // the standard names (process_cpu_seconds_total, process_resident_memory_bytes, nodejs_*): stock dashboards read them
      collectDefaultMetrics({ register: registry });
      for (const name of NON_CONFORMING_DEFAULT_METRICS) registry.removeSingleMetric(name);
    }
    this.buildInfo = new Gauge({
      name: 'sigil_build_info',
      help: 'Always 1; the labels say which sigil (version) runs on which Node.js (node)',
      labelNames: ['version', 'node'],
      registers: [registry],
    });
    this.buildInfo.set({ version: sigilVersion(), node: process.version }, 1);
    this.httpRequests = new Counter({
      name: 'sigil_http_requests_total',
      help: 'HTTP requests answered, by route, method and status',
      labelNames: ['route', 'method', 'status'],
      registers: [registry],
    });
    this.httpDuration = new Histogram({
      name: 'sigil_http_request_duration_seconds',
      help: 'Time to answer an HTTP request (headers sent; blob bodies may stream on)',
      labelNames: ['route', 'method'],
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    });
    this.upstreamRequests = new Counter({
      name: 'sigil_upstream_requests_total',
      help: 'Requests sent to upstream registries, by upstream, kind and HTTP status',
      labelNames: ['upstream', 'kind', 'status'],
      registers: [registry],
    });
    this.upstreamErrors = new Counter({
      name: 'sigil_upstream_errors_total',
      help: 'Upstream requests that failed (network, timeout, bad data), by error code',
      labelNames: ['upstream', 'kind', 'code'],
      registers: [registry],
    });
    this.upstreamDuration = new Histogram({
      name: 'sigil_upstream_request_duration_seconds',
      help: 'Time until an upstream answered with headers',
      labelNames: ['upstream', 'kind'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: [registry],
    });
    this.bytesStreamed = new Counter({
      name: 'sigil_bytes_streamed_total',
      help: 'Blob bytes streamed from upstreams to clients',
      labelNames: ['upstream', 'direction'],
      registers: [registry],
    });
    this.manifestDecisions = new Counter({
      name: 'sigil_manifest_responses_total',
      help: 'Manifests answered, by upstream, verification result and policy',
      labelNames: ['upstream', 'verification', 'policy'],
      registers: [registry],
    });
    this.verifications = new Counter({
      name: 'sigil_verifications_total',
      help: 'Signature verifications computed (not cache hits), by outcome and policy',
      labelNames: ['outcome', 'policy'],
      registers: [registry],
    });
    this.verificationDuration = new Histogram({
      name: 'sigil_verification_duration_seconds',
      help: 'Time to find and verify the signatures of one manifest',
      labelNames: ['outcome'],
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    });
    this.staleResponses = new Counter({
      name: 'sigil_stale_responses_total',
      help: 'Answers served from the content store because the upstream failed (stale-if-error)',
      labelNames: ['upstream'],
      registers: [registry],
    });
    this.storeDamaged = new Counter({
      name: 'sigil_store_damaged_objects_total',
      help: 'Content store objects whose bytes did not hash to their digest when read (removed, never served complete)',
      registers: [registry],
    });
    this.storeFaults = new Counter({
      name: 'sigil_store_faults_total',
      help: 'Content store file operations that failed (disk full, read-only, directory removed, I/O error), by operation (read, write) and error code',
      labelNames: ['op', 'code'],
      registers: [registry],
    });
    this.verdictCache = new Counter({
      name: 'sigil_verdict_cache_total',
      help: 'Verdict cache lookups, by result (hit or miss)',
      labelNames: ['result'],
      registers: [registry],
    });
    this.configReloads = new Counter({
      name: 'sigil_config_reloads_total',
      help: 'Config reloads (SIGHUP or a changed file), by result: success, or failure (refused; the running config keeps serving)',
      labelNames: ['result'],
      registers: [registry],
    });
    // Both results exist from the start, so that rate() and alerts see a first failure.
    for (const result of ['success', 'failure']) this.configReloads.inc({ result }, 0);
    this.configLastReloadSuccess = new Gauge({
      name: 'sigil_config_last_reload_success_timestamp_seconds',
      help: 'When the config now serving was loaded (at start or by the last successful reload), seconds since the epoch',
      registers: [registry],
    });
    this.configLastReloadSuccessful = new Gauge({
      name: 'sigil_config_last_reload_successful',
      help: '1 when the last config load or reload succeeded, 0 when the last reload was refused',
      registers: [registry],
    });
    this.storeLookups = new Counter({
      name: 'sigil_store_lookups_total',
      help: 'Content store lookups on the serving path, by kind (manifest by digest, blob) and result (hit: served from the store; miss: asked below)',
      labelNames: ['kind', 'result'],
      registers: [registry],
    });
    this.storeFilled = new Counter({
      name: 'sigil_store_fill_bytes_total',
      help: 'Bytes written into the content store (objects committed after their digest matched)',
      registers: [registry],
    });
    this.storeEvictions = new Counter({
      name: 'sigil_store_evictions_total',
      help: 'Objects evicted from the content store, least recently used first, to stay within cache.store.maxBytes',
      registers: [registry],
    });
    this.storeEvictedBytes = new Counter({
      name: 'sigil_store_evicted_bytes_total',
      help: 'Bytes of the objects evicted from the content store',
      registers: [registry],
    });
    this.sharedUnavailable = new Counter({
      name: 'sigil_shared_unavailable_total',
      help: 'Times a shared engine (cache.shared: s3, redis) became unavailable (a network error, 5xx or timeout); requests then go on as a single process would',
      labelNames: ['engine'],
      registers: [registry],
    });
    this.sharedUp = new Gauge({
      name: 'sigil_shared_up',
      help: '1 while a shared engine (cache.shared: s3, redis) answers, 0 while it is taken as unavailable',
      labelNames: ['engine'],
      registers: [registry],
    });
    this.sharedReplications = new Counter({
      name: 'sigil_shared_replications_total',
      help: 'Objects and records this process replicated into the shared bucket, by kind (object, record) and result (uploaded, present: the bucket had it, gone: evicted locally first, dropped: the queue was full, failed: the bucket failed or refused)',
      labelNames: ['kind', 'result'],
      registers: [registry],
    });
    this.sharedStoreLookups = new Counter({
      name: 'sigil_shared_store_lookups_total',
      help: 'Shared bucket lookups on the serving path, by kind (manifest by digest, blob) and result (hit, miss, unavailable, mismatch: the bytes did not hash to the digest)',
      labelNames: ['kind', 'result'],
      registers: [registry],
    });
    this.sharedVerdicts = new Counter({
      name: 'sigil_shared_verdicts_total',
      help: 'Shared verdict lookups in Redis on a verdict cache miss, by result: hit, miss, or rejected (its HMAC with cache.shared.peer.token or its key did not check: ignored, verified here)',
      labelNames: ['result'],
      registers: [registry],
    });
    this.blobFlights = new Counter({
      name: 'sigil_shared_blob_flights_total',
      help: 'Blob downloads into the store with cache.shared.peer, by outcome: fetched (this replica took the lease and fetched from the upstream), peer (streamed from the lease holder), alone (Redis unavailable), own (the lease is this replica\'s), bad_mac (the lease value failed its MAC: ignored), peer_failed (the holder gave nothing: fetched from the upstream), taken_over (the holder\'s stream failed mid-way: the rest from the upstream)',
      labelNames: ['upstream', 'outcome'],
      registers: [registry],
    });
  }

  /**
   * Exposes the content store's size and state as gauges, read at each scrape: registered with
   * the first store watched (a sigil without a store exports none of them); a later call swaps
   * the store they read.
   */
  watchStore(store: ObservedStore): void {
    const first = this.#store === undefined;
    this.#store = store;
    if (!first) return;
    const metrics = this; // inside collect(), `this` is the gauge
    const gauge = (name: string, help: string, get: (s: ObservedStore) => number): void => {
      new Gauge({
        name,
        help,
        registers: [this.registry],
        collect() {
          const s = metrics.#store;
          if (s) this.set(get(s));
        },
      });
    };
    gauge('sigil_store_bytes', 'Bytes of the objects in the content store (what this process scanned at start, plus its own writes, minus its removals)', (s) => s.usage().bytes);
    gauge('sigil_store_objects', 'Objects in the content store (as sigil_store_bytes counts them)', (s) => s.usage().objects);
    gauge('sigil_store_max_bytes', 'The content store\'s size limit (cache.store.maxBytes)', (s) => s.maxBytes);
    gauge('sigil_store_writable', '1 while the content store writes; 0 after a file system fault (disk full, read-only, removed) until a retry succeeds', (s) => (s.fault === undefined ? 1 : 0));
  }
}
