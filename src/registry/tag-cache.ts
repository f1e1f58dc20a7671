import type { LRUCache } from 'lru-cache';
import { lru } from '../lru.js';
import { isDigest, type Digest } from '../oci/digest.js';
import type { FetchedManifest, Registry } from '../oci/registry.js';
import { Layer, cacheClock } from './layer.js';

/** Tags remembered at once (each a short key and a digest). */
export const TAG_CACHE_MAX = 10_000;

export interface TagCacheOptions {
  /** cache.tags.ttl: how long a tag is taken to point where it pointed. */
  readonly ttlMs: number;
  /** The cache's clock (tests inject one); default performance.now. */
  readonly now?: () => number;
}

/**
 * Tag → digest in memory for cache.tags.ttl (per Accept): within it, a tag is fetched by the
 * digest it pointed at (and the layers below answer that from memory or the store), so a pull
 * storm of one tag asks the upstream nothing. A stale answer (the store's, while the upstream
 * fails) is not remembered: the next lookup asks again. The top of the stack: a tag still
 * remembered is answered even while the upstream is held for failing.
 */
export class TagCache extends Layer {
  readonly #tags: LRUCache<string, Digest>;

  constructor(below: Registry, opts: TagCacheOptions) {
    super(below);
    this.#tags = lru(TAG_CACHE_MAX, { ttl: Math.max(1, opts.ttlMs), ...cacheClock(opts.now) });
  }

  override async fetchManifest(repository: string, reference: string, opts: { accept?: string } = {}): Promise<FetchedManifest> {
    if (isDigest(reference)) return this.below.fetchManifest(repository, reference, opts);
    const key = `${repository}:${reference}\0${opts.accept ?? ''}`;
    const known = this.#tags.get(key);
    if (known) return this.below.fetchManifest(repository, known, opts);
    const m = await this.below.fetchManifest(repository, reference, opts);
    if (!m.stale) this.#tags.set(key, m.digest);
    return m;
  }
}

/** The tag cache layer, for compose.ts. */
export const tagCache =
  (opts: TagCacheOptions) =>
  (below: Registry): Registry =>
    new TagCache(below, opts);
