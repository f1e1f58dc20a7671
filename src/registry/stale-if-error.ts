import type { Metrics } from '../audit/metrics.js';
import { isSigilError } from '../errors.js';
import { isDigest, type Digest } from '../oci/digest.js';
import type { FetchedManifest, ReferrersAnswer, Registry, TagList } from '../oci/registry.js';
import { Layer } from './layer.js';
import type { StoredRegistry } from './offline.js';
import { staleCovers, type UpstreamBreaker } from './stale-breaker.js';

/** Where the stored answers come from (offline.ts StoredRegistry). */
export type StoredAnswers = Pick<StoredRegistry, 'fetchManifest' | 'listTags' | 'storedReferrers'>;

export interface StaleIfErrorOptions {
  readonly stored: StoredAnswers;
  readonly breaker: UpstreamBreaker;
  readonly metrics: Metrics;
}

/**
 * Stale-if-error: a tag lookup, a tag list or a referrers list whose upstream fails in a way
 * STALE_CODES covers (outage, timeout, 429, 5xx) gets the stored answer instead, marked stale and
 * counted; with nothing stored the upstream's failure is the answer. While the breaker holds the
 * upstream for failing, a request with a stored answer gets it at once without asking (see
 * UpstreamBreaker for the probe that finds out it recovered). A manifest by digest passes: the
 * store read layer below answers it from the store before the upstream is asked.
 */
export class StaleIfError extends Layer {
  readonly #stored: StoredAnswers;
  readonly #breaker: UpstreamBreaker;
  readonly #metrics: Metrics;

  constructor(below: Registry, opts: StaleIfErrorOptions) {
    super(below);
    this.#stored = opts.stored;
    this.#breaker = opts.breaker;
    this.#metrics = opts.metrics;
  }

  override fetchManifest(repository: string, reference: string, opts?: { accept?: string }): Promise<FetchedManifest> {
    if (isDigest(reference)) return this.below.fetchManifest(repository, reference, opts);
    return this.#upstreamOrStored(
      () => this.below.fetchManifest(repository, reference, opts),
      () => this.#stored.fetchManifest(repository, reference),
    );
  }

  override listTags(repository: string, q: { n?: number; last?: string }): Promise<TagList & { upstreamPaginated: boolean }> {
    return this.#upstreamOrStored(
      () => this.below.listTags(repository, q),
      () => this.#stored.listTags(repository),
    );
  }

  override referrers(repository: string, digest: Digest, artifactType?: string): Promise<ReferrersAnswer> {
    return this.#upstreamOrStored(
      () => this.below.referrers(repository, digest, artifactType),
      () => this.#stored.storedReferrers(repository, digest),
    );
  }

  /**
   * `ask()`, and the stored answer if it fails in a way stale-if-error covers — unless the
   * upstream is treated as failing and the store has the answer: then that at once, without
   * asking. With nothing stored the upstream is asked anyway. Once the interval is over, one
   * request at a time asks the upstream whatever is stored (the probe): its answer closes the
   * breaker, its failure starts the interval again.
   */
  async #upstreamOrStored<T>(ask: () => Promise<T>, stored: () => Promise<T>): Promise<T> {
    const turn = this.#breaker.turn();
    if (turn === 'stored') {
      let r: T;
      try {
        r = await stored();
      } catch (miss) {
        if (notStored(miss)) return this.#staleOr(ask, stored); // not stored: the upstream it is
        throw miss;
      }
      this.#metrics.staleResponses.inc({ upstream: this.name });
      return r;
    }
    try {
      return await this.#staleOr(ask, stored);
    } finally {
      if (turn === 'probe') this.#breaker.probed();
    }
  }

  /** `ask()`; the stored answer when it failed in a way stale-if-error covers; else the failure. */
  async #staleOr<T>(ask: () => Promise<T>, stored: () => Promise<T>): Promise<T> {
    try {
      return await ask();
    } catch (e) {
      if (!staleCovers(e)) throw e;
      let r: T;
      try {
        r = await stored();
      } catch (miss) {
        if (notStored(miss)) throw e; // not stored: the upstream's failure is the answer
        throw miss;
      }
      this.#metrics.staleResponses.inc({ upstream: this.name });
      return r;
    }
  }
}

/** The store's "not stored" (MANIFEST_UNKNOWN, BLOB_UNKNOWN, NAME_UNKNOWN). */
function notStored(e: unknown): boolean {
  return isSigilError(e) && /UNKNOWN$/.test(e.code);
}

/** The stale-if-error layer, for compose.ts. */
export const staleIfError =
  (opts: StaleIfErrorOptions) =>
  (below: Registry): Registry =>
    new StaleIfError(below, opts);
