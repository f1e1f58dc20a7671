import type { FastifyInstance } from 'fastify';
import { buildApp, defaultDeps, type AppDeps } from '../app.js';
import { createLogger, LOG_FORMATS, type LogFormat } from '../audit/logger.js';
import { deepFreeze } from '../config/compile.js';
import { formatProblems, loadConfig, type LoadResult } from '../config/load.js';
import { namedFiles } from '../config/named-files.js';
import { parseListen } from '../config/schema.js';
import type { Config, ListenAddress } from '../config/types.js';
import type { ReloadOutcome } from '../reload/reloader.js';
import { FileWatcher } from '../reload/watch.js';
import type { CliIo } from './io.js';

/** How long in-flight requests may drain after SIGTERM before sigil exits anyway. */
export const SHUTDOWN_GRACE_MS = 30_000;
/** While draining, connections that went idle are closed this often. */
export const IDLE_SWEEP_MS = 100;

export interface Served {
  readonly app: FastifyInstance;
  /** Reloads the config and the files it names (SIGHUP); never rejects. */
  reload(trigger: string): Promise<ReloadOutcome>;
  /** Drains in-flight requests and closes; resolves to the exit code. */
  stop(): Promise<number>;
}

export interface ServeOptions {
  readonly config?: string;
  readonly offline: boolean;
  /** `--listen`, else `$SIGIL_LISTEN`: overrides `server.listen`, at start and on every reload. */
  readonly listen?: { readonly value: string; readonly from: string };
  /** `--log-format`: json (default) or pretty. */
  readonly logFormat?: string;
}

/** `config` listening on `listen` instead of its `server.listen`. */
function listeningOn(config: Config, listen: ListenAddress): Config {
  return deepFreeze({ ...config, server: { ...config.server, listen } });
}

/** Loads the config and listens; reloads on request and when a file the config names changes. Returns an exit code when it cannot start. */
export async function startServe(io: CliIo, opts: ServeOptions): Promise<Served | number> {
  const logFormat = (opts.logFormat ?? 'json') as LogFormat;
  if (!LOG_FORMATS.includes(logFormat)) {
    io.stderr(`sigil: --log-format: expected ${LOG_FORMATS.join(' or ')}, got '${opts.logFormat}'\n`);
    return 2;
  }
  const listen = opts.listen && parseListen(opts.listen.value);
  if (typeof listen === 'string') {
    io.stderr(`sigil: ${opts.listen?.from}: ${listen}\n`);
    return 2;
  }
  const load = async (): Promise<LoadResult> => {
    const res = await loadConfig({ path: opts.config, env: io.env, cwd: io.cwd });
    return res.ok && listen ? { ...res, config: listeningOn(res.config, listen) } : res;
  };
  const res = await load();
  if (!res.ok) {
    io.stderr(formatProblems(res.problems, res.source) + '\n');
    return 2;
  }
  const config = res.config;
  let deps: AppDeps;
  try {
    deps = await defaultDeps(config, { offline: opts.offline, logger: createLogger(config.server.logLevel, undefined, logFormat), loadConfig: load });
  } catch (err) {
    io.stderr(`sigil: ${config.source}: ${(err as Error).message}\n`);
    return 2;
  }
  for (const w of res.warnings) deps.logger.warn({ path: w.path }, `config: ${w.message}`);
  const app = await buildApp(config, deps);
  const reload = async (trigger: string): Promise<ReloadOutcome> => {
    const outcome = await app.sigilConfig.reload(trigger);
    // The files of the config now serving (a refused reload keeps the running one's).
    await watcher.watch(namedFiles(app.sigilConfig.current.config));
    return outcome;
  };
  const watcher = new FileWatcher({
    logger: deps.logger,
    onChange: (files) => {
      deps.logger.info({ files }, 'config: files changed');
      void reload('file change');
    },
  });
  // Watching before listening: once sigil answers, it is served (main.ts: SIGHUP reloads) and sees every change.
  await watcher.watch(namedFiles(config));
  try {
    await app.listen({ host: config.server.listen.host, port: config.server.listen.port });
  } catch (err) {
    watcher.close();
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
    reload,
    stop: () => {
      stopping ??= (async () => {
        watcher.close();
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
