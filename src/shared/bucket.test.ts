import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { Metrics } from '../audit/metrics.js';
import { fakeClock } from '../../test/helpers/clock.js';
import { sha256, sha512 } from '../../test/helpers/digest.js';
import { capturingLogger, silentLogger } from '../../test/helpers/fake-registry.js';
import { startS3Server, type S3Server } from '../../test/helpers/s3-server.js';
import { deepFreeze } from '../config/compile.js';
import type { Digest } from '../oci/digest.js';
import type { RecordRef } from '../store/catalog-keys.js';
import { BUCKET_RETRY_MS, BUCKET_SEEN_TTL_MS, Bucket } from './bucket.js';

// The shared bucket against a real S3-compatible server (s3rver): objects go in only complete
// and hashing to their digest, whether sent as one PutObject or as a multipart upload; records
// round-trip; a failing server makes every call answer "unavailable" at once until it is retried.

const MiB = 1024 * 1024;

/** `bytes` as a stream of `chunk`-sized pieces (a body arriving from a file or a socket). */
function streamOf(bytes: Buffer, chunk = 64 * 1024): Readable {
  const parts: Buffer[] = [];
  for (let i = 0; i < bytes.length; i += chunk) parts.push(bytes.subarray(i, i + chunk));
  return Readable.from(parts);
}

async function readAll(r: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of r) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

const metricValue = async (m: Metrics, name: string): Promise<number | undefined> =>
  (await m.registry.getSingleMetric(name)?.get())?.values.find((v) => v.labels.engine === 's3')?.value;

describe('shared bucket', () => {
  let s3: S3Server;
  let bucket: Bucket;
  before(async () => {
    s3 = await startS3Server();
    bucket = new Bucket(s3.config(), { logger: silentLogger() });
  });
  after(async () => {
    bucket.close();
    await s3.close();
  });

  test('an object put is there: its size by head, its bytes by open, a range of it by open with a range', async () => {
    const bytes = randomBytes(100_000);
    const d = sha256(bytes);
    assert.equal(await bucket.head(d), null);
    assert.equal(await bucket.open(d), null);
    assert.equal(await bucket.put(d, bytes.length, streamOf(bytes)), true);
    assert.equal(await bucket.head(d), bytes.length);
    const whole = await bucket.open(d);
    assert.ok(whole);
    assert.equal(whole.size, bytes.length);
    assert.deepEqual(await readAll(whole.body), bytes);
    const part = await bucket.open(d, { start: 1000, end: 1999 });
    assert.ok(part);
    assert.equal(part.size, bytes.length, 'the size is the whole object\'s');
    assert.deepEqual(await readAll(part.body), bytes.subarray(1000, 2000));
  });

  test('a sha512 object is hashed with sha512', async () => {
    const bytes = randomBytes(5000);
    assert.equal(await bucket.put(sha512(bytes), bytes.length, streamOf(bytes)), true);
    assert.equal(await bucket.head(sha512(bytes)), 5000);
  });

  for (const [path, size] of [
    ['a single PutObject', 300_000],
    ['a multipart upload', 12 * MiB],
  ] as const) {
    test(`${path}: bytes that do not hash to the digest leave no object`, async () => {
      const bytes = randomBytes(size);
      const d = sha256(bytes);
      const wrong = Buffer.from(bytes);
      wrong[wrong.length - 1] ^= 1; // only the last byte differs: found at the very end
      assert.equal(await bucket.put(d, size, streamOf(wrong)), false);
      assert.equal(await bucket.head(d), null);
      assert.equal(bucket.available, true, 'the data\'s fault, not the bucket\'s');
    });

    test(`${path}: a body shorter or longer than announced leaves no object`, async () => {
      const bytes = randomBytes(size);
      const d = sha256(bytes);
      assert.equal(await bucket.put(d, size, streamOf(bytes.subarray(0, size - 1))), false);
      assert.equal(await bucket.head(d), null);
      assert.equal(await bucket.put(d, size - 1, streamOf(bytes)), false);
      assert.equal(await bucket.head(d), null);
    });

    test(`${path}: the right bytes are stored whole`, async () => {
      const bytes = randomBytes(size);
      const d = sha256(bytes);
      assert.equal(await bucket.put(d, size, streamOf(bytes)), true);
      assert.equal(await bucket.head(d), size);
      const got = await bucket.open(d);
      assert.ok(got);
      assert.equal(sha256(await readAll(got.body)), d);
    });
  }

  test('a body whose source fails leaves no object', async () => {
    const bytes = randomBytes(10_000);
    const d = sha256(bytes);
    const failing = new Readable({
      read() {
        this.push(bytes.subarray(0, 5000));
        this.destroy(new Error('disk read failed'));
      },
    });
    assert.equal(await bucket.put(d, bytes.length, failing), false);
    assert.equal(await bucket.head(d), null);
  });

  test('records round-trip under their catalog key; an absent one is null', async () => {
    const d = sha256('a manifest');
    const ref = { kind: 'manifest', upstream: 'hub', repository: 'library/nginx', digest: d } as const;
    assert.equal(await bucket.getRecord(ref), null);
    assert.equal(await bucket.putRecord(ref, { mediaType: 'application/vnd.oci.image.manifest.v1+json', size: 10 }), true);
    assert.deepEqual(await bucket.getRecord(ref), { mediaType: 'application/vnd.oci.image.manifest.v1+json', size: 10 });
    assert.equal(await bucket.getRecord({ ...ref, repository: 'library/other' }), null, 'another repository has no record of it');
    assert.equal(bucket.recordKey(ref), `records/manifest/${encodeURIComponent(`hub/library/nginx@${d}`)}.json`);
  });

  test('a config as compiled (frozen, credentials included) is used as it is', async () => {
    const frozen = new Bucket(deepFreeze(s3.config({ prefix: 'frozen/' })), { logger: silentLogger() });
    try {
      const bytes = Buffer.from('from a frozen config');
      const d = sha256(bytes);
      assert.equal(await frozen.put(d, bytes.length, streamOf(bytes)), true);
      assert.equal(await frozen.head(d), bytes.length);
      assert.equal(frozen.available, true);
    } finally {
      frozen.close();
    }
  });

  test('keys sit under the prefix: objects/<alg>/<hex>', async () => {
    const prefixed = new Bucket(s3.config({ prefix: 'cache/' }), { logger: silentLogger() });
    try {
      const bytes = Buffer.from('prefixed');
      const d = sha256(bytes);
      assert.equal(prefixed.objectKey(d), `cache/objects/sha256/${d.slice(7)}`);
      assert.equal(await prefixed.put(d, bytes.length, streamOf(bytes)), true);
      assert.equal(await prefixed.head(d), bytes.length);
      assert.equal(await bucket.head(d), null, 'not under the empty prefix');
      const listed = [];
      for await (const o of prefixed.list()) listed.push(o);
      assert.deepEqual(
        listed.map((o) => [o.digest, o.size]),
        [[d, bytes.length]],
      );
    } finally {
      prefixed.close();
    }
  });

  test('a presigned URL fetches the bytes without credentials', async () => {
    const bytes = randomBytes(2000);
    const d = sha256(bytes);
    assert.equal(await bucket.put(d, bytes.length, streamOf(bytes)), true);
    const url = await bucket.presign(d, 60);
    assert.ok(url);
    const res = await fetch(url);
    assert.equal(res.status, 200);
    assert.deepEqual(Buffer.from(await res.arrayBuffer()), bytes);
  });

  test('delete removes an object', async () => {
    const bytes = Buffer.from('to delete');
    const d = sha256(bytes);
    assert.equal(await bucket.put(d, bytes.length, streamOf(bytes)), true);
    assert.equal(await bucket.delete(d), true);
    assert.equal(await bucket.head(d), null);
  });
});

describe('what the bucket was seen holding', () => {
  // A replica that fills its store from the bucket replicates those objects and records back:
  // what this process has just seen there is not asked for or sent again. Each test stops the
  // server before the calls that must make no request: a request would answer "unavailable".
  const blobRecord = (d: Digest): RecordRef => ({ kind: 'blob', upstream: 'hub', repository: 'library/x', digest: d });

  async function seenRig() {
    const s3 = await startS3Server();
    const clock = fakeClock(1_000);
    const writer = new Bucket(s3.config(), { logger: silentLogger() });
    const bucket = new Bucket(s3.config(), { logger: silentLogger(), now: clock.now });
    const bytes = randomBytes(3000);
    const d = sha256(bytes);
    assert.equal(await writer.put(d, bytes.length, streamOf(bytes)), true);
    assert.equal(await writer.putRecord(blobRecord(d), { namedBy: ['sha256:' + 'a'.repeat(64)] }), true);
    writer.close();
    return { s3, clock, bucket, bytes, d, close: async () => (bucket.close(), await s3.close()) };
  }

  test('an object read lately is held with its size without a request; another size is asked for; after BUCKET_SEEN_TTL_MS it is asked for again', async () => {
    const { s3, clock, bucket, bytes, d, close } = await seenRig();
    try {
      const obj = await bucket.open(d);
      assert.deepEqual(await readAll(obj!.body), bytes);
      await s3.stop();
      assert.equal(await bucket.holds(d, bytes.length), true, 'no request');
      clock.advance(BUCKET_SEEN_TTL_MS + 1);
      assert.equal(await bucket.holds(d, bytes.length), undefined, 'asked: the server is stopped');
      clock.advance(BUCKET_RETRY_MS);
      await s3.start();
      assert.equal(await bucket.holds(d, bytes.length + 1), false, 'another size: asked, and not what the bucket holds');
    } finally {
      await close();
    }
  });

  test('a record read lately is not written again with the same value; another value is written', async () => {
    const { s3, bucket, d, close } = await seenRig();
    try {
      const value = await bucket.getRecord(blobRecord(d));
      await s3.stop();
      assert.equal(await bucket.putRecord(blobRecord(d), value), true, 'no request');
      assert.equal(await bucket.putRecord(blobRecord(d), { namedBy: [] }), false, 'another value: sent, and the server is stopped');
    } finally {
      await close();
    }
  });

  test('an object this process deleted is no longer taken as held', async () => {
    const { bucket, bytes, d, close } = await seenRig();
    try {
      assert.equal(await bucket.head(d), bytes.length);
      assert.equal(await bucket.delete(d), true);
      assert.equal(await bucket.holds(d, bytes.length), false);
    } finally {
      await close();
    }
  });
});

describe('shared bucket unavailable', () => {
  test('a server that stops answers undefined; the bucket stays down BUCKET_RETRY_MS without asking, then is back — each transition logged once and counted, no secret logged', async () => {
    const s3 = await startS3Server();
    const clock = fakeClock(0);
    const metrics = new Metrics({ defaultMetrics: false });
    const { logger, records } = capturingLogger();
    const secret = 'do-not-log-this-secret';
    const bucket = new Bucket(s3.config(), { logger, metrics, now: clock.now });
    const withSecret = new Bucket(s3.config({ credentials: { accessKeyId: 'S3RVER', secretAccessKey: secret } }), { logger, metrics: new Metrics({ defaultMetrics: false }) });
    try {
      const bytes = Buffer.from('warm object');
      const d = sha256(bytes);
      assert.equal(await bucket.put(d, bytes.length, streamOf(bytes)), true);
      assert.equal(await metricValue(metrics, 'sigil_shared_up'), 1);

      await s3.stop();
      assert.equal(await bucket.head(d), undefined);
      assert.equal(bucket.available, false);
      assert.equal(await bucket.open(d), undefined);
      assert.equal(await bucket.getRecord({ kind: 'blob', upstream: 'hub', repository: 'r', digest: d }), undefined);
      assert.equal(await bucket.presign(d, 60), undefined);
      assert.equal(await bucket.put(d, bytes.length, streamOf(bytes)), false);
      assert.equal(await withSecret.head(d), undefined);

      await s3.start();
      clock.advance(BUCKET_RETRY_MS - 1);
      assert.equal(await bucket.head(d), undefined, 'still within the retry window: not asked');
      clock.advance(1);
      assert.equal(bucket.available, true);
      assert.equal(await bucket.head(d), bytes.length);
      assert.equal(await metricValue(metrics, 'sigil_shared_unavailable_total'), 1);
      assert.equal(await metricValue(metrics, 'sigil_shared_up'), 1);
      const own = records.filter((r) => r.msg?.startsWith('bucket:') && r.bucket === 'sigil-test');
      assert.deepEqual(
        own.map((r) => r.msg),
        ['bucket: unavailable, pulls go on without it', 'bucket: unavailable, pulls go on without it', 'bucket: available again'],
        'one line per transition (the second "unavailable" is the other bucket\'s)',
      );
      assert.ok(!JSON.stringify(records).includes(secret), 'the secret is never logged');
    } finally {
      bucket.close();
      withSecret.close();
      await s3.close();
    }
  });
});
