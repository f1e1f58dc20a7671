import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { PassThrough, Readable } from 'node:stream';
import { test } from 'node:test';
import { once } from 'node:events';
import { Bucket, BUCKET_PART_BYTES } from '../../src/shared/bucket.js';
import { collect, sha256, silentLogger } from '../helpers/fake-registry.js';
import { startS3Server } from '../helpers/s3-server.js';

// A bucket that goes away in the middle of an upload leaves no object (an uncompleted multipart
// upload is never one); in the middle of a download, the reader gets an error, not a hang and not
// a short blob taken for a whole one.

const big = randomBytes(2 * BUCKET_PART_BYTES + 1000); // a multipart upload of three parts

test('a bucket stopped mid-upload: put resolves false and, once back, holds no object', async () => {
  const s3 = await startS3Server();
  let now = 0;
  const b = new Bucket(s3.config(), { logger: silentLogger(), now: () => now });
  try {
    const body = new PassThrough();
    const put = b.put(sha256(big), big.length, body);
    if (!body.write(big.subarray(0, BUCKET_PART_BYTES + 1000))) await once(body, 'drain'); // the first part taken by the upload
    await s3.stop();
    body.end(big.subarray(BUCKET_PART_BYTES + 1000));
    assert.equal(await put, false);
    await s3.start();
    now += 10 * 60_000; // past the bucket's down window
    assert.equal(await b.head(sha256(big)), null);
  } finally {
    b.close();
    await s3.close();
  }
});

test('a bucket stopped mid-download: the body errors (or had every byte already), never ends short', async () => {
  const s3 = await startS3Server();
  const b = new Bucket(s3.config(), { logger: silentLogger() });
  try {
    assert.ok(await b.put(sha256(big), big.length, Readable.from([big])));
    const obj = await b.open(sha256(big));
    assert.ok(obj);
    const got = collect(obj.body);
    await new Promise((resolve) => obj.body.once('data', resolve));
    await s3.stop();
    const r = await got.then((bytes) => bytes, () => 'failed' as const);
    assert.ok(r === 'failed' || sha256(r) === sha256(big), 'an error, or every byte (already received) — never a short body that ends cleanly');
  } finally {
    b.close();
    await s3.close();
  }
});
