import { randomUUID } from 'node:crypto';
import Fastify, { LogController, type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { Metrics } from './audit/metrics.js';
import { createLogger } from './audit/logger.js';
import type { Config } from './config/types.js';
import { ManifestGate } from './gate/manifest-gate.js';
import { BasicAuthChecker } from './http/client-auth.js';
import { registerErrorHandling } from './http/errors.js';
import { registerOpsRoutes, storeDegraded, type Readiness } from './http/ops-routes.js';
import { registerV2Routes } from './http/v2-routes.js';
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

declare module 'fastify' {
  interface FastifyRequest {
    /** Which registry API a /v2/ request hit (manifest, blob, …): the metrics route label. */
    sigilRoute: string | null;
  }
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
  readonly verifier: SignatureVerifier & { readonly sources: readonly string[] };
  /** With `cache.store`: the store, its catalog and what keeps what the gate lets through. */
  readonly store?: { readonly content: ContentStore; readonly catalog: Catalog; readonly keeper: StoreKeeper };
  readonly offline: boolean;
  readonly timeouts?: Partial<Timeouts>;
  /** Hash workers for blob digests, shared by the upstream clients; closed with the app. */
  readonly hashes: HashPool;
  /** The gate's clock (its verdict lifetimes; tests move it); default performance.now. */
  readonly now?: () => number;
  /** The gate's decision deadline (tests shorten it); default VERIFICATION_DEADLINE_MS. */
  readonly verificationDeadlineMs?: number;
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
  let verifier: TrustedVerifier;
  try {
    verifier = loadVerifier(config, defaultPublicGoodPath(), tuf);
  } catch (err) {
    throw new Error(`trust.trustedRoot: ${(err as Error).message}`, { cause: err });
  }
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
  const { registries: clients, keeper } = composeServe(config, {
    metrics,
    logger,
    hashes,
    timeouts: opts.timeouts,
    offline,
    store: parts,
    staleDeadlineMs: opts.staleDeadlineMs,
    timer: opts.staleTimer,
    now: opts.now,
  });
  const store = parts && keeper ? { ...parts, keeper } : undefined;
  const gate = { ...(opts.now !== undefined ? { now: opts.now } : {}), ...(opts.verificationDeadlineMs !== undefined ? { verificationDeadlineMs: opts.verificationDeadlineMs } : {}) };
  // The cached root, then the repository (never offline), before the first request.
  await tuf?.start();
  return { logger, metrics, clients, verifier, store, offline, timeouts: opts.timeouts, hashes, ...gate, ...(tuf ? { tuf } : {}) };
}

/**
 * Trust material: the configured roots, read offline once, plus the TUF repository's latest root
 * when `tuf` (the refresher of trust.tuf) is given. Throws (with the path at fault) when a
 * trusted root cannot be read: `sigil serve` reports it and exits 2.
 */
export function loadVerifier(config: Config, publicGoodPath = defaultPublicGoodPath(), tuf?: TufRootHolder): TrustedVerifier {
  const floor = readTrustedRoots(config.trust.trustedRoot, { publicGoodPath });
  return new TrustedVerifier(new TrustSource(floor, config.trust.trustedRoot, tuf));
}

/** Builds the fastify app for a compiled config. Never listens: main.ts and tests do. */
export async function buildApp(config: Config, deps?: AppDeps): Promise<FastifyInstance> {
  deps ??= await defaultDeps(config);
  const app = Fastify({
    loggerInstance: deps.logger,
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

  app.decorateRequest('sigilRoute', null);
  registerErrorHandling(app);

  app.addHook('onResponse', async (req, reply) => {
    const route = req.sigilRoute ?? req.routeOptions.url ?? 'unmatched';
    deps.metrics.httpRequests.inc({ route, method: req.method, status: String(reply.statusCode) });
    deps.metrics.httpDuration.observe({ route, method: req.method }, reply.elapsedTime / 1000);
    req.log.info(
      {
        // fastify's serializers: method, url, host, remoteAddress, remotePort; statusCode
        req,
        res: reply,
        route,
        responseTime: reply.elapsedTime,
      },
      'request completed',
    );
  });

  const gate = new ManifestGate({
    config,
    clients: deps.clients,
    metrics: deps.metrics,
    logger: deps.logger,
    verifier: deps.verifier,
    keeper: deps.store?.keeper,
    now: deps.now,
    verificationDeadlineMs: deps.verificationDeadlineMs,
  });
  // Client auth (server.auth) and the 405 for push/delete are tied to the /v2/ routes themselves.
  const auth = config.server.auth ? new BasicAuthChecker(config.server.auth.users) : null;
  registerV2Routes(app, { config, gate, clients: deps.clients, auth, offline: deps.offline });
  const readiness: Readiness = {
    // Both are loaded before the app exists (a failure stops start-up), so a running app is ready.
    checks: () => ({ config: null, trust: deps.verifier.sources.length > 0 ? null : 'no trusted root loaded' }),
    degraded: () => {
      const tuf = deps.tuf?.degraded();
      return { ...storeDegraded(deps.store?.content), ...(tuf ? { tuf } : {}) };
    },
    detail: () => (deps.tuf ? { tuf: deps.tuf.status() } : {}),
  };
  registerOpsRoutes(app, deps.metrics, readiness);

  app.addHook('onClose', async () => {
    deps.tuf?.close();
    await Promise.all([...deps.clients.values()].map((c) => c.close()));
    await deps.store?.content.close();
    await deps.hashes.close();
  });
  return app;
}
