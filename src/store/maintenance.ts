import type { Logger } from 'pino';
import type { Metrics } from '../audit/metrics.js';
import type { Digest } from '../oci/digest.js';
import { evictLru, pruneOlderThan } from './eviction.js';
import type { EvictResult } from './eviction.js';
import { isErrno } from './layout.js';
import type { Layout } from './layout.js';
import { SCAN_CONCURRENCY } from './limits.js';
import type { MetaStore, MetaSweepResult } from './meta.js';
import type { ObjectIndex } from './object-index.js';
import { SweepSchedule } from './sweeps.js';

export interface MaintenanceOptions {
  readonly layout: Layout;
  readonly index: ObjectIndex;
  readonly meta: MetaStore;
  readonly maxBytes: number;
  readonly now: () => number;
  readonly logger: Logger | undefined;
  /** Is the object on disk now (a stat, not the index)? */
  readonly onDisk: (digest: Digest) => Promise<boolean>;
  readonly closed: () => boolean;
  /** Where evictions are counted. */
  readonly metrics?: Metrics;
}

/**
 * The content store's upkeep, in the background of reads and writes: eviction down to maxBytes
 * after writes, pruning, metadata sweeps after removals (sweeps.ts), and the check of the index
 * after a fault. Evictions, prunes and sweep batches run one at a time, in turn; background work
 * is tracked so that `idle` and `close` can wait for it, and its failures are logged.
 */
export class Maintenance {
  readonly #o: MaintenanceOptions;
  readonly sweeps: SweepSchedule;
  readonly #background = new Set<Promise<unknown>>();
  #chain: Promise<unknown> = Promise.resolve();

  constructor(opts: MaintenanceOptions) {
    this.#o = opts;
    this.sweeps = new SweepSchedule({
      meta: opts.meta,
      now: opts.now,
      logger: opts.logger,
      stored: (d) => opts.onDisk(d),
      serial: (fn) => this.serial(fn),
      closed: opts.closed,
    });
  }

  /** Evicts least-recently-used objects until bytes ≤ maxBytes. */
  evict(): Promise<EvictResult> {
    const { layout, index, maxBytes } = this.#o;
    return this.serial(() => evictLru(layout, index, maxBytes)).then((r) => {
      this.#o.metrics?.storeEvictions.inc(r.removed);
      this.#o.metrics?.storeEvictedBytes.inc(r.freedBytes);
      return this.#afterRemoval(r);
    });
  }

  /** Removes objects unused for `olderThanMs`, then LRU ones down to `maxBytes`. */
  prune(opts: { olderThanMs?: number; maxBytes?: number }): Promise<EvictResult> {
    const { layout, index, now } = this.#o;
    return this.serial(async () => {
      const aged = opts.olderThanMs !== undefined ? await pruneOlderThan(layout, index, now() - opts.olderThanMs) : { removed: 0, freedBytes: 0 };
      const sized = opts.maxBytes !== undefined ? await evictLru(layout, index, opts.maxBytes) : { removed: 0, freedBytes: 0 };
      return { removed: aged.removed + sized.removed, freedBytes: aged.freedBytes + sized.freedBytes };
    }).then((r) => this.#afterRemoval(r));
  }

  /** An object was added: evict when over maxBytes, else sweep when one is owed. */
  written(): void {
    if (this.#o.closed()) return;
    if (this.#o.index.bytes > this.#o.maxBytes) this.track(this.evict(), 'evicting');
    else this.#maybeSweep();
  }

  /** After a fault: drops index entries whose files are gone (the directory was removed, say). */
  async reconcile(): Promise<void> {
    const { index, onDisk } = this.#o;
    const all = index.byLastUsed();
    for (let i = 0; i < all.length; i += SCAN_CONCURRENCY) {
      await Promise.all(
        all.slice(i, i + SCAN_CONCURRENCY).map(async ({ digest }) => {
          if (!(await onDisk(digest))) index.delete(digest);
        }),
      );
    }
  }

  /** Runs `fn` after the maintenance already queued (one eviction, prune or sweep batch at a time). */
  serial<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.#chain.then(fn);
    this.#chain = p.catch(() => {});
    return p;
  }

  /** Background work: waited for by `idle`, its failure logged (a file gone meanwhile is not a failure). */
  track(p: Promise<unknown>, what: string): void {
    const tracked = p.catch((err: unknown) => {
      if (!isErrno(err, 'ENOENT')) this.#o.logger?.warn({ err }, `content store: ${what} failed`);
    });
    this.#background.add(tracked);
    void tracked.finally(() => this.#background.delete(tracked));
  }

  /** Resolves once background work (evictions, metadata sweeps, last-use updates) has finished. */
  async idle(): Promise<void> {
    for (;;) {
      const chain = this.#chain;
      const sweeps = this.sweeps.tail;
      await Promise.allSettled([chain, sweeps, ...this.#background]);
      if (chain === this.#chain && sweeps === this.sweeps.tail && this.#background.size === 0) return;
    }
  }

  #afterRemoval(r: EvictResult): EvictResult {
    if (r.removed > 0) this.sweeps.owe();
    this.#maybeSweep();
    return r;
  }

  #maybeSweep(): void {
    const due = this.sweeps.due();
    if (due) this.track(due, 'sweeping metadata');
  }
}

export type { EvictResult, MetaSweepResult };
