import assert from 'node:assert/strict';
import { test } from 'node:test';
import { capturingLogger } from '../helpers/fake-registry.js';
import { freePort } from '../helpers/net.js';
import { Bucket } from '../../src/shared/bucket.js';

// The S3 secret, and a password someone wrote into the endpoint URL, never reach a log line.

const SECRET = 'sup3r-s3cret-value';

test('a bucket that fails logs its endpoint without the credentials written into it', async () => {
  const port = await freePort(); // nothing listens there
  const { logger, records } = capturingLogger();
  const b = new Bucket(
    { endpoint: `http://admin:${SECRET}@127.0.0.1:${port}`, region: 'us-east-1', bucket: 'sigil-test', prefix: '', forcePathStyle: true, credentials: { accessKeyId: 'AK', secretAccessKey: SECRET }, redirect: false },
    { logger },
  );
  try {
    assert.equal(await b.head('sha256:' + 'a'.repeat(64) as `sha256:${string}`), undefined);
    const logged = JSON.stringify(records);
    assert.ok(records.some((r) => r.msg?.startsWith('bucket: unavailable')), 'the failure is logged');
    assert.ok(!logged.includes(SECRET), logged);
    assert.match(logged, new RegExp(`127\\.0\\.0\\.1:${port}`), 'the endpoint is still named');
  } finally {
    b.close();
  }
});
