import type { Metrics } from '../audit/metrics.js';
import { isDigest, type Digest } from '../oci/digest.js';
import type { BlobRequest, BlobResponse, FetchedManifest, Registry } from '../oci/registry.js';
import type { Catalog } from '../store/catalog.js';
import { Layer } from './layer.js';
import { StoredRegistry, type StoreParts } from './offline.js';

/**
 * Store read: a manifest by digest and a blob come from the content store when it holds them for
 * the repository, else from below. Nothing stored is answered for a tag here (tags move: the
 * upstream says where they point; the stored tag is stale-if-error's answer). A blob request
 * marked `skipStore` (a stored blob no passing manifest names) goes below untouched. Each lookup
 * is counted as a hit or a miss (sigil_store_lookups_total).
 */
export class StoreRead extends Layer {
  readonly #catalog: Catalog;
  readonly #stored: StoredRegistry;
  readonly #metrics: Metrics | undefined;

  constructor(below: Registry, store: StoreParts, metrics?: Metrics) {
    super(below);
    this.#catalog = store.catalog;
    this.#stored = new StoredRegistry(below.name, store);
    this.#metrics = metrics;
  }

  override async fetchManifest(repository: string, reference: string, opts?: { accept?: string }): Promise<FetchedManifest> {
    if (!isDigest(reference)) return this.below.fetchManifest(repository, reference, opts);
    const stored = await this.#catalog.getManifest(this.name, repository, reference);
    this.#metrics?.storeLookups.inc({ kind: 'manifest', result: stored ? 'hit' : 'miss' });
    // Content-addressed: a stored copy is as good as the upstream's (not stale).
    if (stored) return { bytes: stored.bytes, digest: reference, mediaType: stored.mediaType };
    return this.below.fetchManifest(repository, reference, opts);
  }

  override async openBlob(repository: string, digest: Digest, req: BlobRequest): Promise<BlobResponse> {
    if (req.skipStore) return this.below.openBlob(repository, digest, req);
    const stored = await this.#stored.storedBlob(repository, digest, req);
    this.#metrics?.storeLookups.inc({ kind: 'blob', result: stored ? 'hit' : 'miss' });
    return stored ?? this.below.openBlob(repository, digest, req);
  }
}

/** The store read layer, for compose.ts. */
export const storeRead =
  (store: StoreParts, metrics?: Metrics) =>
  (below: Registry): Registry =>
    new StoreRead(below, store, metrics);
