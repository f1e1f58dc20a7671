import type { Logger } from 'pino';
import type { Metrics } from '../audit/metrics.js';
import type { CacheConfig, Config, UpstreamConfig } from '../config/types.js';
import type { HashPool } from '../hash/hash-pool.js';
import type { Registry } from '../oci/registry.js';
import { UpstreamClient } from '../upstream/client.js';
import type { Timeouts } from '../upstream/limits.js';
import { StoreAdmission } from './admission.js';
import { StoreKeeper } from './keep.js';
import { stack } from './layer.js';
import { manifestCache } from './manifest-cache.js';
import { StoredRegistry, type StoreParts } from './offline.js';
import { UpstreamBreaker } from './stale-breaker.js';
import { staleDeadline, type Timer } from './stale-deadline.js';
import { staleIfError } from './stale-if-error.js';
import { storeRead } from './store-read.js';
import { tagCache } from './tag-cache.js';
import { writeThrough } from './write-through.js';
import type { SharedCache } from '../shared/shared-cache.js';
import { clusterFlight } from './cluster-flight.js';
import { sharedManifests } from './shared-manifests.js';
import { sharedRedirect } from './shared-redirect.js';
import { sharedStore } from './shared-store.js';
import { sharedTags } from './shared-tags.js';

/** What the layers are built with. */
export interface StackDeps {
  readonly metrics: Metrics;
  readonly logger: Logger;
  /** Hash workers for blob digests (the upstream client's checks, reads behind a download). */
  readonly hashes?: HashPool | undefined;
  readonly timeouts?: Partial<Timeouts> | undefined;
  /** Clock of the memory caches, the stale-if-error breaker, the admission and the keeper (tests); default the real clocks. */
  readonly now?: (() => number) | undefined;
  /** Stale-if-error's deadline and timer (tests); default STALE_DEADLINE_MS on real timers. */
  readonly staleDeadlineMs?: number | undefined;
  readonly timer?: Timer | undefined;
  /** cache.shared (with a store, never offline): the bucket, Redis and peers (shared/shared-cache.ts). */
  readonly shared?: SharedCache | undefined;
}

/** The content store, with what decides which blobs go into it. */
export interface StackStore extends StoreParts {
  readonly admission: StoreAdmission;
}

/**
 * One upstream's registry for `sigil serve`: `up` (the upstream client) with the layers in front
 * of it, bottom first — each layer's requests go to the one before it in this list. Without a
 * store, only the memory caches; stale-if-error (its deadline, its stored answers) only with a
 * store and `staleIfError` on the upstream. A new layer is a new file and one line here.
 */
export function serveRegistry(up: Registry, u: Pick<UpstreamConfig, 'staleIfError'>, cache: Pick<CacheConfig, 'tags' | 'manifests'>, deps: StackDeps, store?: StackStore): Registry {
  const { metrics, logger, hashes, now } = deps;
  const stale = store && u.staleIfError ? { breaker: new UpstreamBreaker({ now: now ?? (() => performance.now()) }), stored: new StoredRegistry(up.name, store) } : undefined;
  const shared = store ? deps.shared : undefined;
  const [bucket, coordinator, token, peer] = [shared?.bucket, shared?.coordinator, shared?.token, shared?.peer];
  return stack(
    up, //                                                                            undici, token flow, size caps, digest checks
    store && coordinator && peer && clusterFlight({ leases: coordinator, peers: peer.client, peer: peer.config, content: store.content, logger, metrics }), // blob downloads: one upstream fetch across processes, the others stream from its peer listener
    coordinator && sharedManifests({ coordinator, logger }), //                       manifests by digest: one upstream fetch across processes
    bucket && sharedStore({ bucket, logger, metrics, hashes, onServe: shared?.bucketUsed }), //                   manifests by digest and blobs from the shared bucket, for repositories it holds them for
    store && writeThrough({ store, admission: store.admission, logger, hashes }), // admitted blobs into the store, one download each
    bucket && shared?.redirect === true && sharedRedirect({ bucket, metrics, onServe: shared?.bucketUsed }), //            cache.shared.s3.redirect: a blob the bucket holds, as a 307 to a presigned URL
    stale && staleDeadline({ breaker: stale.breaker, logger, deadlineMs: deps.staleDeadlineMs, timer: deps.timer }), // metadata answers within STALE_DEADLINE_MS
    store && storeRead(store, metrics), //                                            manifests by digest and blobs from the store
    manifestCache({ maxBytes: cache.manifests.maxBytes, now }), //                   manifests by digest in memory; tags resolved with a HEAD
    stale && staleIfError({ ...stale, metrics }), //                                  the stored answer while the upstream fails
    coordinator && token !== undefined && sharedTags({ coordinator, ttlMs: cache.tags.ttlMs, staleIfError: u.staleIfError, token, metrics }), // tag answers shared across processes (sealed with the peer token: none without one)
    tagCache({ ttlMs: cache.tags.ttlMs, now }), //                                    tag → digest for cache.tags.ttl
  );
}

/** The client of one configured upstream: the bottom of its stack. */
export function upstreamClient(u: UpstreamConfig, deps: StackDeps): Registry {
  return new UpstreamClient(u, { metrics: deps.metrics, logger: deps.logger, timeouts: deps.timeouts, hashes: deps.hashes });
}

/** `sigil serve --offline` and `sigil mirror --import`: the store alone, nothing contacted. */
export function storeOnly(name: string, store: StoreParts): Registry {
  return new StoredRegistry(name, store);
}

/** `sigil mirror`: straight to the upstream (no tag cache, no stale answers from the store being filled). */
export function mirrorRegistry(u: UpstreamConfig, deps: StackDeps): Registry {
  return upstreamClient(u, deps);
}

/** serve's registries, one per upstream, and — with a content store — its keeper. */
export interface ServeStack {
  readonly registries: Map<string, Registry>;
  /**
   * What the gate keeps through (manifests, tags, signature data — recorded per verification
   * through `keeper.record(registry)`, recording.ts — and verdicts).
   */
  readonly keeper?: StoreKeeper;
}

/**
 * The registries `sigil serve` reads through, for a config. With a store, one admission rule is
 * given to every upstream's write-through layer and to the keeper. Offline, each upstream is the
 * store alone.
 */
export function composeServe(config: Config, deps: StackDeps & { readonly offline: boolean; readonly store?: StoreParts | undefined }): ServeStack {
  const admission = deps.store && new StoreAdmission(config.policies, { ttlMs: config.cache.verifications.ttlMs, now: deps.now });
  const store = deps.store && admission && { ...deps.store, admission };
  const registries = new Map<string, Registry>();
  for (const u of config.upstreams) {
    registries.set(u.name, deps.offline && store ? storeOnly(u.name, store) : serveRegistry(upstreamClient(u, deps), u, config.cache, deps, store));
  }
  const keeper = store && new StoreKeeper(store, store.admission, deps.logger, deps.now);
  return keeper ? { registries, keeper } : { registries };
}
