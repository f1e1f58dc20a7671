import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { after, before, describe, test } from 'node:test';
import { Metrics } from '../audit/metrics.js';
import type { Digest } from '../oci/digest.js';
import { sha256 } from '../../test/helpers/digest.js';
import { capturingLogger, silentLogger } from '../../test/helpers/fake-registry.js';
import { startS3Server, type S3Server } from '../../test/helpers/s3-server.js';
import { tempStore } from '../../test/helpers/temp-store.js';
import { Bucket } from './bucket.js';
import { Replicator } from './replicator.js';

// Replication into the shared bucket: what the local store commits and the catalog's manifest
// and blob records reach the bucket in the background; nothing else does; a full queue drops
// (counted) instead of growing, and a held bucket never holds a commit.

const MT = 'application/vnd.oci.image.manifest.v1+json';

const counter = async (m: Metrics, labels: Record<string, string>): Promise<number> =>
  (await m.sharedReplications.get()).values.filter((v) => Object.entries(labels).every(([k, x]) => (v.labels as Record<string, unknown>)[k] === x)).reduce((n, v) => n + v.value, 0);

async function writeStreaming(content: Awaited<ReturnType<typeof tempStore>>['content'], bytes: Buffer): Promise<void> {
  const w = content.beginWrite(sha256(bytes), bytes.length);
  if (w.kind !== 'writer') assert.fail('expected the writer');
  await pipeline(Readable.from([bytes]), w.writer);
  await w.done;
}

describe('replicator', () => {
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

  test('committed objects (both write paths) and manifest and blob records reach the bucket; tags and verdicts stay local', async () => {
    const store = await tempStore();
    const metrics = new Metrics({ defaultMetrics: false });
    const r = new Replicator({ bucket, ...store, logger: silentLogger(), metrics });
    try {
      const manifest = Buffer.from(`{"schemaVersion":2,"n":"${randomBytes(8).toString('hex')}"}`);
      const layer = randomBytes(200_000);
      await store.catalog.putManifest('hub', 'library/x', sha256(manifest), MT, manifest);
      await writeStreaming(store.content, layer);
      await store.catalog.noteBlob('hub', 'library/x', sha256(layer), sha256(manifest));
      await store.catalog.putTag('hub', 'library/x', 'latest', { digest: sha256(manifest), mediaType: MT });
      await store.catalog.putVerdict('hub', 'library/x', sha256(manifest), 'fp', { outcome: { verified: true } as never, decidedAt: 1 });
      await r.idle();
      assert.equal(await bucket.head(sha256(manifest)), manifest.length);
      assert.equal(await bucket.head(sha256(layer)), layer.length);
      assert.deepEqual(await bucket.getRecord({ kind: 'manifest', upstream: 'hub', repository: 'library/x', digest: sha256(manifest) }), { mediaType: MT, size: manifest.length });
      assert.deepEqual(await bucket.getRecord({ kind: 'blob', upstream: 'hub', repository: 'library/x', digest: sha256(layer) }), { namedBy: [sha256(manifest)] });
      assert.equal(await bucket.getRecord({ kind: 'tag', upstream: 'hub', repository: 'library/x', tag: 'latest' }), null);
      assert.equal(await bucket.getRecord({ kind: 'verdict', upstream: 'hub', repository: 'library/x', digest: sha256(manifest), policyFingerprint: 'fp' }), null);
      assert.equal(await counter(metrics, { kind: 'object', result: 'uploaded' }), 2);
      assert.equal(await counter(metrics, { kind: 'record', result: 'uploaded' }), 2);
    } finally {
      await r.close();
      await store.close();
    }
  });

  test('an object the bucket holds already is not uploaded again', async () => {
    const bytes = randomBytes(5000);
    assert.equal(await bucket.put(sha256(bytes), bytes.length, Readable.from([bytes])), true);
    const store = await tempStore();
    const metrics = new Metrics({ defaultMetrics: false });
    const puts: Digest[] = [];
    const spy = { holds: (d: Digest, n: number) => bucket.holds(d, n), put: (d: Digest, n: number, b: Readable) => (puts.push(d), bucket.put(d, n, b)), putRecord: bucket.putRecord.bind(bucket) };
    const r = new Replicator({ bucket: spy, ...store, logger: silentLogger(), metrics });
    try {
      await store.content.putBytes(sha256(bytes), bytes);
      await r.idle();
      assert.deepEqual(puts, []);
      assert.equal(await counter(metrics, { kind: 'object', result: 'present' }), 1);
    } finally {
      await r.close();
      await store.close();
    }
  });

  test('a held bucket never holds a commit; past the queue bound uploads are dropped, counted and logged once', async () => {
    const store = await tempStore();
    const metrics = new Metrics({ defaultMetrics: false });
    const { logger, records } = capturingLogger();
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    const slow = { holds: async (d: Digest, n: number) => (await held, bucket.holds(d, n)), put: bucket.put.bind(bucket), putRecord: bucket.putRecord.bind(bucket) };
    const r = new Replicator({ bucket: slow, ...store, logger, metrics, queueMax: 2, concurrency: 1 });
    try {
      const blobs = [0, 1, 2, 3, 4].map(() => randomBytes(1000));
      for (const b of blobs) await store.content.putBytes(sha256(b), b); // each returns while the bucket is held
      await new Promise((resolve) => setImmediate(resolve));
      assert.equal(r.pending, 3, 'one running, two waiting');
      assert.equal(await counter(metrics, { result: 'dropped' }), 2);
      assert.equal(records.filter((x) => x.msg?.startsWith('replication: the queue is full')).length, 1);
      release();
      await r.idle();
      for (const [i, b] of blobs.entries()) assert.equal(await bucket.head(sha256(b)), i < 3 ? b.length : null, `blob ${i}`);
    } finally {
      release();
      await r.close();
      await store.close();
    }
  });

  test('a bucket that is down: the upload fails, counted; the store goes on', async () => {
    const down = await startS3Server();
    const b = new Bucket(down.config(), { logger: silentLogger() });
    await down.stop();
    const store = await tempStore();
    const metrics = new Metrics({ defaultMetrics: false });
    const r = new Replicator({ bucket: b, ...store, logger: silentLogger(), metrics });
    try {
      const bytes = randomBytes(100);
      await store.content.putBytes(sha256(bytes), bytes);
      await r.idle();
      assert.ok(await store.content.has(sha256(bytes)));
      assert.equal(await counter(metrics, { kind: 'object', result: 'failed' }), 1);
    } finally {
      await r.close();
      b.close();
      await store.close();
    }
  });
});
