import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Redis } from 'iovalkey';
import { Metrics } from '../audit/metrics.js';
import { Readable } from 'node:stream';
import { manualTimer, silentLogger } from '../../test/helpers/fake-registry.js';
import { sha256 } from '../../test/helpers/digest.js';
import { startRedisServer, type RedisServer } from '../../test/helpers/redis-server.js';
import { startS3Server, type S3Server } from '../../test/helpers/s3-server.js';
import { tempStore } from '../../test/helpers/temp-store.js';
import { BUCKET_USE_SET } from './bucket-use.js';
import { KEY_PREFIX } from './coordinator.js';
import { JANITOR_INTERVAL_MS } from './janitor.js';
import { openSharedCache } from './shared-cache.js';

// What cache.shared opens once per process: with s3.maxBytes (and redis), the bucket janitor
// runs, and objects served from the bucket are marked used for it.

let redis: RedisServer;
let s3: S3Server;
let store: Awaited<ReturnType<typeof tempStore>>;
before(async () => {
  [redis, s3, store] = await Promise.all([startRedisServer(), startS3Server(), tempStore()]);
});
after(async () => {
  await store.close();
  await Promise.all([redis.stop(), s3.close()]);
});

const deps = () => ({ logger: silentLogger(), metrics: new Metrics({ defaultMetrics: false }), store });

test('with s3.maxBytes and redis, the janitor evicts the bucket every JANITOR_INTERVAL_MS and uses of its objects are recorded; close stops it all', async () => {
  const timer = manualTimer();
  const cfg = s3.config({ maxBytes: 150, prefix: 'evicted/' });
  const shared = await openSharedCache({ s3: cfg, redis: { url: redis.url } }, { ...deps(), timer: timer.timer });
  const raw = new Redis(redis.url);
  try {
    assert.ok(await shared.coordinator?.waitUntilUp(10_000));
    for (const n of [1, 2]) {
      const bytes = Buffer.alloc(100, n);
      assert.ok(await shared.bucket?.put(sha256(bytes), 100, Readable.from([bytes])));
    }
    assert.deepEqual(timer.armed, [JANITOR_INTERVAL_MS]);
    timer.fire();
    const left = async () => {
      let n = 0;
      for await (const _ of shared.bucket!.list()) n++;
      return n;
    };
    for (let i = 0; i < 200 && (await left()) !== 1; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(await left(), 1, '200 bytes past 150: one object evicted');
    assert.ok(shared.bucketUsed, 'the layers get a way to mark uses');
    const d = sha256('served');
    shared.bucketUsed(d);
    for (let i = 0; i < 200 && (await raw.zscore(`${KEY_PREFIX}set:${BUCKET_USE_SET}`, d)) === null; i++) await new Promise((r) => setTimeout(r, 10));
    assert.notEqual(await raw.zscore(`${KEY_PREFIX}set:${BUCKET_USE_SET}`, d), null);
  } finally {
    raw.disconnect();
    await shared.close();
  }
  assert.deepEqual(timer.armed, [], 'closed: no further pass');
});

test('without s3.maxBytes nothing is evicted and no use is recorded', async () => {
  const shared = await openSharedCache({ s3: s3.config(), redis: { url: redis.url } }, deps());
  await shared.close();
  assert.equal(shared.bucketUsed, undefined);
  const timer = manualTimer();
  const none = await openSharedCache({ s3: s3.config(), redis: { url: redis.url } }, { ...deps(), timer: timer.timer });
  await none.close();
  assert.deepEqual(timer.armed, [], 'no janitor scheduled');
});
