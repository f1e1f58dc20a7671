import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { after, before, beforeEach, test } from 'node:test';
import { Redis } from 'iovalkey';
import { Metrics } from '../audit/metrics.js';
import type { Digest } from '../oci/digest.js';
import { capturingLogger, manualTimer, silentLogger } from '../../test/helpers/fake-registry.js';
import { sha256 } from '../../test/helpers/digest.js';
import { startRedisServer, type RedisServer } from '../../test/helpers/redis-server.js';
import { startS3Server, type S3Server } from '../../test/helpers/s3-server.js';
import { Bucket, BUCKET_RETRY_MS } from './bucket.js';
import { BUCKET_USE_SET, BUCKET_USE_WRITE_MS, BucketUse } from './bucket-use.js';
import { Coordinator, KEY_PREFIX } from './coordinator.js';
import { JANITOR_INTERVAL_MS, JANITOR_LEASE, Janitor, type JanitorOptions, type PassResult } from './janitor.js';

// Eviction of the shared bucket past cache.shared.s3.maxBytes, by the one process holding the
// janitor lease, least recently used first, never after its lease was lost; with a real
// redis-server and an S3 server (s3rver).

const OBJECT_BYTES = 100;
const USES = `${KEY_PREFIX}set:${BUCKET_USE_SET}`;

let redis: RedisServer;
let s3: S3Server;
let raw: Redis;
let prefixes = 0;
const closing: Array<() => Promise<void> | void> = [];

before(async () => {
  [redis, s3] = await Promise.all([startRedisServer(), startS3Server()]);
  raw = new Redis(redis.url);
});
beforeEach(async () => {
  await raw.flushall();
});
after(async () => {
  for (const c of closing.reverse()) await c();
  raw.disconnect();
  await Promise.all([redis.stop(), s3.close()]);
});

async function coordinator(opts: Partial<Parameters<typeof Coordinator.connect>[0]> = {}, url = redis.url): Promise<Coordinator> {
  const c = Coordinator.connect({ url, logger: silentLogger(), ...opts });
  closing.push(() => c.close());
  assert.ok(await c.waitUntilUp(10_000), 'connected');
  return c;
}

/** A bucket of its own (its own prefix) holding `n` objects of OBJECT_BYTES; their digests in upload order. */
async function filledBucket(n: number, over: { now?: () => number } = {}): Promise<{ bucket: Bucket; digests: Digest[] }> {
  const bucket = new Bucket(s3.config({ prefix: `t${++prefixes}/` }), { logger: silentLogger(), ...over });
  closing.push(() => bucket.close());
  const digests: Digest[] = [];
  for (let i = 0; i < n; i++) {
    const bytes = randomBytes(OBJECT_BYTES);
    assert.ok(await bucket.put(sha256(bytes), bytes.length, Readable.from([bytes])));
    digests.push(sha256(bytes));
  }
  return { bucket, digests };
}

async function held(bucket: Bucket): Promise<Digest[]> {
  const out: Digest[] = [];
  for await (const o of bucket.list()) out.push(o.digest);
  return out.sort();
}

function janitor(o: Partial<JanitorOptions> & Pick<JanitorOptions, 'bucket' | 'coordinator' | 'maxBytes'>): Janitor {
  const j = new Janitor({ uses: new BucketUse({ coordinator: o.coordinator as Coordinator }), logger: silentLogger(), ...o });
  closing.push(() => j.close());
  return j;
}

/** Records uses of `digests` at increasing times far after their upload, in the order given. */
async function usedInOrder(c: Coordinator, digests: Digest[]): Promise<void> {
  const t = Date.now() + 3_600_000;
  for (const [i, d] of digests.entries()) assert.ok(await c.touch(BUCKET_USE_SET, d, t + i * 60_000));
}

const evictions = async (m: Metrics) => Object.fromEntries((await m.sharedEvictions.get()).values.map((v) => [v.labels.result, v.value]));

test('a bucket within maxBytes is left alone', async () => {
  const c = await coordinator();
  const { bucket, digests } = await filledBucket(3);
  const r = await janitor({ bucket, coordinator: c, maxBytes: 3 * OBJECT_BYTES }).pass();
  assert.deepEqual(r, { kind: 'evicted', total: 3 * OBJECT_BYTES, deleted: 0, freed: 0 });
  assert.deepEqual(await held(bucket), [...digests].sort());
  assert.equal(await c.holder(JANITOR_LEASE), null, 'the lease is given back after the pass');
});

test('past maxBytes the least recently used objects are deleted, down to the low-water mark (90%), and counted', async () => {
  const c = await coordinator();
  const metrics = new Metrics({ defaultMetrics: false });
  const { bucket, digests } = await filledBucket(5);
  const [o1, o2, o3, o4, o5] = digests as [Digest, Digest, Digest, Digest, Digest];
  await usedInOrder(c, [o3, o1, o5, o2, o4]); // o3 least recently used, then o1
  // 500 bytes past 400: down to 360, i.e. two objects go.
  const r = await janitor({ bucket, coordinator: c, maxBytes: 4 * OBJECT_BYTES, metrics }).pass();
  assert.deepEqual(r, { kind: 'evicted', total: 5 * OBJECT_BYTES, deleted: 2, freed: 2 * OBJECT_BYTES });
  assert.deepEqual(await held(bucket), [o2, o4, o5].sort());
  assert.deepEqual(await evictions(metrics), { deleted: 2 });
  assert.equal((await metrics.sharedEvictedBytes.get()).values[0]?.value, 2 * OBJECT_BYTES);
  assert.deepEqual(await c.scores(BUCKET_USE_SET, [o3, o1, o5]), [null, null, Number(await raw.zscore(USES, o5))], 'a deleted object\'s use is forgotten');
});

test('an object with no recorded use counts from its upload: it goes before objects used since', async () => {
  const c = await coordinator();
  const { bucket, digests } = await filledBucket(5);
  const never = digests[2]!;
  await usedInOrder(c, digests.filter((d) => d !== never));
  const r = await janitor({ bucket, coordinator: c, maxBytes: 4.5 * OBJECT_BYTES }).pass();
  assert.equal(r.kind === 'evicted' && r.deleted, 1);
  assert.deepEqual(await held(bucket), digests.filter((d) => d !== never).sort());
});

test('one janitor at a time: a paused holder whose lease lapsed and was taken by another deletes nothing after it resumes', async () => {
  const timer = manualTimer(); // the paused process: its renewals never run, its signal never learns
  const { logger, records } = capturingLogger();
  const metrics = new Metrics({ defaultMetrics: false });
  const a = await coordinator({ timer: timer.timer });
  const b = await coordinator();
  const { bucket, digests } = await filledBucket(4);
  // A pauses after listing the bucket (a GC pause, a frozen VM), before its first delete.
  let paused!: () => void;
  const isPaused = new Promise<void>((r) => (paused = r));
  let resume!: () => void;
  const gate = new Promise<void>((r) => (resume = r));
  const pausing: JanitorOptions['bucket'] = {
    available: true,
    delete: (d) => bucket.delete(d),
    async *list() {
      yield* bucket.list();
      paused();
      await gate;
    },
  };
  const first = janitor({ bucket: pausing, coordinator: a, maxBytes: OBJECT_BYTES, metrics, logger, holder: 'a' });
  const passing = first.pass();
  await isPaused;
  const other = janitor({ bucket, coordinator: b, maxBytes: OBJECT_BYTES, holder: 'b' });
  assert.deepEqual(await other.pass(), { kind: 'held', holder: 'a' }, 'while A holds the lease, B does not evict');
  await raw.del(`${KEY_PREFIX}lease:${JANITOR_LEASE}`); // A's lease lapsed
  const taken = await b.acquire(JANITOR_LEASE, 'b');
  assert.equal(taken.kind, 'acquired');
  resume();
  const r: PassResult = await passing;
  assert.deepEqual(r, { kind: 'evicted', total: 4 * OBJECT_BYTES, deleted: 0, freed: 0, stopped: 'fenced' });
  assert.deepEqual(await held(bucket), [...digests].sort(), 'nothing deleted');
  assert.deepEqual(await evictions(metrics), { fenced: 1 });
  assert.ok(records.some((x) => x.msg?.includes('no longer ours')));
  assert.equal(await b.holder(JANITOR_LEASE), 'b', 'A\'s release left B\'s lease alone');
  if (taken.kind === 'acquired') await taken.lease.release();
});

test('a holder that loses its lease mid-pass stops before the next delete', async () => {
  const c = await coordinator();
  const { bucket, digests } = await filledBucket(4);
  let deletes = 0;
  const losing: JanitorOptions['bucket'] = {
    available: true,
    list: () => bucket.list(),
    async delete(d) {
      deletes++;
      const ok = await bucket.delete(d);
      await raw.del(`${KEY_PREFIX}lease:${JANITOR_LEASE}`); // lapsed right after the first delete
      return ok;
    },
  };
  const r = await janitor({ bucket: losing, coordinator: c, maxBytes: OBJECT_BYTES }).pass();
  assert.deepEqual(r, { kind: 'evicted', total: 4 * OBJECT_BYTES, deleted: 1, freed: OBJECT_BYTES, stopped: 'fenced' });
  assert.equal(deletes, 1);
  assert.equal((await held(bucket)).length, digests.length - 1);
});

test('Redis down: the pass is skipped (logged once), nothing is deleted, nothing thrown', async () => {
  const own = await startRedisServer();
  const { logger, records } = capturingLogger();
  try {
    const c = await coordinator({}, own.url);
    const { bucket, digests } = await filledBucket(3);
    const j = janitor({ bucket, coordinator: c, maxBytes: OBJECT_BYTES, logger });
    await own.kill();
    assert.deepEqual(await j.pass(), { kind: 'skipped', why: 'redis unavailable' });
    assert.deepEqual(await j.pass(), { kind: 'skipped', why: 'redis unavailable' });
    assert.equal(records.filter((x) => x.msg?.includes('pass skipped')).length, 1, 'logged once');
    assert.deepEqual(await held(bucket), [...digests].sort());
  } finally {
    await own.stop();
  }
});

test('the bucket down: the pass is skipped (logged once) and the lease given back; once it answers, passes run again', async () => {
  const own = await startS3Server();
  const { logger, records } = capturingLogger();
  let now = 0;
  const c = await coordinator();
  const bucket = new Bucket(own.config(), { logger: silentLogger(), now: () => now });
  closing.push(() => bucket.close());
  try {
    for (let i = 0; i < 3; i++) {
      const bytes = randomBytes(OBJECT_BYTES);
      assert.ok(await bucket.put(sha256(bytes), bytes.length, Readable.from([bytes])));
    }
    const j = janitor({ bucket, coordinator: c, maxBytes: 2 * OBJECT_BYTES, logger });
    await own.stop();
    assert.deepEqual(await j.pass(), { kind: 'skipped', why: 'bucket unavailable' });
    assert.deepEqual(await j.pass(), { kind: 'skipped', why: 'bucket unavailable' }, 'while it is taken as down, without a request');
    assert.equal(records.filter((x) => x.msg?.includes('pass skipped')).length, 1, 'logged once');
    assert.equal(await c.holder(JANITOR_LEASE), null);
    await own.start();
    now += BUCKET_RETRY_MS;
    const r = await j.pass();
    assert.equal(r.kind === 'evicted' && r.deleted, 2); // 300 past 200: down to 180
    assert.ok(records.some((x) => x.msg?.includes('passes run again')));
  } finally {
    await own.close();
  }
});

test('each process tries a pass every JANITOR_INTERVAL_MS; close stops them', async () => {
  const c = await coordinator();
  const timer = manualTimer();
  const { bucket } = await filledBucket(3);
  const j = janitor({ bucket, coordinator: c, maxBytes: 2 * OBJECT_BYTES, timer: timer.timer });
  j.start();
  assert.deepEqual(timer.armed, [JANITOR_INTERVAL_MS]);
  timer.fire();
  await waitFor(async () => timer.armed.length === 1); // the next pass is scheduled once this one ended
  assert.equal((await held(bucket)).length, 1, 'the pass evicted');
  await j.close();
  assert.deepEqual(timer.armed, []);
  j.start();
  assert.deepEqual(timer.armed, [], 'a closed janitor schedules nothing');
  assert.deepEqual(await j.pass(), { kind: 'skipped', why: 'closed' });
});

test('a use is written to Redis at most once per object per BUCKET_USE_WRITE_MS; Redis down loses the mark, nothing else', async () => {
  const c = await coordinator();
  let clock = 1_000_000;
  const uses = new BucketUse({ coordinator: c, clock: () => clock });
  const d = sha256('used');
  uses.used(d);
  await waitFor(async () => (await raw.zscore(USES, d)) !== null);
  clock += BUCKET_USE_WRITE_MS - 1;
  uses.used(d);
  assert.deepEqual(await uses.lastUses([d, sha256('never')]), new Map([[d, 1_000_000]]));
  clock += 1;
  uses.used(d);
  await waitFor(async () => Number(await raw.zscore(USES, d)) === clock);
  await uses.forget(d);
  assert.equal(await raw.zscore(USES, d), null);

  const down = new BucketUse({ coordinator: { touch: async () => false, scores: async () => undefined, forget: async () => false } });
  down.used(d);
  assert.equal(await down.lastUses([d]), undefined);
});

async function waitFor(cond: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  assert.fail('condition not met');
}
