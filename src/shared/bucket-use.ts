import type { Digest } from '../oci/digest.js';
import type { Coordinator } from './coordinator.js';

/** The Redis sorted set of the bucket's objects by their last use (ms since the epoch), read by the janitor. */
export const BUCKET_USE_SET = 'bucket-use';

/**
 * A process records an object's use at most once per this interval: eviction only needs to know
 * which objects went unused longest (hours, days), and a hot object served a thousand times a
 * minute costs one Redis write a minute, not one per pull.
 */
export const BUCKET_USE_WRITE_MS = 60_000;

/**
 * Objects whose last write time is remembered at once: past it the memory is emptied (at worst
 * each object is written once more), so a process serving a huge bucket holds a bounded map.
 */
export const BUCKET_USE_MEMO_MAX = 10_000;

export interface BucketUseOptions {
  readonly coordinator: Pick<Coordinator, 'touch' | 'scores' | 'forget'>;
  /** Wall clock (ms since the epoch), comparable with an object's LastModified; default Date.now. */
  readonly clock?: (() => number) | undefined;
}

/**
 * When the bucket's objects were last used, kept in Redis (BUCKET_USE_SET) across processes:
 * `used` is called where an object is served from the bucket and writes its time at most once
 * per BUCKET_USE_WRITE_MS per object (in the background: a pull never waits on it, and a Redis
 * that is down loses the mark, nothing else); the janitor reads them (`lastUses`) and forgets an
 * object it deleted.
 */
export class BucketUse {
  readonly #o: BucketUseOptions;
  readonly #clock: () => number;
  /** Digest → when this process last wrote its use. */
  readonly #written = new Map<Digest, number>();

  constructor(opts: BucketUseOptions) {
    this.#o = opts;
    this.#clock = opts.clock ?? Date.now;
  }

  /** Marks `digest` used now (throttled, fire and forget). */
  used(digest: Digest): void {
    const now = this.#clock();
    const last = this.#written.get(digest);
    if (last !== undefined && now - last < BUCKET_USE_WRITE_MS) return;
    if (this.#written.size >= BUCKET_USE_MEMO_MAX) this.#written.clear();
    this.#written.set(digest, now);
    void this.#o.coordinator.touch(BUCKET_USE_SET, digest, now).then((ok) => {
      if (!ok) this.#written.delete(digest); // not written: the next use tries again
    });
  }

  /** The recorded last use of each of `digests` (absent: none recorded); undefined when Redis is unavailable. */
  async lastUses(digests: readonly Digest[]): Promise<Map<Digest, number> | undefined> {
    const scores = await this.#o.coordinator.scores(BUCKET_USE_SET, digests);
    if (scores === undefined) return undefined;
    const out = new Map<Digest, number>();
    digests.forEach((d, i) => {
      const s = scores[i];
      if (s !== null && s !== undefined && Number.isFinite(s)) out.set(d, s);
    });
    return out;
  }

  /** Drops a deleted object's mark (best effort). */
  async forget(digest: Digest): Promise<void> {
    this.#written.delete(digest);
    await this.#o.coordinator.forget(BUCKET_USE_SET, digest);
  }
}
