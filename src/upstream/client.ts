import { rootCertificates } from 'node:tls';
import { Agent } from 'undici';
import type { Logger } from 'pino';
import type { Metrics } from '../audit/metrics.js';
import type { UpstreamConfig } from '../config/types.js';
import { MAX_JSON_DEPTH, jsonDepth } from '../oci/json.js';
import { SigilError, isSigilError } from '../errors.js';
import type { SigilErrorCode } from '../errors.js';
import { digestOf, isDigest } from '../oci/digest.js';
import type { Digest } from '../oci/digest.js';
import { DEFAULT_MANIFEST_ACCEPT, MT } from '../oci/media-types.js';
import { Authenticator } from './auth.js';
import { pullScope } from './challenge.js';
import type { SentCredential } from './auth.js';
import { bodyMediaType, checkDigest, checkReference, checkRepository, contentLength, mediaTypeOf, parseTagList } from './answers.js';
import { checkedBlobStream } from './blob-verify.js';
import { checkPartialAnswer } from './ranges.js';
import type { HashPool } from '../hash/hash-pool.js';
import { headerValue, parseDistributionError, statusError } from './error-map.js';
import type { StatusContext } from './error-map.js';
import { UpstreamHttp } from './http.js';
import type { Exchange } from './http.js';
import {
  CLOSE_GRACE_MS,
  DEFAULT_TIMEOUTS,
  KEEP_ALIVE_TIMEOUT_MS,
  MANIFEST_MAX_BYTES,
  MAX_REDIRECTS,
  REFERRERS_MAX_BYTES,
  TAG_LIST_MAX_BYTES,
} from './limits.js';
import type { Timeouts } from './limits.js';
export type { Timeouts } from './limits.js';
import type { BlobRequest, BlobResponse, FetchedManifest, ReferrersAnswer, Registry, TagList } from '../oci/registry.js';
import type { RequestKind } from './types.js';

export interface UpstreamClientDeps {
  readonly metrics: Metrics;
  readonly logger: Logger;
  readonly timeouts?: Partial<Timeouts>;
  /** Clock of the token cache (tests). */
  readonly now?: () => number;
  /** Where blob bytes are hashed; default: inline, on the event loop. */
  readonly hashes?: HashPool;
}

const REDIRECT_STATUSES: ReadonlySet<number> = new Set([301, 302, 303, 307, 308]);
/** Blob answer headers passed on to clients; nothing else (no cookies, no storage headers). */
const SAFE_BLOB_HEADERS = ['content-type', 'content-length', 'content-range', 'accept-ranges', 'etag'] as const;
/** Codes that are ordinary answers, not upstream failures, for the error counter. */
const NOT_FAILURES: ReadonlySet<SigilErrorCode> = new Set([
  'NAME_UNKNOWN',
  'MANIFEST_UNKNOWN',
  'BLOB_UNKNOWN',
  'RANGE_INVALID',
  'NAME_INVALID',
  'TAG_INVALID',
  'DIGEST_INVALID',
  'PAGINATION_NUMBER_INVALID',
]);
/**
 * The client of one upstream registry: manifests (buffered, capped, re-hashed),
 * blobs (streamed, digest checked on the fly, redirects followed without
 * credentials), tags, referrers; Bearer/Basic auth with a token cache.
 * Contacts only the upstream's origin, the token realm it names and the blob
 * redirect targets it names; never sends the client's credentials anywhere.
 */
export class UpstreamClient implements Registry {
  readonly name: string;
  readonly #origin: URL;
  readonly #agent: Agent;
  readonly #http: UpstreamHttp;
  readonly #auth: Authenticator;
  readonly #metrics: Metrics;
  readonly #timeouts: Timeouts;
  readonly #verifyBlobs: boolean;
  readonly #hashes: HashPool | undefined;
  readonly #logger: Logger;
  #closing: Promise<void> | undefined;

  constructor(cfg: UpstreamConfig, deps: UpstreamClientDeps) {
    this.name = cfg.name;
    this.#origin = new URL(cfg.url.origin);
    if (this.#origin.protocol !== 'https:' && this.#origin.protocol !== 'http:') {
      throw new SigilError({ code: 'INTERNAL', message: `upstream ${cfg.name}: url must be http(s)` });
    }
    this.#metrics = deps.metrics;
    this.#timeouts = { ...DEFAULT_TIMEOUTS, ...deps.timeouts };
    this.#verifyBlobs = cfg.verifyBlobDigests;
    this.#hashes = deps.hashes;
    this.#logger = deps.logger;
    const tls = {
      ...(cfg.tls?.ca !== undefined ? { ca: [...rootCertificates, cfg.tls.ca] } : {}),
      ...(cfg.tls?.insecureSkipVerify === true ? { rejectUnauthorized: false } : {}),
    };
    this.#agent = new Agent({
      connect: { timeout: this.#timeouts.connectMs, ...tls },
      headersTimeout: this.#timeouts.headersMs,
      bodyTimeout: this.#timeouts.bodyIdleMs,
      keepAliveTimeout: KEEP_ALIVE_TIMEOUT_MS,
      // HTTP/1.1: what registries and their CDNs all speak; timeouts and resets behave predictably
      allowH2: false,
    });
    this.#http = new UpstreamHttp({
      upstream: cfg.name,
      dispatcher: this.#agent,
      metrics: deps.metrics,
      logger: deps.logger,
      timeouts: this.#timeouts,
    });
    this.#auth = new Authenticator({
      upstream: cfg.name,
      credentials: cfg.credentials,
      http: this.#http,
      tokenDeadlineMs: this.#timeouts.metadataDeadlineMs,
      upstreamSecure: this.#origin.protocol === 'https:',
      now: deps.now,
    });
  }

  /** GET /v2/ with auth: resolves when the upstream answers 200. */
  async ping(): Promise<void> {
    await this.#track('ping', () =>
      this.#withDeadline('ping', async (signal) => {
        const res = await this.#authorized('ping', 'GET', this.#url('/v2/'), {}, undefined, signal);
        if (res.status !== 200) throw await this.#fail(res, { upstream: this.name, what: 'ping' });
        await this.#http.discard(res.body);
      }),
    );
  }

  /**
   * A manifest, buffered up to MANIFEST_MAX_BYTES and hashed here. For a digest
   * reference the bytes must hash to it; an upstream Docker-Content-Digest must
   * match the bytes too (distribution-spec: clients verify, never trust the header).
   */
  async fetchManifest(repository: string, reference: string, opts: { accept?: string } = {}): Promise<FetchedManifest> {
    return this.#track('manifest', async () => {
      checkRepository(repository);
      checkReference(reference);
      const requested = isDigest(reference) ? reference : undefined;
      const what = `manifest ${repository}${requested !== undefined ? '@' : ':'}${reference}`;
      return this.#withDeadline(what, async (signal) => {
        const url = this.#url(`/v2/${repository}/manifests/${reference}`);
        const accept = opts.accept !== undefined && opts.accept.trim() !== '' ? opts.accept : DEFAULT_MANIFEST_ACCEPT;
        const res = await this.#authorized('manifest', 'GET', url, { accept }, pullScope(repository), signal);
        if (res.status !== 200) {
          throw await this.#fail(res, { upstream: this.name, what, notFound: 'MANIFEST_UNKNOWN' });
        }
        const tooLarge = (): SigilError =>
          new SigilError({
            code: 'MANIFEST_TOO_LARGE',
            message: `upstream ${this.name}: ${what} exceeds ${MANIFEST_MAX_BYTES} bytes`,
          });
        const announced = contentLength(res.headers);
        if (announced !== undefined && announced > MANIFEST_MAX_BYTES) {
          res.body.destroy();
          throw tooLarge();
        }
        const bytes = await this.#http.readCapped(res, MANIFEST_MAX_BYTES, tooLarge, signal);
        const digest = digestOf(bytes, requested);
        if (requested !== undefined && digest !== requested) {
          throw new SigilError({
            code: 'DIGEST_MISMATCH',
            message: `upstream ${this.name}: ${what}: the bytes hash to ${digest}`,
            detail: { expected: requested, got: digest },
          });
        }
        const announcedDigest = headerValue(res.headers, 'docker-content-digest')?.trim();
        if (announcedDigest !== undefined && isDigest(announcedDigest)) {
          const check = digestOf(bytes, announcedDigest);
          if (check !== announcedDigest) {
            throw new SigilError({
              code: 'DIGEST_MISMATCH',
              message: `upstream ${this.name}: ${what}: Docker-Content-Digest ${announcedDigest} does not match the bytes (${check})`,
              detail: { announced: announcedDigest, got: check },
            });
          }
        }
        if (jsonDepth(bytes) > MAX_JSON_DEPTH) {
          // Hostile nesting would overflow the stack of whatever walks or re-serialises it.
          throw new SigilError({ code: 'MANIFEST_INVALID', message: `upstream ${this.name}: ${what}: JSON nested deeper than ${MAX_JSON_DEPTH} levels (MAX_JSON_DEPTH)` });
        }
        return { bytes, digest, mediaType: mediaTypeOf(headerValue(res.headers, 'content-type')) ?? bodyMediaType(bytes) };
      });
    });
  }

  /**
   * Resolves a tag with a HEAD (Docker Hub does not count HEADs against its pull rate limit):
   * the upstream's Docker-Content-Digest and Content-Type, or null when it sent no usable digest.
   * The digest is only a pointer: the bytes fetched by digest are hashed and checked against it.
   */
  async resolveTag(repository: string, tag: string, opts: { accept?: string } = {}): Promise<{ digest: Digest; mediaType: string } | null> {
    return this.#track('manifest', async () => {
      checkRepository(repository);
      checkReference(tag);
      const what = `manifest ${repository}:${tag}`;
      return this.#withDeadline(what, async (signal) => {
        const url = this.#url(`/v2/${repository}/manifests/${tag}`);
        const accept = opts.accept !== undefined && opts.accept.trim() !== '' ? opts.accept : DEFAULT_MANIFEST_ACCEPT;
        const res = await this.#authorized('manifest', 'HEAD', url, { accept }, pullScope(repository), signal);
        await this.#http.discard(res.body);
        if (res.status !== 200) throw await this.#fail(res, { upstream: this.name, what, notFound: 'MANIFEST_UNKNOWN' });
        const digest = headerValue(res.headers, 'docker-content-digest')?.trim();
        const mediaType = mediaTypeOf(headerValue(res.headers, 'content-type'));
        return digest !== undefined && isDigest(digest) && mediaType !== undefined ? { digest, mediaType } : null;
      });
    });
  }

  /**
   * A blob, streamed. Range is passed on; redirects are followed (at most
   * MAX_REDIRECTS) without the upstream's Authorization unless the target is the
   * upstream itself. An answer with the whole blob (a 200, or a 206 whose range is every byte) is
   * digest checked while it streams; a 206 that is not the range asked for is UPSTREAM_BAD_RESPONSE.
   */
  async openBlob(repository: string, digest: Digest, req: BlobRequest): Promise<BlobResponse> {
    return this.#track('blob', async () => {
      checkRepository(repository);
      checkDigest(digest);
      const what = `blob ${digest} of ${repository}`;
      const extra: Record<string, string> = {};
      if (req.range !== undefined) extra.range = req.range;
      let url = this.#url(`/v2/${repository}/blobs/${digest}`);
      const sent: { cred?: SentCredential } = {};
      let res = await this.#authorized('blob', req.method, url, extra, pullScope(repository), undefined, sent);
      for (let hops = 0; REDIRECT_STATUSES.has(res.status); hops++) {
        const location = headerValue(res.headers, 'location');
        await this.#http.discard(res.body);
        if (hops >= MAX_REDIRECTS) {
          throw new SigilError({ code: 'UPSTREAM_BAD_RESPONSE', message: `upstream ${this.name}: ${what}: more than ${MAX_REDIRECTS} redirects` });
        }
        const next = location !== undefined ? URL.parse(location, url.href) : null;
        if (next === null || (next.protocol !== 'https:' && next.protocol !== 'http:') || next.username !== '' || next.password !== '') {
          throw new SigilError({ code: 'UPSTREAM_BAD_RESPONSE', message: `upstream ${this.name}: ${what}: unusable redirect` });
        }
        url = next;
        const headers = { ...extra };
        // credentials stay with the upstream: a storage or CDN host gets none
        if (next.origin === this.#origin.origin && sent.cred !== undefined) headers.authorization = sent.cred.header;
        res = await this.#http.send('blob', req.method, url, headers, undefined);
      }
      if (res.status !== 200 && res.status !== 206) {
        throw await this.#fail(res, { upstream: this.name, what, notFound: 'BLOB_UNKNOWN' });
      }
      // A 200 claims the whole blob; a 206 must be exactly the range asked for, and is the whole
      // blob when that range covers it: either way a whole blob is hashed below.
      let whole = res.status === 200;
      let expectedLength = contentLength(res.headers);
      if (res.status === 206) {
        try {
          ({ whole, length: expectedLength } = checkPartialAnswer(req.range, headerValue(res.headers, 'content-range'), expectedLength, `upstream ${this.name}: ${what}`));
        } catch (err) {
          await this.#http.discard(res.body);
          throw err;
        }
      }
      const headers: Record<string, string> = {};
      for (const h of SAFE_BLOB_HEADERS) {
        const v = headerValue(res.headers, h);
        if (v !== undefined) headers[h] = v;
      }
      if (req.method === 'HEAD') {
        await this.#http.discard(res.body);
        return { status: res.status, headers, body: null };
      }
      const bytes = this.#metrics.bytesStreamed.labels(this.name, 'in');
      const from = url;
      const body = checkedBlobStream(res.body, {
        // a part of the blob: nothing to hash it against
        digest: whole && (req.verifyDigest ?? this.#verifyBlobs) ? digest : undefined,
        expectedLength,
        onBytes: (n) => bytes.inc(n),
        mapSourceError: (err) => this.#http.map(err, from),
        ...(this.#hashes !== undefined ? { hashes: this.#hashes } : {}),
        describe: `upstream ${this.name}: ${what}`,
      });
      body.once('error', (err) => {
        this.#countError('blob', err);
        // the client's answer is cut off: say why, against which upstream (a digest mismatch is a lie of the upstream's)
        const code = isSigilError(err) ? err.code : 'INTERNAL';
        this.#logger.warn({ upstream: this.name, repository, digest, code, error: (err as Error).message }, 'blob stream failed');
      });
      return { status: res.status, headers, body };
    });
  }

  /**
   * GET /v2/<repo>/tags/list with n/last passed on. `upstreamPaginated` says the
   * upstream honoured them (a Link header, or no more than n tags all after `last`);
   * otherwise the caller applies n/last itself.
   */
  async listTags(repository: string, q: { n?: number; last?: string } = {}): Promise<TagList & { upstreamPaginated: boolean }> {
    return this.#track('tags', async () => {
      checkRepository(repository);
      if (q.n !== undefined && (!Number.isSafeInteger(q.n) || q.n < 0)) {
        throw new SigilError({ code: 'PAGINATION_NUMBER_INVALID', message: 'n must be a non-negative integer' });
      }
      const what = `tags of ${repository}`;
      return this.#withDeadline(what, async (signal) => {
        const url = this.#url(`/v2/${repository}/tags/list`);
        if (q.n !== undefined) url.searchParams.set('n', String(q.n));
        if (q.last !== undefined) url.searchParams.set('last', q.last);
        const res = await this.#authorized('tags', 'GET', url, { accept: 'application/json' }, pullScope(repository), signal);
        if (res.status !== 200) throw await this.#fail(res, { upstream: this.name, what, notFound: 'NAME_UNKNOWN' });
        const body = await this.#http.readCapped(
          res,
          TAG_LIST_MAX_BYTES,
          () => new SigilError({ code: 'UPSTREAM_BAD_RESPONSE', message: `upstream ${this.name}: ${what}: list exceeds ${TAG_LIST_MAX_BYTES} bytes` }),
          signal,
        );
        const list = parseTagList(body);
        if (list === undefined) {
          throw new SigilError({ code: 'UPSTREAM_BAD_RESPONSE', message: `upstream ${this.name}: ${what}: not a tag list` });
        }
        const link = headerValue(res.headers, 'link');
        const last = q.last;
        const honoured =
          q.n !== undefined && list.tags.length <= q.n && (last === undefined || list.tags.every((t) => t > last));
        return { name: list.name ?? repository, tags: list.tags, upstreamPaginated: link !== undefined || honoured };
      });
    });
  }

  /**
   * GET /v2/<repo>/referrers/<digest>. A 404 or 405 (a registry without the
   * referrers API, e.g. distribution 2.8) is `unsupported`: the caller uses the fallback tag.
   */
  async referrers(repository: string, digest: Digest, artifactType?: string): Promise<ReferrersAnswer> {
    return this.#track('referrers', async () => {
      checkRepository(repository);
      checkDigest(digest);
      const what = `referrers of ${repository}@${digest}`;
      return this.#withDeadline(what, async (signal): Promise<ReferrersAnswer> => {
        const url = this.#url(`/v2/${repository}/referrers/${digest}`);
        if (artifactType !== undefined && artifactType !== '') url.searchParams.set('artifactType', artifactType);
        const res = await this.#authorized('referrers', 'GET', url, { accept: MT.OCI_INDEX }, pullScope(repository), signal);
        if (res.status === 404 || res.status === 405) {
          await this.#http.discard(res.body);
          return { kind: 'unsupported' };
        }
        if (res.status !== 200) throw await this.#fail(res, { upstream: this.name, what });
        const body = await this.#http.readCapped(
          res,
          REFERRERS_MAX_BYTES,
          () => new SigilError({ code: 'UPSTREAM_BAD_RESPONSE', message: `upstream ${this.name}: ${what}: index exceeds ${REFERRERS_MAX_BYTES} bytes` }),
          signal,
        );
        const filtersApplied = headerValue(res.headers, 'oci-filters-applied');
        return {
          kind: 'api',
          body,
          contentType: mediaTypeOf(headerValue(res.headers, 'content-type')) ?? MT.OCI_INDEX,
          ...(filtersApplied !== undefined ? { filtersApplied } : {}),
        };
      });
    });
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

  /** A URL on the upstream's origin; the path is built from validated parts only. */
  #url(path: string): URL {
    const url = new URL(path, this.#origin);
    if (url.origin !== this.#origin.origin) {
      throw new SigilError({ code: 'INTERNAL', message: `upstream ${this.name}: refusing a URL off the upstream` });
    }
    return url;
  }

  /**
   * One request with auth: the credential known for `scope` up front, and on a
   * 401 the challenge answered and the request retried once. A second 401 is
   * UPSTREAM_DENIED. `sent.cred` receives the credential of the answered attempt.
   */
  async #authorized(
    kind: RequestKind,
    method: 'GET' | 'HEAD',
    url: URL,
    headers: Readonly<Record<string, string>>,
    scope: string | undefined,
    signal: AbortSignal | undefined,
    sent: { cred?: SentCredential } = {},
  ): Promise<Exchange> {
    const withAuth = (cred: SentCredential | undefined): Record<string, string> =>
      cred === undefined ? { ...headers } : { ...headers, authorization: cred.header };
    let cred = await this.#auth.initial(scope, signal);
    let res = await this.#http.send(kind, method, url, withAuth(cred), signal);
    if (res.status !== 401) {
      sent.cred = cred;
      return res;
    }
    const challenge = res.headers['www-authenticate'];
    await this.#http.discard(res.body);
    cred = await this.#auth.afterChallenge(challenge, scope, cred, signal);
    res = await this.#http.send(kind, method, url, withAuth(cred), signal);
    if (res.status === 401) {
      await this.#http.discard(res.body);
      throw this.#auth.deniedAfterRetry();
    }
    sent.cred = cred;
    return res;
  }

  /** The SigilError for a non-success answer, with the upstream's distribution error. */
  async #fail(res: Exchange, ctx: StatusContext): Promise<SigilError> {
    const body = await this.#http.readErrorBody(res);
    return statusError(ctx, res.status, res.headers, parseDistributionError(body));
  }

  /** Runs `fn` under the metadata deadline: past it, UPSTREAM_TIMEOUT (never a hang). */
  async #withDeadline<T>(what: string, fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
    const ms = this.#timeouts.metadataDeadlineMs;
    const controller = new AbortController();
    const timer = setTimeout(() => {
      controller.abort(new SigilError({ code: 'UPSTREAM_TIMEOUT', message: `upstream ${this.name}: ${what}: no answer within ${ms} ms` }));
    }, ms);
    try {
      return await fn(controller.signal);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Counts failures by code; anything that is not a SigilError is a bug, reported as INTERNAL. */
  async #track<T>(kind: RequestKind, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      const e = isSigilError(err)
        ? err
        : new SigilError({ code: 'INTERNAL', message: `upstream ${this.name}: ${kind} failed unexpectedly`, cause: err });
      this.#countError(kind, e);
      throw e;
    }
  }

  #countError(kind: RequestKind, err: unknown): void {
    const code = isSigilError(err) ? err.code : 'INTERNAL';
    if (NOT_FAILURES.has(code)) return;
    this.#metrics.upstreamErrors.inc({ upstream: this.name, kind, code });
  }
}
