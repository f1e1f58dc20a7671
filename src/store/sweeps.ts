import type { Logger } from 'pino';
import type { Digest } from '../oci/digest.js';
import { CATALOG_NAMESPACES, catalogSubject } from './catalog-keys.js';
import { META_SWEEP_MIN_INTERVAL_MS } from './limits.js';
import type { MetaStore, MetaSweepResult } from './meta.js';

/** What the sweep schedule needs of its store. */
export interface SweepHost {
  readonly meta: MetaStore;
  readonly now: () => number;
  readonly logger: Logger | undefined;
  /** Is the object on disk now? */
  stored(digest: Digest): Promise<boolean>;
  /** Runs `fn` in turn with the store's other maintenance (eviction). */
  serial<T>(fn: () => Promise<T>): Promise<T>;
  closed(): boolean;
}

/**
 * When the content store sweeps the metadata of objects no longer stored: one sweep at
 * a time; a request while one runs queues another, which every request until it starts
 * shares; automatic sweeps only when objects were removed since the last one, and at
 * most every META_SWEEP_MIN_INTERVAL_MS.
 */
export class SweepSchedule {
  readonly #host: SweepHost;
  /** The last sweep asked for (running or queued). */
  #tail: Promise<unknown> = Promise.resolve();
  /** A sweep asked for and not started yet. */
  #queued: Promise<MetaSweepResult> | null = null;
  /** When the last sweep started (store clock). */
  #lastAt: number | undefined;
  /** Objects were removed since the last sweep started: their metadata is still there. */
  #owed = false;
  #started = 0;

  constructor(host: SweepHost) {
    this.#host = host;
  }

  /** Sweeps started so far (a record seen before one may be gone after it). */
  get started(): number {
    return this.#started;
  }

  /** Settles when every sweep asked for so far is over. */
  get tail(): Promise<unknown> {
    return this.#tail;
  }

  /** Objects were removed: their metadata is owed a sweep. */
  owe(): void {
    this.#owed = true;
  }

  request(): Promise<MetaSweepResult> {
    if (this.#queued) return this.#queued;
    const p = this.#tail.then(() => {
      this.#queued = null;
      return this.#run();
    });
    this.#queued = p;
    this.#tail = p.catch(() => {});
    return p;
  }

  /** An owed sweep, unless one is queued or the last began too recently; null when none is due. */
  due(): Promise<MetaSweepResult> | null {
    if (!this.#owed || this.#host.closed() || this.#queued) return null;
    if (this.#lastAt !== undefined && this.#host.now() - this.#lastAt < META_SWEEP_MIN_INTERVAL_MS) return null;
    return this.request();
  }

  async #run(): Promise<MetaSweepResult> {
    const host = this.#host;
    if (host.closed()) return { scanned: 0, removed: 0 }; // queued, then the store closed
    const startedAt = host.now();
    this.#started++;
    this.#lastAt = startedAt;
    this.#owed = false;
    const result = await host.meta.sweep(
      {
        namespaces: CATALOG_NAMESPACES,
        subject: catalogSubject,
        stored: (d) => host.stored(d),
        serial: (fn) => host.serial(fn),
        stopped: () => host.closed(),
      },
      startedAt,
    );
    if (result.removed > 0) host.logger?.info({ scanned: result.scanned, removed: result.removed }, 'content store: removed the metadata of objects no longer stored');
    return result;
  }
}
