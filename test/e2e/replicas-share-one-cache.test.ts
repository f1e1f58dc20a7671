// Several `sigil serve` processes configured with the same cache.shared act as one verified
// cache: real redis-server, an in-process S3 server (s3rver), a real distribution registry behind a
// counting pass-through, and three replicas as child processes.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { request } from 'undici';
import { sha256 } from '../helpers/digest.js';
import { startForwarder, type Forwarder } from '../helpers/forwarder.js';
import { pushLegacySignature } from '../helpers/publish.js';
import type { PushedImage } from '../helpers/push.js';
import { startRedisServer, type RedisServer } from '../helpers/redis-server.js';
import { startReplicas, type Replica } from '../helpers/replicas.js';
import { startS3Server, TEST_BUCKET, type S3Server } from '../helpers/s3-server.js';
import { legacyLayer } from '../helpers/signer.js';
import { startVerifyEnv, type VerifyEnv } from '../helpers/verify-env.js';

const ACCEPT = 'application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json';
const PEER_TOKEN = 'peer-token-for-tests-0123456789abcdef';
/** s3rver's key pair (it checks request signatures against it). */
const S3_CREDENTIALS = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };
/** Replication into the bucket is in the background: a test waits for it this long at most (a guard, not a timing check). */
const REPLICATION_GUARD_MS = 30_000;

let env: VerifyEnv;
let fwd: Forwarder;
let redis: RedisServer;
let s3: S3Server;
let prefixes = 0;

before(async () => {
  env = await startVerifyEnv();
  fwd = await startForwarder(env.registry.url);
  redis = await startRedisServer();
  s3 = await startS3Server();
});
after(async () => {
  await fwd?.stop();
  await redis?.stop();
  await s3?.close();
  await env?.stop();
});

const policies = (keyPath: string) => `
  - name: prod
    match: ["reg.test/prod/**"]
    mode: enforce
    authorities:
      - { key: ${keyPath}, tlog: ignore }`;

/** A replica set sharing one bucket prefix (a fresh one per test) and the Redis server. */
async function replicaSet(n: number, opts: { keyPath?: (i: number) => string; prefix?: string } = {}): Promise<{ replicas: Replica[]; prefix: string }> {
  const prefix = opts.prefix ?? `t${++prefixes}/`;
  const replicas = await startReplicas(n, {
    env: { S3_KEY: S3_CREDENTIALS.accessKeyId, S3_SECRET: S3_CREDENTIALS.secretAccessKey, PEER_TOKEN },
    config: ({ index, port, peerPort, storeDir }) =>
      env
        .config(policies(opts.keyPath?.(index) ?? env.keys.p256.path), {
          upstreamUrl: fwd.url,
          extra: [
            'cache:',
            '  store:',
            `    dir: ${storeDir}`,
            '    maxBytes: 1073741824',
            '  tags:',
            '    ttl: 5m',
            '  shared:',
            '    s3:',
            `      endpoint: ${s3.endpoint}`,
            '      region: us-east-1',
            `      bucket: ${TEST_BUCKET}`,
            `      prefix: ${prefix}`,
            '      forcePathStyle: true',
            '      credentials: { accessKeyId: "${S3_KEY}", secretAccessKey: "${S3_SECRET}" }',
            '    redis:',
            `      url: ${redis.url}`,
            '    peer:',
            `      listen: 127.0.0.1:${peerPort}`,
            `      advertise: http://127.0.0.1:${peerPort}`,
            '      token: "${PEER_TOKEN}"',
          ].join('\n'),
        })
        .replace('listen: 127.0.0.1:0', `listen: 127.0.0.1:${port}`),
  });
  return { replicas, prefix };
}

async function get(r: Replica, path: string) {
  const res = await request(`${r.url}${path}`, { headers: { accept: ACCEPT } });
  return { status: res.statusCode, headers: res.headers, body: Buffer.from(await res.body.arrayBuffer()) };
}

/** Pulls an image as a client does: manifest by tag, then config and layers by digest, each checked. */
async function pullImage(r: Replica, repo: string, tag: string, img: PushedImage): Promise<void> {
  const m = await get(r, `/v2/${repo}/manifests/${tag}`);
  assert.equal(m.status, 200, `replica ${r.index}: ${m.body.toString()}`);
  assert.equal(sha256(m.body), img.digest);
  for (const d of [img.config, ...img.layers]) {
    const b = await get(r, `/v2/${repo}/blobs/${d.digest}`);
    assert.equal(b.status, 200, `replica ${r.index} blob ${d.digest}: ${b.body.subarray(0, 200).toString()}`);
    assert.equal(sha256(b.body), d.digest);
  }
}

async function signedImage(repo: string, opts: Parameters<VerifyEnv['push']>[2] = {}): Promise<PushedImage> {
  const img = await env.push(repo, 'v1', opts);
  await pushLegacySignature(env.target, repo, img.digest, [legacyLayer(env.keys.p256, img.digest)]);
  return img;
}

/** Upstream requests since `from`, as "METHOD /path", counted. */
function upstreamCounts(from: number): Map<string, number> {
  const counts = new Map<string, number>();
  for (const r of fwd.requests.slice(from)) {
    const k = `${r.method} ${r.url.split('?')[0]}`;
    counts.set(k, (counts.get(k) ?? 0) + 1);
  }
  return counts;
}

/** The digests (as sha256:<hex>) of the objects under a bucket prefix. */
async function bucketDigests(prefix: string): Promise<Set<string>> {
  const client = new S3Client({ endpoint: s3.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: S3_CREDENTIALS });
  const out = new Set<string>();
  let token: string | undefined;
  do {
    const page = await client.send(new ListObjectsV2Command({ Bucket: TEST_BUCKET, Prefix: `${prefix}objects/`, ContinuationToken: token }));
    for (const o of page.Contents ?? []) {
      const m = /objects\/(sha256)\/([0-9a-f]{64})$/.exec(o.Key ?? '');
      if (m) out.add(`${m[1]}:${m[2]}`);
    }
    token = page.NextContinuationToken;
  } while (token);
  client.destroy();
  return out;
}

/** Resolves once every digest is in the bucket; rejects after REPLICATION_GUARD_MS. */
async function replicated(prefix: string, digests: readonly string[]): Promise<void> {
  const deadline = Date.now() + REPLICATION_GUARD_MS;
  for (;;) {
    const have = await bucketDigests(prefix);
    const missing = digests.filter((d) => !have.has(d));
    if (missing.length === 0) return;
    if (Date.now() > deadline) throw new Error(`not replicated into the bucket: ${missing.join(', ')}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

const objectsOf = (img: PushedImage): string[] => [img.digest, img.config.digest, ...img.layers.map((l) => l.digest)];

describe('replicas sharing Redis, a bucket and their peers', () => {
  test('3 replicas × 32 concurrent clients cold-pulling one signed 12-object image: each object is fetched upstream once in all', async () => {
    const img = await signedImage('prod/herd', { layers: 10, layerSize: 256 * 1024 });
    const { replicas } = await replicaSet(3);
    try {
      const from = fwd.requests.length;
      await Promise.all(replicas.flatMap((r) => Array.from({ length: 32 }, () => pullImage(r, 'prod/herd', 'v1', img))));
      const counts = upstreamCounts(from);
      assert.equal(counts.get(`GET /v2/prod/herd/manifests/${img.digest}`), 1, 'the image manifest');
      for (const d of [img.config, ...img.layers]) assert.equal(counts.get(`GET /v2/prod/herd/blobs/${d.digest}`), 1, d.digest);
    } finally {
      await Promise.all(replicas.map((r) => r.stop()));
    }
  });

  test('a replica restarted with an empty disk serves a pulled image from the bucket and Redis with no upstream request', async () => {
    const img = await signedImage('prod/restarted');
    const { replicas, prefix } = await replicaSet(2);
    try {
      await pullImage(replicas[0], 'prod/restarted', 'v1', img);
      await replicated(prefix, objectsOf(img));
      await replicas[1].stop();
      await replicas[1].restart({ emptyDisk: true });
      const from = fwd.requests.length;
      await pullImage(replicas[1], 'prod/restarted', 'v1', img);
      assert.deepEqual([...upstreamCounts(from).keys()], [], 'no request reached the upstream');
    } finally {
      await Promise.all(replicas.map((r) => r.stop()));
    }
  });

  test('the lease holder killed mid-blob: the follower takes over and its client gets the whole, right blob', async () => {
    const img = await signedImage('prod/killed', { layers: 1, layerSize: 4 * 1024 * 1024 });
    const layer = img.layers[0].digest;
    const { replicas } = await replicaSet(2);
    const slow = fwd.slow('GET', `/v2/prod/killed/blobs/${layer}`, { chunkBytes: 64 * 1024, delayMs: 40 });
    try {
      const [a, b] = replicas;
      // Both replicas know the image (verified) before the blob is asked for.
      for (const r of replicas) assert.equal((await get(r, '/v2/prod/killed/manifests/v1')).status, 200);
      const from = fwd.requests.length;
      const first = get(a, `/v2/prod/killed/blobs/${layer}`).catch((err: unknown) => err);
      await until(() => fwd.requests.slice(from).some((r) => r.url.startsWith(`/v2/prod/killed/blobs/${layer}`)));
      const second = get(b, `/v2/prod/killed/blobs/${layer}`);
      await new Promise((r) => setTimeout(r, 500)); // some bytes reach b through a's peer endpoint
      await a.kill();
      slow.fast();
      const got = await second;
      assert.equal(got.status, 200);
      assert.equal(sha256(got.body), layer, 'the follower client got the whole blob, right');
      await first;
    } finally {
      slow.fast();
      await Promise.all(replicas.map((r) => r.stop()));
    }
  });

  test('an unsigned image under enforce is never written to the bucket', async () => {
    const unsigned = await env.push('prod/unsigned', 'v1', { layers: 2, layerSize: 32 * 1024 });
    const signed = await signedImage('prod/after-unsigned');
    const { replicas, prefix } = await replicaSet(1);
    try {
      const [r] = replicas;
      assert.equal((await get(r, '/v2/prod/unsigned/manifests/v1')).status, 403);
      // Its blobs asked for by digest pass through (no passing manifest names them), unstored.
      for (const d of [unsigned.config, ...unsigned.layers]) await get(r, `/v2/prod/unsigned/blobs/${d.digest}`);
      // Replication keeps order: once what was pulled after is in the bucket, what came before would be too.
      await pullImage(r, 'prod/after-unsigned', 'v1', signed);
      await replicated(prefix, objectsOf(signed));
      const have = await bucketDigests(prefix);
      for (const d of objectsOf(unsigned)) assert.ok(!have.has(d), `unsigned ${d} is not in the bucket`);
    } finally {
      await Promise.all(replicas.map((r) => r.stop()));
    }
  });

  test('replicas whose policies differ share no verdict: one allows, the other still denies', async () => {
    const img = await signedImage('prod/policies');
    const { replicas } = await replicaSet(2, { keyPath: (i) => (i === 0 ? env.keys.p256.path : env.keys.p384.path) });
    try {
      assert.equal((await get(replicas[0], '/v2/prod/policies/manifests/v1')).status, 200);
      assert.equal((await get(replicas[1], '/v2/prod/policies/manifests/v1')).status, 403, 'the other policy trusts another key');
    } finally {
      await Promise.all(replicas.map((r) => r.stop()));
    }
  });

  test('Redis stopped mid-test: every replica goes on serving, fetching each object upstream at most once', async () => {
    const img = await signedImage('prod/no-redis', { layers: 4, layerSize: 64 * 1024 });
    const { replicas } = await replicaSet(3);
    try {
      await redis.kill();
      const from = fwd.requests.length;
      await Promise.all(replicas.flatMap((r) => Array.from({ length: 8 }, () => pullImage(r, 'prod/no-redis', 'v1', img))));
      const counts = upstreamCounts(from);
      for (const d of [img.config, ...img.layers]) assert.ok((counts.get(`GET /v2/prod/no-redis/blobs/${d.digest}`) ?? 0) <= 3, d.digest);
    } finally {
      await redis.restart();
      await Promise.all(replicas.map((r) => r.stop()));
    }
  });

  test('the bucket stopped mid-test: every replica goes on serving from its disk and the upstream', async () => {
    const img = await signedImage('prod/no-bucket', { layers: 2, layerSize: 64 * 1024 });
    const { replicas } = await replicaSet(2);
    try {
      await s3.stop();
      await Promise.all(replicas.map((r) => pullImage(r, 'prod/no-bucket', 'v1', img)));
    } finally {
      await s3.start();
      await Promise.all(replicas.map((r) => r.stop()));
    }
  });
});

async function until(cond: () => boolean, guardMs = 15_000): Promise<void> {
  const deadline = Date.now() + guardMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}
