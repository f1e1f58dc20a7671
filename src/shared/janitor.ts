import { hostname } from 'node:os';
import type { Logger } from 'pino';
import type { Metrics } from '../audit/metrics.js';
import type { Digest } from '../oci/digest.js';
import type { Bucket } from './bucket.js';
import type { BucketUse } from './bucket-use.js';
import type { Coordinator, Lease } from './coordinator.js';
import { realTimer, type Timer } from './lease.js';

/**
 * Each process tries a janitor pass this often. A pass lists the whole bucket (one request per
 * 1000 objects), so it is not run per pull; the bucket may outgrow `maxBytes` by what the
 * replicas upload in this long, which is what the low-water mark leaves room for.
 */
export const JANITOR_INTERVAL_MS = 5 * 60_000;

/** The lease whose holder (one process in the cluster at a time) evicts the bucket. */
export const JANITOR_LEASE = 'janitor';

/**
 * The janitor lease lives this long unless renewed: longer than a pass takes (listing 100 000
 * objects is 100 requests, a delete one each), and renewed every third of it meanwhile; a holder
 * that died frees it within this long.
 */
export const JANITOR_LEASE_TTL_MS = 120_000;

/**
 * A pass over `maxBytes` deletes down to this fraction of it, not just below it: the next uploads
 * then fit without a pass each, and the least used tenth goes at once rather than object by object.
 */
export const JANITOR_LOW_WATER = 0.9;

export type PassResult =
  | { readonly kind: 'held'; readonly holder: string } // another process holds the lease: it evicts
  | { readonly kind: 'skipped'; readonly why: 'redis unavailable' | 'bucket unavailable' | 'closed' }
  | {
      readonly kind: 'evicted';
      /** Bytes the bucket held when listed. */
      readonly total: number;
      readonly deleted: number;
      readonly freed: number;
      /** Why the pass stopped before reaching the low-water mark: the lease was lost or taken, the bucket failed, or the janitor closed. */
      readonly stopped?: 'fenced' | 'failed' | 'closed';
    };

export interface JanitorOptions {
  readonly bucket: Pick<Bucket, 'available' | 'list' | 'delete'>;
  readonly coordinator: Pick<Coordinator, 'acquire' | 'stillHolds'>;
  readonly uses: Pick<BucketUse, 'lastUses' | 'forget'>;
  /** cache.shared.s3.maxBytes */
  readonly maxBytes: number;
  readonly logger: Logger;
  readonly metrics?: Metrics | undefined;
  /** Schedules passes (tests fire them by hand); default real timers, unref'd. */
  readonly timer?: Timer | undefined;
  /** Who holds the lease, as other processes see it; default host:pid. */
  readonly holder?: string | undefined;
}

/**
 * Eviction of the shared bucket (`cache.shared.s3.maxBytes`) by one process at a time: every
 * JANITOR_INTERVAL_MS each process tries the lease JANITOR_LEASE; its holder lists the bucket
 * (about 200 bytes of memory per object for the pass) and, when the objects' total exceeds
 * `maxBytes`, deletes the least recently used first (their last use served from the bucket, as
 * recorded in Redis by BucketUse, else when they were uploaded) down to JANITOR_LOW_WATER of it.
 * Before each delete the lease is re-checked in Redis (its value and fencing counter): a holder
 * that was paused while its lease lapsed and another took it deletes nothing more. The records
 * binding a deleted object to its repositories stay: the shared-store and redirect layers take
 * a record without its object as absent, and the record is rewritten when the object returns.
 * Redis or the bucket unavailable: the pass is skipped (logged once per cause), never thrown;
 * nothing is deleted without the lease.
 */
export class Janitor {
  readonly #o: JanitorOptions;
  readonly #timer: Timer;
  readonly #holder: string;
  readonly #log: Logger;
  #cancel: (() => void) | undefined;
  #running: Promise<unknown> | undefined;
  #skipping: string | undefined;
  #closed = false;

  constructor(opts: JanitorOptions) {
    if (!Number.isSafeInteger(opts.maxBytes) || opts.maxBytes <= 0) throw new RangeError(`janitor maxBytes must be a positive byte count, got ${opts.maxBytes}`);
    this.#o = opts;
    this.#timer = opts.timer ?? realTimer;
    this.#holder = opts.holder ?? `${hostname()}:${process.pid}`;
    this.#log = opts.logger.child({ janitor: JANITOR_LEASE, maxBytes: opts.maxBytes });
    this.#o.metrics?.sharedEvictedBytes.inc(0);
  }

  /** Schedules a pass every JANITOR_INTERVAL_MS (the first one interval from now). */
  start(): void {
    if (this.#closed || this.#cancel) return;
    this.#cancel = this.#timer(JANITOR_INTERVAL_MS, () => {
      this.#cancel = undefined;
      this.#running = this.pass()
        .catch((err: unknown) => this.#log.error({ err }, 'bucket janitor: pass failed'))
        .finally(() => {
          this.#running = undefined;
          this.start();
        });
    });
  }

  /** One pass: the lease, then eviction if the bucket is over `maxBytes`. Never throws for Redis or the bucket. */
  async pass(): Promise<PassResult> {
    if (this.#closed) return { kind: 'skipped', why: 'closed' };
    const got = await this.#o.coordinator.acquire(JANITOR_LEASE, this.#holder, JANITOR_LEASE_TTL_MS);
    if (got.kind === 'unavailable') return this.#skip('redis unavailable');
    if (got.kind === 'held') return got;
    try {
      return await this.#evict(got.lease);
    } finally {
      await got.lease.release();
    }
  }

  /** Stops scheduling; a pass under way stops before its next delete and gives the lease back. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#cancel?.();
    this.#cancel = undefined;
    await this.#running;
  }

  async #evict(lease: Lease): Promise<PassResult> {
    const objects = await this.#list();
    if (objects === undefined) return this.#skip('bucket unavailable');
    const total = objects.reduce((n, o) => n + o.size, 0);
    if (total <= this.#o.maxBytes) return this.#done({ kind: 'evicted', total, deleted: 0, freed: 0 });
    const uses = await this.#o.uses.lastUses(objects.map((o) => o.digest));
    if (uses === undefined) return this.#skip('redis unavailable');
    // Least recently used first: the later of its recorded last use and its upload.
    const order = objects
      .map((o) => ({ ...o, used: Math.max(o.lastModified, uses.get(o.digest) ?? 0) }))
      .sort((a, b) => a.used - b.used || (a.digest < b.digest ? -1 : 1));
    const target = Math.floor(this.#o.maxBytes * JANITOR_LOW_WATER);
    let left = total;
    let deleted = 0;
    let freed = 0;
    const stop = (stopped: 'fenced' | 'failed' | 'closed'): PassResult => ({ kind: 'evicted', total, deleted, freed, stopped });
    for (const o of order) {
      if (left <= target) break;
      if (this.#closed) return stop('closed');
      if (!(await this.#stillHolds(lease))) {
        this.#o.metrics?.sharedEvictions.inc({ result: 'fenced' });
        this.#log.warn({ fence: lease.fence, deleted, freed }, 'bucket janitor: the lease is no longer ours, stopping at once');
        return stop('fenced');
      }
      if (!(await this.#o.bucket.delete(o.digest))) {
        this.#o.metrics?.sharedEvictions.inc({ result: 'failed' });
        this.#skip('bucket unavailable');
        return stop('failed');
      }
      this.#o.metrics?.sharedEvictions.inc({ result: 'deleted' });
      this.#o.metrics?.sharedEvictedBytes.inc(o.size);
      left -= o.size;
      deleted++;
      freed += o.size;
      await this.#o.uses.forget(o.digest);
    }
    this.#log.info({ total, deleted, freed, left }, 'bucket janitor: evicted the least recently used objects');
    return this.#done({ kind: 'evicted', total, deleted, freed });
  }

  /** Still ours as Redis sees it now (a lost signal, a lapsed or taken lease, Redis not answering: no). */
  async #stillHolds(lease: Lease): Promise<boolean> {
    return !lease.signal.aborted && (await this.#o.coordinator.stillHolds(lease)) === true;
  }

  /** Every object in the bucket; undefined when it is unavailable or fails meanwhile. */
  async #list(): Promise<Array<{ digest: Digest; size: number; lastModified: number }> | undefined> {
    if (!this.#o.bucket.available) return undefined;
    const out: Array<{ digest: Digest; size: number; lastModified: number }> = [];
    try {
      for await (const o of this.#o.bucket.list()) out.push(o);
    } catch {
      return undefined; // the bucket logged and counted the failure
    }
    return out;
  }

  #skip(why: 'redis unavailable' | 'bucket unavailable'): PassResult {
    if (this.#skipping !== why) this.#log.warn({ why }, 'bucket janitor: pass skipped until it answers again; nothing is deleted meanwhile');
    this.#skipping = why;
    return { kind: 'skipped', why };
  }

  #done(r: PassResult): PassResult {
    if (this.#skipping !== undefined) this.#log.info('bucket janitor: passes run again');
    this.#skipping = undefined;
    return r;
  }
}
