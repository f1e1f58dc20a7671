import { Writable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import { buildApp, defaultDeps, type DepsOptions } from '../../src/app.js';
import type { Metrics } from '../../src/audit/metrics.js';
import type { HashPool } from '../../src/hash/hash-pool.js';
import { createLogger } from '../../src/audit/logger.js';
import { loadConfigFromText } from '../../src/config/load.js';
import type { Config } from '../../src/config/types.js';
import type { Timeouts } from '../../src/upstream/limits.js';
import type { ReloadOutcome } from '../../src/reload/reloader.js';
import type { TufRefresher } from '../../src/trust/tuf-refresher.js';

/** A parsed pino record. */
export type LogRecord = Record<string, unknown> & { level: number; msg?: string };

export interface SigilHandle {
  readonly url: string;
  readonly host: string;
  readonly port: number;
  readonly app: FastifyInstance;
  readonly config: Config;
  readonly metrics: Metrics;
  /** The app's blob hash workers. */
  readonly hashes: HashPool;
  /** Every log line sigil wrote, parsed. */
  readonly logs: LogRecord[];
  /**
   * Reloads as SIGHUP does, from `yamlText` when given (it stays the config text for later
   * reloads), else from the text last given; compiled as at start (same cwd and env).
   */
  reload(yamlText?: string): Promise<ReloadOutcome>;
  /** With trust.tuf: what refreshes the TUF repository's root. */
  readonly tuf?: TufRefresher;
  stop(): Promise<void>;
}

/** Compiles a YAML config the way `sigil serve` does; throws with every problem when it is invalid. */
export async function compileConfig(yamlText: string, opts: { cwd?: string; env?: Record<string, string> } = {}): Promise<Config> {
  const res = await loadConfigFromText(yamlText, { source: 'test.yaml', env: opts.env ?? {}, baseDir: opts.cwd ?? process.cwd() });
  if (!res.ok) throw new Error(`test config invalid:\n${res.problems.map((p) => `${p.path}: ${p.message}`).join('\n')}`);
  return res.config;
}

/** Starts sigil in-process on 127.0.0.1 and a free port, with logs captured for assertions. */
export async function startSigil(
  yamlText: string,
  opts: {
    cwd?: string;
    env?: Record<string, string>;
    timeouts?: Partial<Timeouts>;
    offline?: boolean;
    storeClock?: () => number;
    /** The caches', keeper's and gate's clock (app.ts DepsOptions.now): `fakeClock().now`, moved instead of waited out. */
    now?: () => number;
    staleDeadlineMs?: number;
    verificationDeadlineMs?: number;
    /** trust.tuf's wall clock and refresh timer (app.ts DepsOptions.tuf). */
    tuf?: DepsOptions['tuf'];
  } = {},
): Promise<SigilHandle> {
  const config = await compileConfig(yamlText, opts);
  let text = yamlText;
  const logs: LogRecord[] = [];
  let partial = '';
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      partial += chunk.toString('utf8');
      let nl: number;
      while ((nl = partial.indexOf('\n')) >= 0) {
        const line = partial.slice(0, nl);
        partial = partial.slice(nl + 1);
        if (line.trim()) logs.push(JSON.parse(line) as LogRecord);
      }
      cb();
    },
  });
  const logger = createLogger(config.server.logLevel === 'info' ? 'debug' : config.server.logLevel, sink);
  const deps = await defaultDeps(config, {
    logger,
    timeouts: opts.timeouts,
    offline: opts.offline,
    storeClock: opts.storeClock,
    now: opts.now,
    staleDeadlineMs: opts.staleDeadlineMs,
    verificationDeadlineMs: opts.verificationDeadlineMs,
    loadConfig: () => loadConfigFromText(text, { source: 'test.yaml', env: opts.env ?? {}, baseDir: opts.cwd ?? process.cwd() }),
    tuf: opts.tuf,
  });
  const app = await buildApp(config, deps);
  await app.listen({ host: '127.0.0.1', port: 0 });
  const address = app.server.address();
  if (address === null || typeof address === 'string') throw new Error('no address');
  const scheme = config.server.tls ? 'https' : 'http';
  return {
    url: `${scheme}://127.0.0.1:${address.port}`,
    host: `127.0.0.1:${address.port}`,
    port: address.port,
    app,
    config,
    metrics: deps.metrics,
    hashes: deps.hashes,
    logs,
    reload: (next) => {
      if (next !== undefined) text = next;
      return app.sigilConfig.reload('test');
    },
    ...(deps.tuf ? { tuf: deps.tuf } : {}),
    stop: () => app.close(),
  };
}

/** A config with one upstream named `name` at `url`, warn-everything policy unless `extra` says more. */
export function simpleConfig(upstreams: Array<{ name: string; url: string; extra?: string }>, more = ''): string {
  const ups = upstreams
    .map((u) => `  - name: "${u.name}"\n    url: ${u.url}\n${u.extra ?? ''}`)
    .join('');
  return `server:\n  listen: 127.0.0.1:0\n  logLevel: info\nupstreams:\n${ups}${more}`;
}
