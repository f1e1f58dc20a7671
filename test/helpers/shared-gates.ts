// What the specs of gates sharing verdicts through Redis start from: a real registry (its signing
// keys), a real redis-server, a config with one enforce policy (the P-256 key, `tlog: ignore`),
// the app's dependencies on it, and Redis connections closed at the end.
import assert from 'node:assert/strict';
import { defaultDeps, type AppDeps } from '../../src/app.js';
import { createLogger } from '../../src/audit/logger.js';
import type { Config } from '../../src/config/types.js';
import { Coordinator } from '../../src/shared/coordinator.js';
import { startRedisServer, type RedisServer } from './redis-server.js';
import { compileConfig } from './sigil.js';
import { UPSTREAM, startVerifyEnv, type VerifyEnv } from './verify-env.js';

/** How long a new connection may take to reach the redis-server. */
const CONNECT_TIMEOUT_MS = 10_000;

export interface SharedGateEnv {
  readonly env: VerifyEnv;
  readonly redis: RedisServer;
  readonly config: Config;
  readonly deps: AppDeps;
  /** A new connection to the Redis, as one process of the cache has (closed by `stop`). */
  connect(): Promise<Coordinator>;
  stop(): Promise<void>;
}

export async function startSharedGateEnv(): Promise<SharedGateEnv> {
  const env = await startVerifyEnv();
  const redis = await startRedisServer();
  const config = await compileConfig(
    [
      'server:',
      '  listen: 127.0.0.1:0',
      'upstreams:',
      `  - name: ${UPSTREAM}`,
      `    url: ${env.registry.url}`,
      `defaultUpstream: ${UPSTREAM}`,
      'policies:',
      '  - name: signed',
      '    match: ["**"]',
      '    mode: enforce',
      '    authorities:',
      `      - { key: ${env.keys.p256.path}, tlog: ignore }`,
    ].join('\n'),
  );
  const deps = await defaultDeps(config, { logger: createLogger('silent') });
  const coordinators: Coordinator[] = [];
  return {
    env,
    redis,
    config,
    deps,
    async connect() {
      const c = Coordinator.connect({ url: redis.url, logger: deps.logger });
      coordinators.push(c);
      assert.ok(await c.waitUntilUp(CONNECT_TIMEOUT_MS), 'connected to the redis-server');
      return c;
    },
    async stop() {
      await Promise.all(coordinators.map((c) => c.close()));
      for (const c of deps.clients.values()) await c.close();
      await deps.hashes.close();
      await redis.stop();
      await env.stop();
    },
  };
}
