import type { Digest } from '../oci/digest.js';
import type { BlobRequest, BlobResponse, FetchedManifest, ReferrersAnswer, Registry, ResolvedTag, TagList } from '../oci/registry.js';

/**
 * A layer of the registry stack: a Registry in front of the one below it. Every request it does
 * not override goes down unchanged, so a layer's file holds only the behaviour it adds (as an
 * undici interceptor wraps only the dispatch it changes).
 */
export abstract class Layer implements Registry {
  readonly name: string;
  protected readonly below: Registry;

  constructor(below: Registry) {
    this.below = below;
    this.name = below.name;
  }

  fetchManifest(repository: string, reference: string, opts?: { accept?: string }): Promise<FetchedManifest> {
    return this.below.fetchManifest(repository, reference, opts);
  }

  resolveTag(repository: string, tag: string, opts?: { accept?: string }): Promise<ResolvedTag | null> {
    return this.below.resolveTag(repository, tag, opts);
  }

  openBlob(repository: string, digest: Digest, req: BlobRequest): Promise<BlobResponse> {
    return this.below.openBlob(repository, digest, req);
  }

  listTags(repository: string, q: { n?: number; last?: string }): Promise<TagList & { upstreamPaginated: boolean }> {
    return this.below.listTags(repository, q);
  }

  referrers(repository: string, digest: Digest, artifactType?: string): Promise<ReferrersAnswer> {
    return this.below.referrers(repository, digest, artifactType);
  }

  ping(): Promise<void> {
    return this.below.ping();
  }

  close(): Promise<void> {
    return this.below.close();
  }
}

/** Puts a layer in front of a registry. */
export type LayerOf = (below: Registry) => Registry;

/**
 * `bottom` with `layers` in front of it, bottom first (each one's requests go to the one before
 * it); a layer given as false, null or undefined is not there (compose.ts: `store && …`).
 */
export function stack(bottom: Registry, ...layers: ReadonlyArray<LayerOf | false | null | undefined>): Registry {
  let r = bottom;
  for (const layer of layers) if (layer) r = layer(r);
  return r;
}

/**
 * lru-cache options for a cache on `now` (tests inject a clock): an injected clock is read on
 * every lookup (lru-cache otherwise reuses a reading for 1 ms of real time); none, performance.now.
 */
export function cacheClock(now: (() => number) | undefined): { perf: { now: () => number }; ttlResolution: number } | Record<string, never> {
  return now ? { perf: { now }, ttlResolution: 0 } : {};
}
