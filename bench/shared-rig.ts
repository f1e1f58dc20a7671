/**
 * What the section `shared` runs on: a real redis-server, s3rver in this process behind a
 * counting pass-through, the origin behind a counting pass-through, and sigil replicas that
 * share them (`cache.shared`), each with its own store dir and peer port.
 */
import { randomBytes } from 'node:crypto';
import { request as httpRequest, Agent as HttpAgent } from 'node:http';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { startFaultServer } from '../test/helpers/fault-server.js';
import type { FaultServer } from '../test/helpers/fault-server.js';
import { startForwarder } from '../test/helpers/forwarder.js';
import type { Forwarder } from '../test/helpers/forwarder.js';
import { freePort } from '../test/helpers/net.js';
import { startRedisServer } from '../test/helpers/redis-server.js';
import { startS3Server } from '../test/helpers/s3-server.js';
import { defer, log, onCleanup } from './context.js';
import type { Ctx } from './context.js';
import { HERD_UPSTREAM, STORE_MAX_BYTES, UPSTREAM_NAME } from './fixture.js';
import type { Proc } from './procs.js';
import { startSigil } from './servers.js';
import type { SharedOptions } from './servers.js';
import type { SigilCommon } from './store-section.js';

const PEER_TOKEN_BYTES = 24; // 48 hex characters: past the 32 a deployment should use
const BUCKET_QUIET_MS = 1_500; // no request to the bucket this long: the replicas' background uploads are done
const BUCKET_POLL_MS = 100;
const BUCKET_SETTLE_TIMEOUT_MS = 300_000; // three replicas may each upload a 1 GiB blob to s3rver

/** One `sigil serve` with `cache.shared`. */
export interface Replica {
  name: string;
  proc: Proc;
  /** Its base URL (its /metrics too). */
  url: string;
  /** `${url}/v2/` */
  v2: string;
}

/** A pass-through that counts requests and changes nothing on the way (not even Host: S3 signs it). */
export interface CountingProxy extends FaultServer {
  /** Requests whose answer has not ended yet. */
  inFlight(): number;
}

async function startCountingProxy(target: string): Promise<CountingProxy> {
  const t = new URL(target);
  const agent = new HttpAgent({ keepAlive: true });
  let open = 0;
  const server = await startFaultServer((req, res) => {
    open++;
    res.once('close', () => open--);
    const fwd = httpRequest({ host: t.hostname, port: t.port, method: req.method, path: req.url, headers: req.headers, agent }, (up) => {
      res.writeHead(up.statusCode ?? 502, up.headers);
      up.pipe(res);
    });
    fwd.on('error', () => res.destroy());
    req.pipe(fwd);
  });
  return {
    ...server,
    inFlight: () => open,
    stop: async () => {
      await server.stop();
      agent.destroy();
    },
  };
}

export interface Rig {
  /** The counting pass-through in front of the origin registry: every replica's (and distribution's) upstream. */
  origin: Forwarder;
  /** The counting pass-through in front of s3rver: every replica's bucket endpoint. */
  s3: CountingProxy;
  replicas: Replica[];
  /** Stops `r` and starts a replica in its place with an empty disk (a new pod's emptyDir), the same shared config. */
  restartEmpty(r: Replica): Promise<Replica>;
  /** Waits until the bucket saw no request for a while: the replicas' background uploads are done. */
  settleBucket(): Promise<void>;
}

/** Starts Redis, s3rver, the two counting pass-throughs and `count` replicas (upstreams herd.bench and registry.bench, both the origin). */
export async function startRig(c: Ctx, sigil: SigilCommon, dir: string, count: number): Promise<Rig> {
  const origin = await startForwarder(c.registry.url);
  onCleanup(() => origin.stop());
  const redis = await startRedisServer();
  onCleanup(() => redis.stop());
  const s3server = await startS3Server();
  onCleanup(() => s3server.close());
  const s3 = await startCountingProxy(s3server.endpoint);
  onCleanup(() => s3.stop());
  const bucket = s3server.config();
  const token = randomBytes(PEER_TOKEN_BYTES).toString('hex');
  const upstreams = [{ name: HERD_UPSTREAM, url: origin.url }, { name: UPSTREAM_NAME, url: origin.url }];
  let started = 0;
  const start = async (label: string): Promise<Replica> => {
    const shared: SharedOptions = {
      s3: { endpoint: s3.url, region: bucket.region, bucket: bucket.bucket, credentials: bucket.credentials ?? { accessKeyId: '', secretAccessKey: '' } },
      redisUrl: redis.url,
      peerPort: await freePort(),
      token,
    };
    const store = { dir: join(dir, `${label}-store-${started++}`), maxBytes: STORE_MAX_BYTES };
    const s = await startSigil({ ...sigil, label, upstreams, store, shared }, defer);
    log(`shared section: ${label} pid ${s.proc.pid} on ${s.url}, peer port ${shared.peerPort}`);
    return { name: label, proc: s.proc, url: s.url, v2: `${s.url}/v2/` };
  };
  const replicas: Replica[] = [];
  for (let i = 0; i < count; i++) replicas.push(await start(`sigil-shared-${i + 1}`));
  log(`shared section: redis ${redis.url}, s3rver ${s3server.endpoint} (counted at ${s3.url}), origin counted at ${origin.url}`);
  return {
    origin,
    s3,
    replicas,
    async restartEmpty(r) {
      await r.proc.stop();
      return start(`${r.name}-restarted`);
    },
    async settleBucket() {
      const deadline = Date.now() + BUCKET_SETTLE_TIMEOUT_MS;
      let seen = -1;
      let quietSince = Date.now();
      for (;;) {
        const n = s3.requests.length;
        if (n !== seen || s3.inFlight() > 0) {
          seen = n;
          quietSince = Date.now();
        } else if (Date.now() - quietSince >= BUCKET_QUIET_MS) return;
        if (Date.now() > deadline) throw new Error(`the bucket still busy after ${BUCKET_SETTLE_TIMEOUT_MS} ms (the replicas' uploads)`);
        await sleep(BUCKET_POLL_MS);
      }
    },
  };
}
