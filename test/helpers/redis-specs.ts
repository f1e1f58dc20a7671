import { after, before, beforeEach } from 'node:test';
import { Redis } from 'iovalkey';
import { Coordinator } from '../../src/shared/coordinator.js';
import { silentLogger } from './fake-registry.js';
import { startRedisServer, type RedisServer } from './redis-server.js';

/** How long a coordinator on the spec file's own server may take to connect (a guard against a hang). */
const UP_GUARD_MS = 10_000;

export interface RedisForSpecs {
  /** The spec file's redis-server (started before its tests). */
  readonly server: RedisServer;
  /** A plain client, for what a test plants in Redis or reads past the coordinator. */
  readonly raw: Redis;
  /**
   * A coordinator on `url` (default: this server), closed after the file's tests; on this server
   * it is connected before it is returned.
   */
  connect(url?: string): Promise<Coordinator>;
}

/**
 * One real redis-server for a spec file: started before its tests, emptied before each, stopped
 * after them with the coordinators its tests connected. Call it at the top level of the file.
 */
export function redisForSpecs(): RedisForSpecs {
  let server: RedisServer | undefined;
  let raw: Redis | undefined;
  const coordinators: Coordinator[] = [];
  before(async () => {
    server = await startRedisServer();
    raw = new Redis(server.url);
  });
  beforeEach(async () => {
    await raw?.flushdb();
  });
  after(async () => {
    await Promise.all(coordinators.map((c) => c.close()));
    raw?.disconnect();
    await server?.stop();
  });
  const started = <T>(v: T | undefined): T => {
    if (v === undefined) throw new Error('redisForSpecs: used outside a test (its before hook has not run)');
    return v;
  };
  return {
    get server() {
      return started(server);
    },
    get raw() {
      return started(raw);
    },
    async connect(url = started(server).url) {
      const c = Coordinator.connect({ url, logger: silentLogger() });
      coordinators.push(c);
      if (url === started(server).url && !(await c.waitUntilUp(UP_GUARD_MS))) throw new Error(`redis at ${url} did not answer`);
      return c;
    },
  };
}
