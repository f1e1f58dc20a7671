import { SigilError } from '../errors.js';
import { TOKEN_CACHE_MAX_ENTRIES, TOKEN_RESPONSE_MAX_BYTES } from './limits.js';
import { headerValue } from './error-map.js';
import type { UpstreamHttp } from './http.js';
import { bearerChallenge, parseTokenAnswer, parseWwwAuthenticate, tokenTtlMs, type TokenAnswer } from './challenge.js';
import { abortable } from './abortable.js';

/**
 * Registry authentication (https://distribution.github.io/distribution/spec/auth/token/):
 * the Bearer token flow (challenge parsing is in challenge.ts) with a per-(realm, service, scope)
 * token cache shared by concurrent requests, and Basic credentials.
 * Tokens and credentials never appear in errors or logs.
 */

export interface CachedToken {
  readonly token: string;
  /** True when this call waited for a token fetch (its own or a concurrent one's). */
  readonly fresh: boolean;
}

/**
 * Tokens by (realm, service, scope) until expiry minus a margin. Concurrent
 * callers of one key share one fetch; failed fetches are not cached.
 */
export class TokenCache {
  readonly #entries = new Map<string, { token: string; expiresAt: number }>();
  readonly #inflight = new Map<string, Promise<string>>();
  readonly #now: () => number;
  readonly #maxEntries: number;

  constructor(opts: { now?: () => number; maxEntries?: number } = {}) {
    this.#now = opts.now ?? Date.now;
    this.#maxEntries = opts.maxEntries ?? TOKEN_CACHE_MAX_ENTRIES;
  }

  static key(realm: URL, service: string | undefined, scope: string | undefined): string {
    return JSON.stringify([realm.href, service ?? '', scope ?? '']);
  }

  /** The cached, unexpired token of `key`, if any. */
  peek(key: string): string | undefined {
    const e = this.#entries.get(key);
    if (e === undefined) return undefined;
    if (e.expiresAt <= this.#now()) {
      this.#entries.delete(key);
      return undefined;
    }
    return e.token;
  }

  get size(): number {
    return this.#entries.size;
  }

  /**
   * The token of `key`: cached, or fetched once for all concurrent callers.
   * `rejected`: a token the upstream just refused; if it is the cached one, it is dropped.
   */
  async get(key: string, fetch: () => Promise<TokenAnswer>, rejected?: string): Promise<CachedToken> {
    if (rejected !== undefined && this.#entries.get(key)?.token === rejected) this.#entries.delete(key);
    const cached = this.peek(key);
    if (cached !== undefined) return { token: cached, fresh: false };
    let pending = this.#inflight.get(key);
    if (pending === undefined) {
      pending = this.#fetch(key, fetch);
      this.#inflight.set(key, pending);
    }
    return { token: await pending, fresh: true };
  }

  async #fetch(key: string, fetch: () => Promise<TokenAnswer>): Promise<string> {
    try {
      const answer = await fetch();
      if (this.#entries.size >= this.#maxEntries) {
        const oldest = this.#entries.keys().next();
        if (!oldest.done) this.#entries.delete(oldest.value);
      }
      this.#entries.set(key, { token: answer.token, expiresAt: this.#now() + tokenTtlMs(answer.expiresInS) });
      return answer.token;
    } finally {
      this.#inflight.delete(key);
    }
  }
}

/** What was sent in Authorization on one attempt (never logged). */
export interface SentCredential {
  readonly header: string;
  readonly kind: 'bearer' | 'basic';
  /** Bearer: the cache key and token, and whether the token was fetched for this request. */
  readonly key?: string;
  readonly token?: string;
  readonly fresh?: boolean;
}

export interface Credentials {
  readonly username: string;
  readonly password: string;
}

function basicHeader(c: Credentials): string {
  return `Basic ${Buffer.from(`${c.username}:${c.password}`, 'utf8').toString('base64')}`;
}

/**
 * The auth state of one upstream: which challenge it answered with last (so
 * later requests send a token up front), the token cache, and the token flow.
 * Credentials go only to the upstream and to the realm the upstream names.
 */
export class Authenticator {
  readonly #upstream: string;
  readonly #credentials: Credentials | undefined;
  readonly #http: UpstreamHttp;
  readonly #tokens: TokenCache;
  readonly #tokenDeadlineMs: number;
  readonly #upstreamSecure: boolean;
  #bearer: { realm: URL; service?: string } | undefined;
  #basic = false;

  constructor(opts: {
    upstream: string;
    credentials?: Credentials;
    http: UpstreamHttp;
    tokenDeadlineMs: number;
    /** The upstream is https: its credentials never go to a plain-http realm. */
    upstreamSecure: boolean;
    now?: () => number;
  }) {
    this.#upstreamSecure = opts.upstreamSecure;
    this.#upstream = opts.upstream;
    this.#credentials = opts.credentials;
    this.#http = opts.http;
    this.#tokenDeadlineMs = opts.tokenDeadlineMs;
    this.#tokens = new TokenCache({ now: opts.now });
  }

  /**
   * The Authorization of a first attempt. Once the upstream has named its
   * realm, the token for `scope` is sent up front (cached, else fetched), so a
   * repeated pull costs no 401 round trip.
   */
  async initial(scope: string | undefined, signal: AbortSignal | undefined): Promise<SentCredential | undefined> {
    if (this.#bearer !== undefined) {
      return this.#bearerFor({ ...this.#bearer, scope }, undefined, signal);
    }
    if (this.#basic && this.#credentials !== undefined) {
      return { header: basicHeader(this.#credentials), kind: 'basic' };
    }
    return undefined;
  }

  /**
   * After a 401: the Authorization for the one retry. Throws UPSTREAM_DENIED
   * when there is nothing better to send than what was just refused.
   */
  async afterChallenge(
    wwwAuthenticate: string | string[] | undefined,
    scope: string | undefined,
    sent: SentCredential | undefined,
    signal: AbortSignal | undefined,
  ): Promise<SentCredential> {
    const challenges = parseWwwAuthenticate(wwwAuthenticate);
    const bearer = bearerChallenge(challenges);
    if (bearer !== undefined) {
      this.#bearer = { realm: bearer.realm, ...(bearer.service !== undefined ? { service: bearer.service } : {}) };
      // the scope the upstream asks for wins over the one we computed
      const want = { ...this.#bearer, scope: bearer.scope ?? scope };
      const key = TokenCache.key(want.realm, want.service, want.scope);
      if (sent?.kind === 'bearer' && sent.key === key && sent.fresh === true) throw this.#denied('refused a fresh token');
      return this.#bearerFor(want, sent?.kind === 'bearer' && sent.key === key ? sent.token : undefined, signal);
    }
    if (challenges.some((c) => c.scheme === 'basic')) {
      if (this.#credentials === undefined) throw this.#denied('asks for credentials and none are configured');
      if (sent?.kind === 'basic') throw this.#denied('refused the configured credentials');
      this.#basic = true;
      return { header: basicHeader(this.#credentials), kind: 'basic' };
    }
    throw this.#denied('asks for an authentication sigil cannot provide');
  }

  /** The upstream refused the credential of a retry. */
  deniedAfterRetry(): SigilError {
    return this.#denied('refused access after authentication');
  }

  #denied(why: string): SigilError {
    return new SigilError({ code: 'UPSTREAM_DENIED', message: `upstream ${this.#upstream} ${why}` });
  }

  async #bearerFor(
    want: { realm: URL; service?: string; scope?: string },
    rejected: string | undefined,
    signal: AbortSignal | undefined,
  ): Promise<SentCredential> {
    const key = TokenCache.key(want.realm, want.service, want.scope);
    // the shared fetch runs on its own deadline: one caller giving up does not fail the others
    const got = await abortable(
      this.#tokens.get(key, () => this.#fetchToken(want), rejected),
      signal,
    );
    return { header: `Bearer ${got.token}`, kind: 'bearer', key, token: got.token, fresh: got.fresh };
  }

  async #fetchToken(want: { realm: URL; service?: string; scope?: string }): Promise<TokenAnswer> {
    const url = new URL(want.realm.href);
    if (want.service !== undefined) url.searchParams.set('service', want.service);
    // Docker token spec: several scopes are several `scope` parameters
    for (const s of (want.scope ?? '').split(' ')) if (s !== '') url.searchParams.append('scope', s);
    const headers: Record<string, string> = { accept: 'application/json' };
    // no downgrade: credentials configured for an https upstream are not sent in clear text
    const sendCredentials = this.#credentials !== undefined && (url.protocol === 'https:' || !this.#upstreamSecure);
    if (sendCredentials && this.#credentials !== undefined) headers.authorization = basicHeader(this.#credentials);
    const controller = new AbortController();
    const timer = setTimeout(() => {
      controller.abort(
        new SigilError({
          code: 'UPSTREAM_TIMEOUT',
          message: `upstream ${this.#upstream}: token server ${url.host} did not answer within ${this.#tokenDeadlineMs} ms`,
        }),
      );
    }, this.#tokenDeadlineMs);
    try {
      const res = await this.#http.send('token', 'GET', url, headers, controller.signal);
      if (res.status !== 200) {
        await this.#http.discard(res.body);
        if (res.status === 401 || res.status === 403) {
          throw this.#denied(
            `token server ${url.host} refused ${sendCredentials ? 'the configured credentials' : 'anonymous access'} (${res.status})`,
          );
        }
        if (res.status === 429) {
          const retryAfter = headerValue(res.headers, 'retry-after');
          throw new SigilError({
            code: 'UPSTREAM_TOOMANYREQUESTS',
            message: `upstream ${this.#upstream}: token server ${url.host} is rate limiting (429)`,
            headers: retryAfter !== undefined && /^[0-9A-Za-z ,:+-]{1,64}$/.test(retryAfter) ? { 'Retry-After': retryAfter } : undefined,
          });
        }
        throw new SigilError({
          code: 'UPSTREAM_BAD_RESPONSE',
          message: `upstream ${this.#upstream}: token server ${url.host} answered ${res.status}`,
        });
      }
      const body = await this.#http.readCapped(res, TOKEN_RESPONSE_MAX_BYTES, () =>
        new SigilError({
          code: 'UPSTREAM_BAD_RESPONSE',
          message: `upstream ${this.#upstream}: token answer from ${url.host} exceeds ${TOKEN_RESPONSE_MAX_BYTES} bytes`,
        }),
      );
      const answer = parseTokenAnswer(body);
      if (answer === undefined) {
        throw new SigilError({
          code: 'UPSTREAM_BAD_RESPONSE',
          message: `upstream ${this.#upstream}: token server ${url.host} sent no usable token`,
        });
      }
      return answer;
    } finally {
      clearTimeout(timer);
    }
  }
}
