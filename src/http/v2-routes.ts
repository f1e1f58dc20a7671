import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Config } from '../config/types.js';
import { SigilError } from '../errors.js';
import type { Digest } from '../oci/digest.js';
import type { ManifestGate } from '../gate/manifest-gate.js';
import type { Registry } from '../oci/registry.js';
import { requireCredentials, type BasicAuthChecker } from './client-auth.js';
import { route, type Routed } from './route.js';
import { answerReferrers } from './referrers.js';
import { answerTags } from './tags.js';

export const API_VERSION_HEADER = { 'docker-distribution-api-version': 'registry/2.0' } as const;

export interface V2Deps {
  readonly config: Config;
  readonly gate: ManifestGate;
  readonly clients: ReadonlyMap<string, Registry>;
  /** With `server.auth`: every route below needs these credentials. */
  readonly auth: BasicAuthChecker | null;
  /** `serve --offline`: the content store is the only source. */
  readonly offline: boolean;
}

/** The methods that read; every other method on a /v2/ route answers 405. */
const PULL_METHODS: readonly string[] = ['GET', 'HEAD'];

type Query = Record<string, string | string[] | undefined>;

function one(q: Query, key: string): string | undefined {
  const v = q[key];
  return Array.isArray(v) ? v[0] : v;
}

/**
 * The pull side of the OCI Distribution Spec under /v2/; push and delete answer 405.
 * `depsOf(req)` gives what a request is served with: the config generation it started under.
 *
 * The routes live in one encapsulated plugin whose onRequest hook runs for every request the
 * router matches to one of them, however its target was spelled (`/%762/…`, absolute-form,
 * `#`, `;` — the router decodes and cuts; a string test of the raw URL would not see the same
 * path). The hook runs before any body is read: credentials first, then the 405 for methods
 * that would write. A request that matches no route gets the 404 handler and never a route.
 */
export function registerV2Routes(app: FastifyInstance, depsOf: (req: FastifyRequest) => V2Deps): void {
  app.register(async (v2) => {
    v2.addHook('onRequest', async (req, reply) => {
      const { auth } = depsOf(req);
      if (auth) await requireCredentials(auth, req, reply);
      if (!PULL_METHODS.includes(req.method)) {
        req.sigilRoute = 'push';
        throw unsupported(req.method);
      }
    });
    const refused = v2.supportedMethods.filter((m) => !PULL_METHODS.includes(m));
    for (const url of ['/v2', '/v2/', '/v2/*']) {
      // Never reached (the hook answers first); here so that these methods match a route.
      v2.route({
        method: refused,
        url,
        handler: async (req) => {
          throw unsupported(req.method);
        },
      });
    }
    registerPullRoutes(v2, depsOf);
  });
}

function registerPullRoutes(app: FastifyInstance, depsOf: (req: FastifyRequest) => V2Deps): void {
  const base = async (_req: FastifyRequest, reply: FastifyReply) => {
    reply.headers(API_VERSION_HEADER).type('application/json');
    return '{}';
  };
  app.route({ method: [...PULL_METHODS], url: '/v2/', exposeHeadRoute: false, handler: base });
  app.route({ method: [...PULL_METHODS], url: '/v2', exposeHeadRoute: false, handler: base });

  app.route({
    method: [...PULL_METHODS],
    url: '/v2/*',
    exposeHeadRoute: false,
    handler: async (req, reply) => {
      const deps = depsOf(req);
      const params = req.params as { '*': string };
      const query = req.query as Query;
      const r = route(deps.config, params['*'], one(query, 'ns'));
      req.sigilRoute = r.endpoint.kind;
      reply.headers(API_VERSION_HEADER);
      const client = deps.clients.get(r.upstream.name);
      if (!client) throw new SigilError({ code: 'INTERNAL', message: `no client for upstream '${r.upstream.name}'` });
      switch (r.endpoint.kind) {
        case 'manifest':
          return manifest(req, reply, deps, r, r.endpoint.reference);
        case 'blob':
          // A denied manifest must not come back through the blob endpoint (containerd asks for it there).
          if (deps.gate.wasDenied(r.upstream.name, r.repository, r.endpoint.digest)) {
            throw new SigilError({ code: 'POLICY_DENIED', message: `${r.endpoint.digest} was denied as a manifest of ${r.repository}`, reasonPhrase: 'sigil: denied as a manifest' });
          }
          return blob(req, reply, deps, client, r, r.endpoint.digest as Digest);
        case 'tags':
          return answerTags(reply, client, r, query);
        case 'referrers':
          return answerReferrers(reply, client, r, r.endpoint.digest as Digest, one(query, 'artifactType'));
        case 'upload':
          throw unsupported(req.method);
      }
    },
  });
}

export function unsupported(method: string): SigilError {
  return new SigilError({
    code: 'UNSUPPORTED',
    message: `sigil is a read-only pull proxy: ${method} is not supported`,
  });
}

async function manifest(req: FastifyRequest, reply: FastifyReply, deps: V2Deps, r: Routed, reference: string) {
  const accept = req.headers.accept;
  const d = await deps.gate.decide({
    upstream: r.upstream.name,
    repository: r.repository,
    reference,
    accept: typeof accept === 'string' && accept !== '' && accept !== '*/*' ? accept : undefined,
  });
  reply.headers({
    'content-type': d.manifest.mediaType,
    'docker-content-digest': d.manifest.digest,
    etag: `"${d.manifest.digest}"`,
    'sigil-verification': d.verification,
  });
  if (d.policy) reply.header('sigil-policy', headerSafe(d.policy.name));
  if (d.signer) reply.header('sigil-signer', headerSafe(d.signer));
  if (d.warning) reply.header('warning', warningHeader(d.warning));
  if (d.manifest.stale) reply.header('sigil-stale', 'true');
  // node:http drops the body of a HEAD answer and keeps Content-Length: GET and HEAD agree.
  return reply.send(d.manifest.bytes);
}

/**
 * The longest Warning text sent, in characters: the text lists every signature that failed, and
 * a manifest with dozens of hostile signatures made it ~30 KB, past the header buffers of common
 * reverse proxies (nginx: 4–8 KiB for all of them), which would answer 502 for an image warn
 * mode serves. The whole reason is in the audit log and `sigil verify`.
 */
export const WARNING_TEXT_MAX_CHARS = 1024;

/**
 * RFC 9111 Warning: `299 - "<text>"`. The text may quote upstream error messages: anything
 * outside printable ASCII (node refuses it in a header) and quotes/backslashes are replaced;
 * past WARNING_TEXT_MAX_CHARS it is cut, ending in `...`.
 */
export function warningHeader(text: string): string {
  const safe = text.replace(/[^\x20-\x7e]|["\\]/g, '?');
  const cut = safe.length > WARNING_TEXT_MAX_CHARS ? `${safe.slice(0, WARNING_TEXT_MAX_CHARS - 3)}...` : safe;
  return `299 - "${cut}"`;
}

/** Header values must be visible ASCII: a certificate SAN or policy name outside it is %-encoded. */
function headerSafe(text: string): string {
  return text.replace(/[^\x20-\x7e]/gu, (c) => encodeURIComponent(c));
}

async function blob(req: FastifyRequest, reply: FastifyReply, deps: V2Deps, client: Registry, r: Routed, digest: Digest) {
  const range = req.headers.range;
  // Under enforce a stored blob is served only while a manifest that passes names it here;
  // otherwise it comes from the upstream as it would without a store (offline: refused).
  const allowed = await deps.gate.storedBlobAllowed(r.upstream.name, r.repository, digest);
  if (allowed === 'not-stored' && deps.offline) {
    throw new SigilError({ code: 'BLOB_UNKNOWN', message: `${r.upstream.name}/${r.repository}: blob ${digest} is not in the content store` });
  }
  const fromStore = allowed === true;
  if (!fromStore && deps.offline) {
    throw new SigilError({
      code: 'POLICY_DENIED',
      message: `${r.upstream.name}/${r.repository}: blob ${digest} is named by no stored manifest that passes the policy`,
      reasonPhrase: 'sigil: no verified manifest names this blob',
    });
  }
  const res = await client.openBlob(r.repository, digest, {
    method: req.method === 'HEAD' ? 'HEAD' : 'GET',
    range: typeof range === 'string' ? range : undefined,
    // The blobs of a signature artifact are served only as the bytes that were checked.
    ...(deps.gate.isSignatureBlob(r.upstream.name, r.repository, digest) ? { verifyDigest: true } : {}),
    ...(fromStore ? {} : { skipStore: true }),
  });
  if (res.status === 307 && (deps.offline || req.method !== 'GET' || range !== undefined)) {
    // a redirect (registry/shared-redirect.ts) is only ever the answer to a whole-blob GET while online
    res.body?.destroy();
    throw new SigilError({ code: 'INTERNAL', message: `${r.upstream.name}/${r.repository}: blob ${digest} answered with a redirect where none may be` });
  }
  reply.code(res.status).headers(res.headers).header('docker-content-digest', digest);
  if (res.body === null) return reply.send();
  // A client that goes away must not leave the upstream download running.
  reply.raw.once('close', () => {
    if (!reply.raw.writableFinished) res.body?.destroy();
  });
  return reply.send(res.body);
}
