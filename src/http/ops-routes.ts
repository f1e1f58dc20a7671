import type { FastifyInstance } from 'fastify';
import type { Metrics } from '../audit/metrics.js';

export interface Readiness {
  /** Each check's name → null when fine, else what is wrong. */
  checks(): Record<string, string | null>;
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
    reply.code(ok ? 200 : 503).type('application/json');
    return JSON.stringify({ status: ok ? 'ready' : 'not ready', checks });
  });
  app.get('/metrics', async (_req, reply) => {
    reply.type(metrics.registry.contentType);
    return metrics.registry.metrics();
  });
}
