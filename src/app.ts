import { randomUUID } from 'node:crypto';
import type { Server as TlsServer } from 'node:tls';
import Fastify, { LogController, type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { Metrics } from './audit/metrics.js';
import { createLogger } from './audit/logger.js';
import type { LoadResult } from './config/load.js';
import type { Config } from './config/types.js';
import { ManifestGate } from './gate/manifest-gate.js';
import { BasicAuthChecker } from './http/client-auth.js';
import { registerErrorHandling } from './http/errors.js';
import { registerOpsRoutes, storeDegraded, type Readiness } from './http/ops-routes.js';
import { registerV2Routes, type V2Deps } from './http/v2-routes.js';
import type { Registry } from './oci/registry.js';
import { composeServe } from './registry/compose.js';
import type { StoreKeeper } from './registry/keep.js';
import type { Timer } from './registry/stale-deadline.js';
import { Catalog, ContentStore } from './store/index.js';
import type { Timeouts } from './upstream/limits.js';
import { TrustedVerifier } from './gate/sigstore-verifier.js';
import type { SignatureVerifier } from './gate/verifier.js';
import { defaultPublicGoodPath, readTrustedRoots } from './verify/index.js';
import { TrustSource, type TufRootHolder } from './trust/trust-source.js';
import { TufRefresher, type Timer as TufTimer } from './trust/tuf-refresher.js';
import type { FetchTrustedRoot } from './trust/tuf-repository.js';
import { TufMetrics } from './audit/tuf-metrics.js';
import { HashPool } from './hash/hash-pool.js';
import { Generations, type Lease } from './reload/generations.js';
import { Reloader, type ReloadOutcome } from './reload/reloader.js';
import { sharedVerdictsOf } from './gate/shared-verdicts.js';
import type { SharedCache } from './shared/shared-cache.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** Which registry API a /v2/ request hit (manifest, blob, …): the metrics route label. */
    sigilRoute: string | null;
    /** The config generation this request is served by, from its start to its end. */
    sigilGeneration: Lease<ServeGeneration> | null;
  }
  interface FastifyInstance {
    /** The config generation serving new requests, and the reload that replaces it. */
    sigilConfig: ConfigControl;
  }
}

/** A config's trust material, as the gate uses it and /readyz reports it. */
export type LoadedVerifier = SignatureVerifier & { readonly sources: readonly string[] };

/** What one config builds, served together: a request uses one generation from start to end. */
export interface ServeGeneration extends V2Deps {
  readonly verifier: LoadedVerifier;
  /** Closes its upstream clients (once no request uses it any more). */
  close(): Promise<void>;
}

export interface ConfigControl {
  /** The config new requests are served by, and its generation number (1 at start). */
  readonly current: { readonly id: number; readonly config: Config };
  /** Replaced generations still serving requests that started under them (closed after the last). */
  readonly draining: number;
  /** Reloads the config (see reload/reloader.ts); `trigger` is logged. Never rejects. */
  reload(trigger: string): Promise<ReloadOutcome>;
}

/** The parts built from a config: trust, one registry per upstream, the store's keeper. */
export interface ConfigParts {
  readonly clients: ReadonlyMap<string, Registry>;
  readonly verifier: LoadedVerifier;
  readonly keeper?: StoreKeeper;
}

/** A client must not be able to make sigil hold a request open for ever. */
export const REQUEST_TIMEOUT_MS = 0; // blobs may legitimately stream for long; idle sockets are bounded below
/** Sockets idle (no bytes either way) this long are closed. */
export const SOCKET_IDLE_TIMEOUT_MS = 120_000;
/** Largest request header block accepted from clients. */
export const MAX_HEADER_BYTES = 16 * 1024;

export interface AppDeps {
  readonly logger: Logger;
  readonly metrics: Metrics;
  readonly clients: ReadonlyMap<string, Registry>;
  readonly verifier: LoadedVerifier;
  /** With `cache.store`: the store, its catalog and what keeps what the gate lets through. */
  readonly store?: { readonly content: ContentStore; readonly catalog: Catalog; readonly keeper: StoreKeeper };
  readonly offline: boolean;
  readonly timeouts?: Partial<Timeouts>;
  /** Hash workers for blob digests, shared by the upstream clients; closed with the app. */
  readonly hashes: HashPool;
  /** cache.shared (never offline): the bucket, Redis and the peer listener, for every generation; closed with the app. */
  readonly shared?: SharedCache | undefined;
  /** The gate's clock (its verdict lifetimes; tests move it); default performance.now. */
  readonly now?: () => number;
  /** The gate's decision deadline (tests shorten it); default VERIFICATION_DEADLINE_MS. */
  readonly verificationDeadlineMs?: number;
  /**
   * Builds the config's parts again for a reload: new trust, registries and keeper over the same
   * store, hash pool, metrics and logger. Throws (naming the setting) when the config cannot be served.
   */
  readonly rebuild: (config: Config) => ConfigParts;
  /** Reads the config again for a reload (serve: the same lookup and overrides as at start); without it a reload is refused. */
  readonly loadConfig?: () => Promise<LoadResult>;
  /** With `trust.tuf`: what keeps the TUF repository's trusted root fresh (the verifier reads it). */
  readonly tuf?: TufRefresher;
}

export interface DepsOptions {
  logger?: Logger;
  timeouts?: Partial<Timeouts>;
  /** Serve only from the content store; construct no upstream client at all. */
  offline?: boolean;
  /** The content store's clock (tests: its retry after a fault); default Date.now. */
  storeClock?: () => number;
  /** Stale-if-error's deadline and its timer (tests); default STALE_DEADLINE_MS on real timers. */
  staleDeadlineMs?: number;
  staleTimer?: Timer;
  /**
   * The clock of the memory caches (tag TTL), the stale-if-error breaker, the store admission,
   * the keeper and the gate's verdicts (tests move it); default the real clocks.
   */
  now?: () => number;
  /** The gate's decision deadline (tests shorten it); default VERIFICATION_DEADLINE_MS. */
  verificationDeadlineMs?: number;
  /** How a reload reads the config again (AppDeps.loadConfig). */
  loadConfig?: () => Promise<LoadResult>;
  /** trust.tuf's wall clock, refresh timer and fetch (tests); default Date.now, real timers, @sigstore/tuf. */
  tuf?: { now?: () => number; timer?: TufTimer; fetch?: FetchTrustedRoot };
}

/**
 * The collaborators of an app: trust material, the content store when configured, and one
 * registry per upstream as registry/compose.ts builds it (offline: the store alone).
 */
export async function defaultDeps(config: Config, opts: DepsOptions = {}): Promise<AppDeps> {
  const logger = opts.logger ?? createLogger(config.server.logLevel);
  const metrics = new Metrics();
  const offline = opts.offline ?? false;
  const tufConfig = config.trust.tuf;
  const tuf = tufConfig && new TufRefresher({ config: tufConfig, logger, metrics: new TufMetrics(metrics.registry), offline, ...opts.tuf });
  const verifier = trustOf(config, tuf);
  const hashes = new HashPool({ logger });
  let parts: { content: ContentStore; catalog: Catalog } | undefined;
  if (config.cache.store) {
    let content: ContentStore;
    try {
      content = await ContentStore.open({
        dir: config.cache.store.dir,
        maxBytes: config.cache.store.maxBytes,
        logger,
        hashes,
        metrics,
        ...(opts.storeClock !== undefined ? { now: opts.storeClock } : {}),
      });
    } catch (err) {
      throw new Error(`cache.store.dir: cannot open ${config.cache.store.dir}: ${(err as Error).message}`, { cause: err });
    }
    parts = { content, catalog: new Catalog(content) };
  } else if (offline) {
    throw new Error('cache.store: --offline serves from the content store, and the config has none');
  }
  // Offline, nothing is contacted: no bucket, no Redis, no peers. Loaded only when configured:
  // the AWS SDK and the Redis client add ~22 MiB to every process that imports them.
  const shared = config.cache.shared && parts && !offline ? await (await import('./shared/shared-cache.js')).openSharedCache(config.cache.shared, { logger, metrics, store: parts, tls: config.server.tls }) : undefined;
  const compose = (c: Config, trusted: TrustedVerifier): ConfigParts => {
    const { registries: clients, keeper } = composeServe(c, {
      metrics,
      logger,
      hashes,
      timeouts: opts.timeouts,
      offline,
      store: parts,
      staleDeadlineMs: opts.staleDeadlineMs,
      timer: opts.staleTimer,
      now: opts.now,
      shared,
    });
    return { clients, verifier: trusted, ...(keeper ? { keeper } : {}) };
  };
  const { clients, keeper } = compose(config, verifier);
  const store = parts && keeper ? { ...parts, keeper } : undefined;
  const gate = { ...(opts.now !== undefined ? { now: opts.now } : {}), ...(opts.verificationDeadlineMs !== undefined ? { verificationDeadlineMs: opts.verificationDeadlineMs } : {}) };
  // trust.tuf's refresher lives as long as the app: every generation's trust reads its latest root.
  const rebuild = (c: Config): ConfigParts => compose(c, trustOf(c, tuf));
  // The cached root, then the repository (never offline), before the first request.
  try {
    await tuf?.start();
  } catch (err) {
    await shared?.close(); // its connections would keep the process alive
    throw err;
  }
  return {
    logger, metrics, clients, verifier, store, offline, timeouts: opts.timeouts, hashes, ...gate, rebuild, shared,
    ...(opts.loadConfig ? { loadConfig: opts.loadConfig } : {}),
    ...(tuf ? { tuf } : {}),
  };
}

/** The trust material of a config (with trust.tuf's latest root); the error names the setting. */
function trustOf(config: Config, tuf: TufRootHolder | undefined): TrustedVerifier {
  try {
    return loadVerifier(config, defaultPublicGoodPath(), tuf);
  } catch (err) {
    throw new Error(`trust.trustedRoot: ${(err as Error).message}`, { cause: err });
  }
}

/**
 * Trust material: the configured roots, read offline at start and on each reload, plus the TUF
 * repository's latest root when `tuf` (the refresher of trust.tuf) is given. Throws (with the
 * path at fault) when a trusted root cannot be read: `sigil serve` reports it and exits 2, a
 * reload is refused.
 */
export function loadVerifier(config: Config, publicGoodPath = defaultPublicGoodPath(), tuf?: TufRootHolder): TrustedVerifier {
  const floor = readTrustedRoots(config.trust.trustedRoot, { publicGoodPath });
  return new TrustedVerifier(new TrustSource(floor, config.trust.trustedRoot, tuf));
}

/**
 * One config's generation: the gate over its parts (a fresh verdict cache: nothing decided under
 * another policy or trust root is reused), its client auth, its routing. `id` is its number.
 */
function serveGeneration(id: number, config: Config, parts: ConfigParts, deps: AppDeps): ServeGeneration {
  const gate = new ManifestGate({
    config,
    clients: parts.clients,
    metrics: deps.metrics,
    // Every decision's audit line names the generation (the config) that made it.
    logger: deps.logger.child({ generation: id }),
    verifier: parts.verifier,
    keeper: parts.keeper,
    now: deps.now,
    verificationDeadlineMs: deps.verificationDeadlineMs,
    sharedVerdicts: sharedVerdictsOf(config.cache, deps.shared?.coordinator, deps),
  });
  // Client auth (server.auth) and the 405 for push/delete are tied to the /v2/ routes themselves.
  const auth = config.server.auth ? new BasicAuthChecker(config.server.auth.users) : null;
  return {
    config,
    gate,
    clients: parts.clients,
    auth,
    offline: deps.offline,
    verifier: parts.verifier,
    close: async () => {
      await Promise.all([...parts.clients.values()].map((c) => c.close()));
    },
  };
}

/** Builds the fastify app for a compiled config. Never listens: main.ts and tests do. */
export async function buildApp(config: Config, deps?: AppDeps): Promise<FastifyInstance> {
  deps ??= await defaultDeps(config);
  const d = deps;
  const app = Fastify({
    loggerInstance: d.logger,
    // one access line per request (the onResponse hook), not fastify's two
    logController: new LogController({ disableRequestLogging: true }),
    https: config.server.tls ? { cert: config.server.tls.cert, key: config.server.tls.key } : null,
    requestIdHeader: 'x-request-id',
    genReqId: () => randomUUID(),
    requestTimeout: REQUEST_TIMEOUT_MS,
    connectionTimeout: SOCKET_IDLE_TIMEOUT_MS,
    routerOptions: { maxParamLength: 1024 },
    bodyLimit: 1024,
    return503OnClosing: true,
    forceCloseConnections: 'idle',
    http: { maxHeaderSize: MAX_HEADER_BYTES },
  } as Parameters<typeof Fastify>[0]) as unknown as FastifyInstance;

  const generations = new Generations<ServeGeneration>(
    (id) => serveGeneration(id, config, { clients: d.clients, verifier: d.verifier, keeper: d.store?.keeper }, d),
    (g) => g.close().catch((err: unknown) => d.logger.warn({ err: String(err) }, 'config: closing a replaced generation failed')),
  );
  const reloader = new Reloader({
    load: d.loadConfig ?? (async () => ({ ok: false, problems: [{ path: '', message: 'this sigil has no config source to reload from', severity: 'error' }], source: config.source })),
    running: () => generations.current.value.config,
    install: async (next) => install(app, generations, next, d),
    logger: d.logger,
    metrics: d.metrics,
  });
  app.decorate('sigilConfig', {
    get current() {
      const g = generations.current;
      return { id: g.id, config: g.value.config };
    },
    get draining() {
      return generations.draining;
    },
    reload: (trigger: string) => reloader.reload(trigger),
  } satisfies ConfigControl);

  app.decorateRequest('sigilRoute', null);
  app.decorateRequest('sigilGeneration', null);
  // Before every other hook: the request keeps this generation to its end, whatever reloads meanwhile.
  app.addHook('onRequest', (req, reply, done) => {
    const lease = generations.acquire();
    req.sigilGeneration = lease;
    reply.raw.once('close', lease.release);
    done();
  });
  registerErrorHandling(app);

  app.addHook('onResponse', async (req, reply) => {
    const route = req.sigilRoute ?? req.routeOptions.url ?? 'unmatched';
    d.metrics.httpRequests.inc({ route, method: req.method, status: String(reply.statusCode) });
    d.metrics.httpDuration.observe({ route, method: req.method }, reply.elapsedTime / 1000);
    req.log.info(
      {
        // fastify's serializers: method, url, host, remoteAddress, remotePort; statusCode
        req,
        res: reply,
        route,
        responseTime: reply.elapsedTime,
        generation: req.sigilGeneration?.id,
      },
      'request completed',
    );
  });

  registerV2Routes(app, (req) => (req.sigilGeneration ?? generations.current).value);
  const readiness: Readiness = {
    // Config and trust are loaded before the app exists (a failure stops start-up) and a reload
    // that fails keeps them: a running app is ready.
    checks: () => ({ config: null, trust: generations.current.value.verifier.sources.length > 0 ? null : 'no trusted root loaded' }),
    degraded: () => {
      const tuf = d.tuf?.degraded();
      return { ...storeDegraded(d.store?.content), ...reloader.degraded(), ...(tuf ? { tuf } : {}) };
    },
    detail: () => (d.tuf ? { tuf: d.tuf.status() } : {}),
  };
  registerOpsRoutes(app, d.metrics, readiness);

  app.addHook('onClose', async () => {
    d.tuf?.close();
    await generations.close();
    await d.shared?.close();
    await d.store?.content.close();
    await d.hashes.close();
  });
  return app;
}

/**
 * Makes `config` the current generation: its parts are built first (an unreadable trust root
 * throws, changing nothing), then the TLS certificate and key are swapped for new connections
 * (connections open keep theirs), then new requests get the new generation.
 */
async function install(app: FastifyInstance, generations: Generations<ServeGeneration>, config: Config, deps: AppDeps): Promise<number> {
  const parts = deps.rebuild(config);
  try {
    const tls = config.server.tls;
    if (tls) {
      try {
        (app.server as unknown as TlsServer).setSecureContext({ cert: tls.cert, key: tls.key });
      } catch (err) {
        throw new Error(`server.tls: ${(err as Error).message}`, { cause: err });
      }
    }
    const was = generations.current.value.config.server.logLevel;
    const id = generations.swap((n) => serveGeneration(n, config, parts, deps));
    if (config.server.logLevel !== was) deps.logger.level = config.server.logLevel;
    return id;
  } catch (err) {
    await Promise.all([...parts.clients.values()].map((c) => c.close()));
    throw err;
  }
}
