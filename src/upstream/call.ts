import type { Metrics } from '../audit/metrics.js';
import { SigilError, isSigilError } from '../errors.js';
import type { SigilErrorCode } from '../errors.js';
import type { Authenticator } from './auth.js';
import { sendAuthorized } from './authorized.js';
import type { UpstreamRequest } from './authorized.js';
import { parseDistributionError, statusError } from './error-map.js';
import type { Exchange, UpstreamHttp } from './http.js';
import { followRedirects } from './redirects.js';
import type { RequestKind } from './types.js';

/**
 * What one upstream endpoint is (manifests.ts, blobs.ts, tags.ts, referrers.ts): only what differs
 * between endpoints. Everything they share is `Caller.call`.
 */
export interface Endpoint<T> {
  readonly kind: RequestKind;
  /** What is asked for, in messages: "manifest library/nginx:latest". */
  readonly what: string;
  readonly method: 'GET' | 'HEAD';
  /** A path on the upstream's origin, built from validated parts only. */
  readonly path: string;
  /** Query parameters, in this order. */
  readonly query?: Readonly<Record<string, string>>;
  readonly headers?: Readonly<Record<string, string>>;
  /** Token scope (`pullScope(repository)`); none for ping. */
  readonly scope?: string;
  /**
   * True: the whole call (token round trip and retry, body read) runs under the metadata
   * deadline. False (blobs): the body streams on after the call returns, under the idle timeout.
   */
  readonly deadline: boolean;
  /** Follow redirects (redirects.ts): blobs live on storage hosts. */
  readonly followRedirects?: boolean;
  /** The statuses `answer` takes; any other becomes error-map.ts's SigilError. */
  readonly answers: readonly number[];
  /** The code of a 404 (MANIFEST_UNKNOWN, BLOB_UNKNOWN, NAME_UNKNOWN); absent: 404 is UPSTREAM_ERROR. */
  readonly notFound?: SigilErrorCode;
  /** Reads an answer whose status is one of `answers`. */
  answer(res: Exchange, call: CallContext): Promise<T>;
}

/** What an endpoint's `answer` may use. */
export interface CallContext {
  readonly http: UpstreamHttp;
  /** "upstream docker.io: manifest library/nginx:latest": how every message of this call starts. */
  readonly describe: string;
  /** The deadline's signal (undefined without a deadline). */
  readonly signal: AbortSignal | undefined;
  /** Counts a failure that surfaces after the call returned (a blob stream cut off). */
  countError(err: unknown): void;
}

/** Arms a timer that calls `fire` after `ms`; returns its cancel. Tests inject one they fire by hand. */
export type Schedule = (fire: () => void, ms: number) => () => void;

const realTimer: Schedule = (fire, ms) => {
  const timer = setTimeout(fire, ms);
  return () => clearTimeout(timer);
};

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
 * The one skeleton of every call to one upstream: URL on the upstream's origin (nothing else),
 * metadata deadline, auth with one retry on 401 (authorized.ts), redirects (redirects.ts), status →
 * SigilError (error-map.ts), failures counted by kind and code. Requests are sent, counted and
 * logged per kind by http.ts.
 */
export class Caller {
  readonly #upstream: string;
  readonly #origin: URL;
  readonly #http: UpstreamHttp;
  readonly #auth: Authenticator;
  readonly #metrics: Metrics;
  readonly #deadlineMs: number;
  readonly #schedule: Schedule;

  constructor(opts: {
    upstream: string;
    origin: URL;
    http: UpstreamHttp;
    auth: Authenticator;
    metrics: Metrics;
    deadlineMs: number;
    /** Arms the metadata deadline (default: a real timer). */
    schedule?: Schedule;
  }) {
    this.#upstream = opts.upstream;
    this.#origin = opts.origin;
    this.#http = opts.http;
    this.#auth = opts.auth;
    this.#metrics = opts.metrics;
    this.#deadlineMs = opts.deadlineMs;
    this.#schedule = opts.schedule ?? realTimer;
  }

  /** Calls `ep`; whatever fails is a SigilError (anything else is a bug, reported as INTERNAL) and is counted. */
  async call<T>(ep: Endpoint<T>): Promise<T> {
    try {
      return ep.deadline ? await this.#withDeadline(ep.what, (signal) => this.#exchange(ep, signal)) : await this.#exchange(ep, undefined);
    } catch (err) {
      const e = isSigilError(err)
        ? err
        : new SigilError({ code: 'INTERNAL', message: `upstream ${this.#upstream}: ${ep.kind} failed unexpectedly`, cause: err });
      this.#countError(ep.kind, e);
      throw e;
    }
  }

  async #exchange<T>(ep: Endpoint<T>, signal: AbortSignal | undefined): Promise<T> {
    const describe = `upstream ${this.#upstream}: ${ep.what}`;
    const req: UpstreamRequest = {
      kind: ep.kind,
      method: ep.method,
      url: this.#url(ep.path, ep.query),
      headers: ep.headers ?? {},
      scope: ep.scope,
      signal,
    };
    const first = await sendAuthorized(this.#http, this.#auth, req);
    const res = ep.followRedirects === true ? await followRedirects(first, req, { http: this.#http, origin: this.#origin.origin, describe }) : first.res;
    if (!ep.answers.includes(res.status)) {
      const body = await this.#http.readErrorBody(res);
      const ctx = { upstream: this.#upstream, what: ep.what, ...(ep.notFound !== undefined ? { notFound: ep.notFound } : {}) };
      throw statusError(ctx, res.status, res.headers, parseDistributionError(body));
    }
    return ep.answer(res, { http: this.#http, describe, signal, countError: (err) => this.#countError(ep.kind, err) });
  }

  /** A URL on the upstream's origin; the path is built from validated parts only. */
  #url(path: string, query: Readonly<Record<string, string>> = {}): URL {
    const url = new URL(path, this.#origin);
    if (url.origin !== this.#origin.origin) {
      throw new SigilError({ code: 'INTERNAL', message: `upstream ${this.#upstream}: refusing a URL off the upstream` });
    }
    for (const [k, v] of Object.entries(query)) url.searchParams.set(k, v);
    return url;
  }

  /** Runs `fn` under the metadata deadline: past it, UPSTREAM_TIMEOUT (never a hang). */
  async #withDeadline<T>(what: string, fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
    const ms = this.#deadlineMs;
    const controller = new AbortController();
    const cancel = this.#schedule(() => {
      controller.abort(new SigilError({ code: 'UPSTREAM_TIMEOUT', message: `upstream ${this.#upstream}: ${what}: no answer within ${ms} ms` }));
    }, ms);
    try {
      return await fn(controller.signal);
    } finally {
      cancel();
    }
  }

  #countError(kind: RequestKind, err: unknown): void {
    const code = isSigilError(err) ? err.code : 'INTERNAL';
    if (NOT_FAILURES.has(code)) return;
    this.#metrics.upstreamErrors.inc({ upstream: this.#upstream, kind, code });
  }
}
