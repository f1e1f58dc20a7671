import type { FastifyError, FastifyInstance } from 'fastify';
import { isSigilError, ociErrorBody } from '../errors.js';
import { reasonPhrase } from './reason-phrase.js';

/** Every error leaves as a distribution-spec error body; SigilError codes map through ERROR_TABLE. */
/** Headers a handler may have set for content that an error answer must not carry. */
const CONTENT_HEADERS = ['docker-content-digest', 'content-range', 'accept-ranges', 'etag', 'content-length', 'sigil-verification', 'sigil-policy', 'sigil-signer', 'sigil-stale', 'warning'];

export function registerErrorHandling(app: FastifyInstance): void {
  app.setErrorHandler((err: FastifyError | Error, req, reply) => {
    for (const h of CONTENT_HEADERS) reply.removeHeader(h);
    if (isSigilError(err)) {
      // Expected outcomes (404s, denials, upstream trouble) are logged once here, at info/warn.
      const level = err.status >= 500 ? 'warn' : 'info';
      req.log[level]({ code: err.code, status: err.status, err: err.cause ? String(err.cause) : undefined }, err.message);
      reply.code(err.status).headers(err.headers).type('application/json');
      // Go clients (containerd) print only the status line: a denial says why there too.
      const phrase = err.reasonPhrase === undefined ? '' : reasonPhrase(err.reasonPhrase);
      if (phrase !== '') reply.raw.statusMessage = phrase;
      return reply.send(ociErrorBody(err.oci, err.message, err.detail));
    }
    const status = 'statusCode' in err && typeof err.statusCode === 'number' && err.statusCode >= 400 ? err.statusCode : 500;
    if (status >= 500) req.log.error({ err }, 'internal error');
    reply.code(status).type('application/json');
    const message = status >= 500 ? 'internal error' : err.message;
    return reply.send(ociErrorBody(status === 401 ? 'UNAUTHORIZED' : 'UNKNOWN', message));
  });
  app.setNotFoundHandler((req, reply) => {
    reply.code(404).type('application/json');
    const code = req.url.startsWith('/v2/') ? 'NAME_UNKNOWN' : 'NOT_FOUND';
    return reply.send(ociErrorBody(code, `no route for ${req.method} ${req.url.split('?')[0]}`));
  });
}
