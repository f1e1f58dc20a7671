import type { FastifyInstance } from 'fastify';
import type { Metrics } from '../audit/metrics.js';
import type { ContentStore } from '../store/content-store.js';

export interface Readiness {
  /** Each check's name → null when fine, else what is wrong: any failing check answers 503. */
  checks(): Record<string, string | null>;
  /**
   * Parts that run degraded but do not stop sigil from serving (the content store cannot write:
   * blobs pass through unstored), name → what is wrong; reported with 200, never 503.
   */
  degraded?(): Record<string, string>;
  /** Details of parts that are not checks (the TUF root in use: its version and age), name → detail. */
  detail?(): Record<string, unknown>;
}

/** Operational endpoints outside /v2/: never behind client auth, never contact an upstream. */
export function registerOpsRoutes(app: FastifyInstance, metrics: Metrics, readiness: Readiness): void {
  app.get('/healthz', async (_req, reply) => {
    reply.type('application/json');
    return '{"status":"ok"}';
  });
  app.get('/readyz', async (_req, reply) => {
    const checks = readiness.checks();
    const ok = Object.values(checks).every((v) => v === null);
    const degraded = readiness.degraded?.() ?? {};
    const detail = readiness.detail?.() ?? {};
    reply.code(ok ? 200 : 503).type('application/json');
    const parts = { ...(Object.keys(degraded).length > 0 ? { degraded } : {}), ...(Object.keys(detail).length > 0 ? { detail } : {}) };
    return JSON.stringify({ status: ok ? 'ready' : 'not ready', checks, ...parts });
  });
  app.get('/metrics', async (_req, reply) => {
    reply.type(metrics.registry.contentType);
    return metrics.registry.metrics();
  });
}

/** The content store's fault for /readyz: it serves on, passing blobs through unstored, until it can write again. */
export function storeDegraded(store: ContentStore | undefined): Record<string, string> {
  const f = store?.fault;
  if (f === undefined) return {};
  const since = new Date(f.since).toISOString();
  const retry = new Date(f.retryAt).toISOString();
  return { store: `not writing since ${since}: ${f.code} (${f.message}); blobs pass through unstored; next try after ${retry}` };
}
