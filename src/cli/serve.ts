import type { FastifyInstance } from 'fastify';
import { buildApp, defaultDeps, type AppDeps } from '../app.js';
import { formatProblems, loadConfig } from '../config/load.js';
import type { CliIo } from './io.js';

/** How long in-flight requests may drain after SIGTERM before sigil exits anyway. */
export const SHUTDOWN_GRACE_MS = 30_000;
/** While draining, connections that went idle are closed this often. */
export const IDLE_SWEEP_MS = 100;

export interface Served {
  readonly app: FastifyInstance;
  /** Drains in-flight requests and closes; resolves to the exit code. */
  stop(): Promise<number>;
}

/** Loads the config and listens. Returns null (after printing why) when it cannot start. */
export async function startServe(io: CliIo, opts: { config?: string; offline: boolean }): Promise<Served | number> {
  const res = await loadConfig({ path: opts.config, env: io.env, cwd: io.cwd });
  if (!res.ok) {
    io.stderr(formatProblems(res.problems, res.source) + '\n');
    return 2;
  }
  const config = res.config;
  let deps: AppDeps;
  try {
    deps = await defaultDeps(config, { offline: opts.offline });
  } catch (err) {
    io.stderr(`sigil: ${config.source}: ${(err as Error).message}\n`);
    return 2;
  }
  for (const w of res.warnings) deps.logger.warn({ path: w.path }, `config: ${w.message}`);
  const app = await buildApp(config, deps);
  try {
    await app.listen({ host: config.server.listen.host, port: config.server.listen.port });
  } catch (err) {
    io.stderr(`sigil: cannot listen on ${config.server.listen.host}:${config.server.listen.port}: ${(err as Error).message}\n`);
    await app.close();
    return 1;
  }
  deps.logger.info(
    { config: config.source, upstreams: config.upstreams.map((u) => u.name), tls: Boolean(config.server.tls), offline: opts.offline, store: config.cache.store?.dir },
    'sigil is serving',
  );
  let stopping: Promise<number> | null = null;
  return {
    app,
    stop: () => {
      stopping ??= (async () => {
        deps.logger.info('draining in-flight requests');
        let timer: NodeJS.Timeout | undefined;
        const deadline = new Promise<number>((resolve) => {
          timer = setTimeout(() => resolve(1), SHUTDOWN_GRACE_MS);
          timer.unref();
        });
        // A keep-alive connection whose request finishes during the drain becomes idle
        // afterwards; node only closes the ones idle when close() starts, so keep closing them.
        const idle = setInterval(() => app.server.closeIdleConnections(), IDLE_SWEEP_MS);
        const closed = app.close().then(() => 0);
        const code = await Promise.race([closed, deadline]);
        clearTimeout(timer);
        clearInterval(idle);
        deps.logger.info({ code }, 'stopped');
        return code;
      })();
      return stopping;
    },
  };
}
