import { rootCertificates } from 'node:tls';
import { Agent } from 'undici';
import type { Logger } from 'pino';
import type { Metrics } from '../audit/metrics.js';
import type { UpstreamConfig } from '../config/types.js';
import { SigilError } from '../errors.js';
import type { Digest } from '../oci/digest.js';
import type { HashPool } from '../hash/hash-pool.js';
import { Authenticator } from './auth.js';
import { blobGet } from './blobs.js';
import type { BlobStreaming } from './blobs.js';
import { Caller } from './call.js';
import type { Endpoint } from './call.js';
import { UpstreamHttp } from './http.js';
import { CLOSE_GRACE_MS, DEFAULT_TIMEOUTS, KEEP_ALIVE_TIMEOUT_MS } from './limits.js';
import type { Timeouts } from './limits.js';
import { manifestGet, manifestHead } from './manifests.js';
import { referrersGet } from './referrers.js';
import { tagList } from './tags.js';
import type { BlobRequest, BlobResponse, FetchedManifest, ReferrersAnswer, Registry, TagList } from '../oci/registry.js';
export type { Timeouts } from './limits.js';

export interface UpstreamClientDeps {
  readonly metrics: Metrics;
  readonly logger: Logger;
  readonly timeouts?: Partial<Timeouts>;
  /** Clock of the token cache (tests). */
  readonly now?: () => number;
  /** Where blob bytes are hashed; default: inline, on the event loop. */
  readonly hashes?: HashPool;
}

/** GET /v2/ with auth: the upstream answers 200. */
const PING: Endpoint<void> = {
  kind: 'ping',
  what: 'ping',
  method: 'GET',
  path: '/v2/',
  deadline: true,
  answers: [200],
  async answer(res, { http }) {
    await http.discard(res.body);
  },
};

/**
 * The client of one upstream registry: manifests (buffered, capped, re-hashed),
 * blobs (streamed, digest checked on the fly, redirects followed without
 * credentials), tags, referrers; Bearer/Basic auth with a token cache.
 * Contacts only the upstream's origin, the token realm it names and the blob
 * redirect targets it names; never sends the client's credentials anywhere.
 *
 * Composed here: an undici agent → http.ts (send, metrics, logs) → auth.ts (token flow) →
 * call.ts (the one request skeleton) → one endpoint description per method.
 */
export class UpstreamClient implements Registry {
  readonly name: string;
  readonly #agent: Agent;
  readonly #caller: Caller;
  readonly #streaming: BlobStreaming;
  #closing: Promise<void> | undefined;

  constructor(cfg: UpstreamConfig, deps: UpstreamClientDeps) {
    this.name = cfg.name;
    const origin = new URL(cfg.url.origin);
    if (origin.protocol !== 'https:' && origin.protocol !== 'http:') {
      throw new SigilError({ code: 'INTERNAL', message: `upstream ${cfg.name}: url must be http(s)` });
    }
    const timeouts: Timeouts = { ...DEFAULT_TIMEOUTS, ...deps.timeouts };
    const tls = {
      ...(cfg.tls?.ca !== undefined ? { ca: [...rootCertificates, cfg.tls.ca] } : {}),
      ...(cfg.tls?.insecureSkipVerify === true ? { rejectUnauthorized: false } : {}),
    };
    this.#agent = new Agent({
      connect: { timeout: timeouts.connectMs, ...tls },
      headersTimeout: timeouts.headersMs,
      bodyTimeout: timeouts.bodyIdleMs,
      keepAliveTimeout: KEEP_ALIVE_TIMEOUT_MS,
      // HTTP/1.1: what registries and their CDNs all speak; timeouts and resets behave predictably
      allowH2: false,
    });
    const http = new UpstreamHttp({ upstream: cfg.name, dispatcher: this.#agent, metrics: deps.metrics, logger: deps.logger, timeouts });
    const auth = new Authenticator({
      upstream: cfg.name,
      credentials: cfg.credentials,
      http,
      tokenDeadlineMs: timeouts.metadataDeadlineMs,
      upstreamSecure: origin.protocol === 'https:',
      now: deps.now,
    });
    this.#caller = new Caller({ upstream: cfg.name, origin, http, auth, metrics: deps.metrics, deadlineMs: timeouts.metadataDeadlineMs });
    this.#streaming = { upstream: cfg.name, verifyDigests: cfg.verifyBlobDigests, metrics: deps.metrics, logger: deps.logger, hashes: deps.hashes };
  }

  /** GET /v2/ with auth: resolves when the upstream answers 200. */
  async ping(): Promise<void> {
    await this.#caller.call(PING);
  }

  /** A manifest, buffered, capped and hashed here (manifests.ts). */
  async fetchManifest(repository: string, reference: string, opts: { accept?: string } = {}): Promise<FetchedManifest> {
    return this.#caller.call(manifestGet(repository, reference, opts.accept));
  }

  /** A tag's digest and media type by HEAD, or null when the upstream sent no usable digest (manifests.ts). */
  async resolveTag(repository: string, tag: string, opts: { accept?: string } = {}): Promise<{ digest: Digest; mediaType: string } | null> {
    return this.#caller.call(manifestHead(repository, tag, opts.accept));
  }

  /** A blob, streamed and digest checked on the fly; Range passed on; redirects followed (blobs.ts). */
  async openBlob(repository: string, digest: Digest, req: BlobRequest): Promise<BlobResponse> {
    return this.#caller.call(blobGet(repository, digest, req, this.#streaming));
  }

  /** A tag list with n/last passed on, and whether the upstream honoured them (tags.ts). */
  async listTags(repository: string, q: { n?: number; last?: string } = {}): Promise<TagList & { upstreamPaginated: boolean }> {
    return this.#caller.call(tagList(repository, q));
  }

  /** The referrers API's index, or `unsupported` when the upstream has none (referrers.ts). */
  async referrers(repository: string, digest: Digest, artifactType?: string): Promise<ReferrersAnswer> {
    return this.#caller.call(referrersGet(repository, digest, artifactType));
  }

  /** Lets in-flight requests finish for a moment, then closes every socket. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const grace = new Promise<'late'>((resolve) => {
      timer = setTimeout(() => resolve('late'), CLOSE_GRACE_MS);
    });
    try {
      const outcome = await Promise.race([this.#agent.close().then(() => 'closed' as const), grace]);
      if (outcome === 'late') await this.#agent.destroy();
    } finally {
      clearTimeout(timer);
    }
  }
}
