import { Counter, Gauge, type Registry } from 'prom-client';

/** What the TUF gauges read at each scrape (trust/tuf-refresher.ts). */
export interface ObservedTuf {
  /** The TUF root.json version of the trusted root in use; null while none was verified. */
  readonly rootVersion: number | null;
  /** Seconds since that trusted root was verified against the repository; null while none was. */
  readonly ageSeconds: number | null;
}

/**
 * The metrics of `trust.tuf`, registered on the app's registry only when it is configured:
 * refreshes by result, and the root version and age in use (+Inf while none was verified, so
 * that an alert on the age fires for a repository that never answered).
 */
export class TufMetrics {
  readonly refreshes: Counter<'result'>;
  #observed: (() => ObservedTuf) | undefined;

  constructor(registry: Registry) {
    this.refreshes = new Counter({
      name: 'sigil_tuf_refreshes_total',
      help: 'Refreshes of the trusted root from the TUF repository (trust.tuf), by result: success, or failure (unreachable, expired or badly signed metadata, a target that does not match; the trust in use stays)',
      labelNames: ['result'],
      registers: [registry],
    });
    // Both results exist from the start, so that rate() and alerts see a first failure.
    for (const result of ['success', 'failure']) this.refreshes.inc({ result }, 0);
    const tuf = this; // inside collect(), `this` is the gauge
    new Gauge({
      name: 'sigil_tuf_root_version',
      help: 'Version of the TUF root.json under which the trusted root in use was verified; 0 while none was (trust.trustedRoot alone)',
      registers: [registry],
      collect() {
        this.set(tuf.#observed?.().rootVersion ?? 0);
      },
    });
    new Gauge({
      name: 'sigil_tuf_root_age_seconds',
      help: 'Seconds since the trusted root in use was last verified against the TUF repository; +Inf while none was',
      registers: [registry],
      collect() {
        this.set(tuf.#observed?.().ageSeconds ?? Infinity);
      },
    });
  }

  /** Sets what the gauges read. */
  observe(read: () => ObservedTuf): void {
    this.#observed = read;
  }
}
