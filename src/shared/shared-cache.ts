import type { Logger } from 'pino';
import type { Metrics } from '../audit/metrics.js';
import type { ServerConfig, SharedConfig } from '../config/types.js';
import type { Catalog } from '../store/catalog.js';
import type { ContentStore } from '../store/content-store.js';
import { Bucket } from './bucket.js';
import { Coordinator } from './coordinator.js';
import { Replicator } from './replicator.js';

/**
 * What `cache.shared` opens once per process (a reload keeps it: reload/fixed-settings.ts): the
 * bucket and what replicates the local store into it, the Redis coordinator. The registry stack
 * (registry/compose.ts) and the gate read their parts from here.
 */
export interface SharedCache {
  readonly bucket?: Bucket | undefined;
  /** cache.shared.s3.redirect: warm whole-blob GETs the bucket holds answered with a 307. */
  readonly redirect: boolean;
  readonly coordinator?: Coordinator | undefined;
  /** cache.shared.peer.token: seals what is shared through Redis (tags, verdicts, lease holders). */
  readonly token?: string | undefined;
  /** Stops replicating (what is queued is dropped: the local store keeps it) and closes the connections. */
  close(): Promise<void>;
}

export interface SharedCacheDeps {
  readonly logger: Logger;
  readonly metrics: Metrics;
  /** The local store (cache.shared needs cache.store: the config refuses it without). */
  readonly store: { readonly content: ContentStore; readonly catalog: Catalog };
  readonly tls?: ServerConfig['tls'] | undefined;
}

/** Opens the shared parts `cfg` names. Nothing is contacted offline: callers pass no config then. */
export async function openSharedCache(cfg: SharedConfig, deps: SharedCacheDeps): Promise<SharedCache> {
  const { logger, metrics, store } = deps;
  const bucket = cfg.s3 && new Bucket(cfg.s3, { logger, metrics });
  const replicator = bucket && new Replicator({ bucket, content: store.content, catalog: store.catalog, logger, metrics });
  const coordinator = cfg.redis && Coordinator.connect({ url: cfg.redis.url, logger, metrics });
  return {
    bucket,
    redirect: cfg.s3?.redirect === true,
    coordinator,
    token: cfg.peer?.token,
    async close() {
      await replicator?.close();
      bucket?.close();
      await coordinator?.close();
    },
  };
}
