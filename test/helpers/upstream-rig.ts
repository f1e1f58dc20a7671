import type { ServerResponse } from 'node:http';
import { Agent } from 'undici';
import { pino } from 'pino';
import type { Logger } from 'pino';
import { Metrics } from '../../src/audit/metrics.js';
import { Authenticator } from '../../src/upstream/auth.js';
import type { Credentials } from '../../src/upstream/auth.js';
import { Caller } from '../../src/upstream/call.js';
import type { Schedule } from '../../src/upstream/call.js';
import { UpstreamHttp } from '../../src/upstream/http.js';
import { startFaultServer } from './fault-server.js';
import type { FaultHandler, FaultServer } from './fault-server.js';

/** The parts under an upstream client, wired to real sockets: for specs of src/upstream/ modules. */
export interface UpstreamRig {
  readonly name: string;
  readonly http: UpstreamHttp;
  readonly auth: Authenticator;
  readonly metrics: Metrics;
  readonly logger: Logger;
  /** Every log record written so far, parsed. */
  readonly logs: ReadonlyArray<Record<string, unknown>>;
  /** The request skeleton on these parts, for the upstream at `url`; its metadata deadline is `timeoutMs`. */
  caller(url: string, schedule?: Schedule): Caller;
  /** The value of one labelled series of a counter (0 when absent). */
  counter(name: string, labels: Readonly<Record<string, string>>): Promise<number>;
  close(): Promise<void>;
}

export interface RigOptions {
  readonly credentials?: Credentials;
  /** Every timeout and the metadata deadline (default 10 s: tests that need one inject a timer). */
  readonly timeoutMs?: number;
}

/** An UpstreamHttp, Authenticator and Caller named "test-upstream", logging at debug level. */
export function upstreamRig(opts: RigOptions = {}): UpstreamRig {
  const name = 'test-upstream';
  const ms = opts.timeoutMs ?? 10_000;
  const timeouts = { connectMs: ms, headersMs: ms, bodyIdleMs: ms, metadataDeadlineMs: ms };
  const metrics = new Metrics({ defaultMetrics: false });
  const raw: string[] = [];
  const logger = pino({ level: 'debug' }, { write: (s: string) => void raw.push(s) });
  const agent = new Agent({ connect: { timeout: ms }, headersTimeout: ms, bodyTimeout: ms });
  const http = new UpstreamHttp({ upstream: name, dispatcher: agent, metrics, logger, timeouts });
  const auth = new Authenticator({
    upstream: name,
    ...(opts.credentials !== undefined ? { credentials: opts.credentials } : {}),
    http,
    tokenDeadlineMs: ms,
    upstreamSecure: false,
  });
  return {
    name,
    http,
    auth,
    metrics,
    logger,
    caller: (url, schedule) =>
      new Caller({ upstream: name, origin: new URL(url), http, auth, metrics, deadlineMs: ms, ...(schedule !== undefined ? { schedule } : {}) }),
    get logs() {
      return raw.map((l) => JSON.parse(l) as Record<string, unknown>);
    },
    async counter(metric, labels) {
      const m = (await metrics.registry.getMetricsAsJSON()).find((x) => x.name === metric);
      const v = (m?.values ?? []).find((x) => Object.entries(labels).every(([k, val]) => String(x.labels[k]) === val));
      return v === undefined ? 0 : Number(v.value);
    },
    close: () => agent.destroy(),
  };
}

/** The fault servers and rigs of one spec file; `close()` (in `after`) stops them all. */
export class UpstreamTestbed {
  readonly #open: Array<() => Promise<void>> = [];

  async server(handler: FaultHandler): Promise<FaultServer> {
    const s = await startFaultServer(handler);
    this.#open.push(() => s.stop());
    return s;
  }

  rig(opts: RigOptions = {}): UpstreamRig {
    const r = upstreamRig(opts);
    this.#open.push(() => r.close());
    return r;
  }

  async close(): Promise<void> {
    await Promise.all(this.#open.splice(0).map((stop) => stop()));
  }
}

/** Answers `status` with `body` as JSON. */
export function answerJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const b = Buffer.from(JSON.stringify(body));
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': String(b.length), ...headers });
  res.end(b);
}
