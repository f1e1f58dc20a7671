import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

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

  constructor(opts: { defaultMetrics?: boolean } = {}) {
    const registry = new Registry();
    this.registry = registry;
    if (opts.defaultMetrics ?? true) collectDefaultMetrics({ register: registry, prefix: 'sigil_process_' });
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
  }
}
