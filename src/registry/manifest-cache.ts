import { LRUCache } from 'lru-cache';
import { isSigilError } from '../errors.js';
import { isDigest, type Digest } from '../oci/digest.js';
import type { FetchedManifest, Registry } from '../oci/registry.js';
import { Layer, cacheClock } from './layer.js';

export interface ManifestCacheOptions {
  /** cache.manifests.maxBytes: the bytes of the manifests held. */
  readonly maxBytes: number;
  /** The cache's clock (tests inject one); default performance.now. */
  readonly now?: () => number;
}

/**
 * Manifests in memory by digest (content-addressed: a held copy never goes stale), per Accept.
 * A tag is resolved with a HEAD and then fetched by digest, so that a manifest held already is
 * not downloaded again when its tag is looked up again; an upstream whose HEAD names no digest
 * (or whose tag moved between the HEAD and the GET) is asked by tag.
 */
export class ManifestCache extends Layer {
  readonly #manifests: LRUCache<string, FetchedManifest>;

  constructor(below: Registry, opts: ManifestCacheOptions) {
    super(below);
    this.#manifests = new LRUCache({
      maxSize: opts.maxBytes,
      sizeCalculation: (m) => Math.max(1, m.bytes.length),
      ...cacheClock(opts.now),
    });
  }

  override async fetchManifest(repository: string, reference: string, opts: { accept?: string } = {}): Promise<FetchedManifest> {
    if (isDigest(reference)) return this.#byDigest(repository, reference, opts.accept);
    const resolved = await this.below.resolveTag(repository, reference, opts);
    if (resolved === null) return this.#remembered(repository, opts.accept, await this.below.fetchManifest(repository, reference, opts));
    try {
      return await this.#byDigest(repository, resolved.digest, opts.accept);
    } catch (e) {
      // The tag moved between the HEAD and the GET (or the upstream serves tags only): GET by tag.
      if (!isSigilError(e) || e.code !== 'MANIFEST_UNKNOWN') throw e;
      return this.#remembered(repository, opts.accept, await this.below.fetchManifest(repository, reference, opts));
    }
  }

  async #byDigest(repository: string, digest: Digest, accept: string | undefined): Promise<FetchedManifest> {
    const hit = this.#manifests.get(key(repository, digest, accept));
    if (hit) return hit;
    return this.#remembered(repository, accept, await this.below.fetchManifest(repository, digest, { accept }));
  }

  #remembered(repository: string, accept: string | undefined, m: FetchedManifest): FetchedManifest {
    // A stale answer (the store's, the upstream failing) is served, not held: the next request asks again.
    if (!m.stale) this.#manifests.set(key(repository, m.digest, accept), m);
    return m;
  }
}

function key(repository: string, digest: Digest, accept: string | undefined): string {
  return `${repository}@${digest}\0${accept ?? ''}`;
}

/** The manifest cache layer, for compose.ts. */
export const manifestCache =
  (opts: ManifestCacheOptions) =>
  (below: Registry): Registry =>
    new ManifestCache(below, opts);
