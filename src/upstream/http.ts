import { performance } from 'node:perf_hooks';
import { request } from 'undici';
import type { Dispatcher } from 'undici';
import type { Logger } from 'pino';
import type { Metrics } from '../audit/metrics.js';
import type { SigilError } from '../errors.js';
import { networkError } from './error-map.js';
import { ERROR_BODY_MAX_BYTES, USER_AGENT } from './limits.js';
import type { Timeouts } from './limits.js';
import type { RequestKind } from './types.js';

/** One upstream answer: status and headers received, body not yet read. */
export interface Exchange {
  readonly status: number;
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  readonly body: Dispatcher.ResponseData['body'];
  readonly url: URL;
}

/**
 * Sends single requests on the upstream's undici agent: maps network failures
 * to SigilErrors, records metrics, logs at debug level (host and path only:
 * never headers, never the query of a signed redirect URL).
 */
export class UpstreamHttp {
  readonly #upstream: string;
  readonly #dispatcher: Dispatcher;
  readonly #metrics: Metrics;
  readonly #logger: Logger;
  readonly #timeouts: Timeouts;

  constructor(opts: { upstream: string; dispatcher: Dispatcher; metrics: Metrics; logger: Logger; timeouts: Timeouts }) {
    this.#upstream = opts.upstream;
    this.#dispatcher = opts.dispatcher;
    this.#metrics = opts.metrics;
    this.#logger = opts.logger;
    this.#timeouts = opts.timeouts;
  }

  async send(
    kind: RequestKind,
    method: 'GET' | 'HEAD',
    url: URL,
    headers: Readonly<Record<string, string>>,
    signal: AbortSignal | undefined,
  ): Promise<Exchange> {
    const start = performance.now();
    const log = { upstream: this.#upstream, kind, method, host: url.host, path: url.pathname };
    let res: Dispatcher.ResponseData;
    try {
      res = await request(url, {
        method,
        headers: { 'user-agent': USER_AGENT, ...headers },
        dispatcher: this.#dispatcher,
        headersTimeout: this.#timeouts.headersMs,
        bodyTimeout: this.#timeouts.bodyIdleMs,
        ...(signal !== undefined ? { signal } : {}),
      });
    } catch (err) {
      const ms = Math.round(performance.now() - start);
      const mapped = this.#map(err, url, signal);
      this.#logger.debug({ ...log, ms, error: mapped.code }, 'upstream request failed');
      throw mapped;
    }
    const ms = performance.now() - start;
    this.#metrics.upstreamRequests.inc({ upstream: this.#upstream, kind, status: String(res.statusCode) });
    this.#metrics.upstreamDuration.observe({ upstream: this.#upstream, kind }, ms / 1000);
    this.#logger.debug({ ...log, status: res.statusCode, ms: Math.round(ms) }, 'upstream request');
    return { status: res.statusCode, headers: res.headers, body: res.body, url };
  }

  /** Reads a whole body, failing with `tooLarge()` as soon as it passes `max` bytes. */
  async readCapped(res: Exchange, max: number, tooLarge: () => SigilError, signal?: AbortSignal): Promise<Buffer> {
    const chunks: Buffer[] = [];
    let size = 0;
    try {
      for await (const chunk of res.body) {
        const b = chunk as Buffer;
        size += b.length;
        if (size > max) {
          res.body.destroy();
          throw tooLarge();
        }
        chunks.push(b);
      }
    } catch (err) {
      throw this.#map(err, res.url, signal);
    }
    return Buffer.concat(chunks, size);
  }

  /** Reads at most ERROR_BODY_MAX_BYTES of a body (an error answer), never failing. */
  async readErrorBody(res: Exchange): Promise<Buffer> {
    const chunks: Buffer[] = [];
    let size = 0;
    try {
      for await (const chunk of res.body) {
        const b = chunk as Buffer;
        const room = ERROR_BODY_MAX_BYTES - size;
        chunks.push(b.length > room ? b.subarray(0, room) : b);
        size += Math.min(b.length, room);
        if (size >= ERROR_BODY_MAX_BYTES) {
          res.body.destroy();
          break;
        }
      }
    } catch {
      // an unreadable error body is just an error without details
    }
    return Buffer.concat(chunks, size);
  }

  /** Throws a body away (reusing the connection when it is small). */
  async discard(body: Exchange['body']): Promise<void> {
    try {
      await body.dump({ limit: ERROR_BODY_MAX_BYTES });
    } catch {
      // nothing to do: the socket is closed instead of reused
    }
  }

  /** Maps a failure; an abort by our own deadline yields the deadline's SigilError. */
  map(err: unknown, url: URL): SigilError {
    return networkError(err, this.#upstream, url.host);
  }

  #map(err: unknown, url: URL, signal: AbortSignal | undefined): SigilError {
    if (signal?.aborted === true && signal.reason !== undefined) return networkError(signal.reason, this.#upstream, url.host);
    return networkError(err, this.#upstream, url.host);
  }
}
