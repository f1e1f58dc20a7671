import type { Logger } from 'pino';
import type { Metrics } from '../audit/metrics.js';
import type { ServerConfig, SharedConfig, SharedPeerConfig } from '../config/types.js';
import type { Catalog } from '../store/catalog.js';
import type { ContentStore } from '../store/content-store.js';
import { Bucket } from './bucket.js';
import { Coordinator } from './coordinator.js';
import { PeerClient } from './peer-client.js';
import { PeerServer } from './peer-server.js';
import { Replicator } from './replicator.js';

/**
 * What `cache.shared` opens once per process (a reload keeps it: reload/fixed-settings.ts): the
 * bucket and what replicates the local store into it, the Redis coordinator, the peer listener
 * (listening once this resolves) and the client of the other processes' listeners. The registry stack
 * (registry/compose.ts) and the gate read their parts from here.
 */
export interface SharedCache {
  readonly bucket?: Bucket | undefined;
  /** cache.shared.s3.redirect: warm whole-blob GETs the bucket holds answered with a 307. */
  readonly redirect: boolean;
  readonly coordinator?: Coordinator | undefined;
  /** cache.shared.peer.token: seals what is shared through Redis (tags, verdicts, lease holders). */
  readonly token?: string | undefined;
  /** cache.shared.peer (with redis): this process's advertised address, and the client of the others' peer listeners. */
  readonly peer?: { readonly config: SharedPeerConfig; readonly client: PeerClient } | undefined;
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

/**
 * Opens the shared parts `cfg` names. Nothing is contacted offline: callers pass no config then.
 * Throws, naming the setting, when the peer listener cannot listen (what was opened is closed).
 */
export async function openSharedCache(cfg: SharedConfig, deps: SharedCacheDeps): Promise<SharedCache> {
  const { logger, metrics, store } = deps;
  const bucket = cfg.s3 && new Bucket(cfg.s3, { logger, metrics });
  const replicator = bucket && new Replicator({ bucket, content: store.content, catalog: store.catalog, logger, metrics });
  const coordinator = cfg.redis && Coordinator.connect({ url: cfg.redis.url, logger, metrics });
  const server = cfg.peer && new PeerServer({ peer: cfg.peer, tls: deps.tls, content: store.content, logger });
  const client = cfg.peer && new PeerClient({ token: cfg.peer.token, ca: cfg.peer.ca });
  const close = async (): Promise<void> => {
    await server?.close();
    await client?.close();
    await replicator?.close();
    bucket?.close();
    await coordinator?.close();
  };
  if (server && cfg.peer) {
    const { host, port } = cfg.peer.listen;
    try {
      await server.listen();
    } catch (err) {
      await close();
      throw new Error(`cache.shared.peer.listen: cannot listen on ${host.includes(':') ? `[${host}]` : host}:${port}: ${(err as Error).message}`, { cause: err });
    }
  }
  return {
    bucket,
    redirect: cfg.s3?.redirect === true,
    coordinator,
    token: cfg.peer?.token,
    peer: cfg.peer && client ? { config: cfg.peer, client } : undefined,
    close,
  };
}
