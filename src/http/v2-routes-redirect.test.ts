import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import Fastify, { type FastifyInstance } from 'fastify';
import { stringify } from 'yaml';
import { loadConfigFromText } from '../config/load.js';
import type { ManifestGate } from '../gate/manifest-gate.js';
import type { Registry } from '../oci/registry.js';
import { SharedRedirect } from '../registry/shared-redirect.js';
import { Bucket } from '../shared/bucket.js';
import { BASE_DOC } from '../../test/helpers/config-load.js';
import { FakeRegistry, sha256, silentLogger } from '../../test/helpers/fake-registry.js';
import { startS3Server, type S3Server } from '../../test/helpers/s3-server.js';
import { tempDir } from '../../test/helpers/temp.js';
import { registerErrorHandling } from './errors.js';
import { registerV2Routes, type V2Deps } from './v2-routes.js';

// `cache.shared.s3.redirect` over HTTP: a whole-blob GET the shared bucket holds for the
// repository is answered 307 with the presigned URL (and the digest asked for); a HEAD is
// answered here; and a redirect is never passed on offline.

const layer = randomBytes(10_000);
const digest = sha256(layer);

let s3: S3Server;
let bucket: Bucket;
before(async () => {
  s3 = await startS3Server();
  bucket = new Bucket(s3.config({ redirect: true }), { logger: silentLogger() });
  assert.ok(await bucket.put(digest, layer.length, Readable.from([layer])));
  assert.ok(await bucket.putRecord({ kind: 'blob', upstream: 'ghcr.io', repository: 'org/app', digest }, { namedBy: [] }));
});
after(async () => {
  bucket.close();
  await s3.close();
});

/** The /v2/ routes over `client` for upstream ghcr.io, with a gate that lets every blob through. */
async function appWith(client: Registry, offline: boolean): Promise<FastifyInstance> {
  const loaded = await loadConfigFromText(stringify(BASE_DOC), { source: 'test.yaml', env: {}, baseDir: await tempDir('sigil-redirect-') });
  assert.ok(loaded.ok);
  const gate = { wasDenied: () => false, storedBlobAllowed: async () => true, isSignatureBlob: () => false } as unknown as ManifestGate;
  const deps: V2Deps = { config: loaded.config, gate, clients: new Map([['ghcr.io', client]]), auth: null, offline };
  const app = Fastify();
  registerErrorHandling(app);
  registerV2Routes(app, () => deps);
  await app.ready();
  return app;
}

describe('blob redirect over HTTP', () => {
  test('a whole-blob GET the bucket holds is a 307 to a presigned URL serving the bytes; a HEAD is answered by the proxy', async () => {
    const below = new FakeRegistry('ghcr.io');
    below.blobs.set(digest, layer);
    const app = await appWith(new SharedRedirect(below, { bucket }), false);
    try {
      const res = await app.inject({ method: 'GET', url: `/v2/ghcr.io/org/app/blobs/${digest}` });
      assert.equal(res.statusCode, 307);
      assert.equal(res.headers['docker-content-digest'], digest);
      const location = res.headers.location;
      assert.equal(typeof location, 'string');
      const fetched = await fetch(location as string);
      assert.equal(sha256(Buffer.from(await fetched.arrayBuffer())), digest);
      const head = await app.inject({ method: 'HEAD', url: `/v2/ghcr.io/org/app/blobs/${digest}` });
      assert.equal(head.statusCode, 200);
      assert.equal(head.headers.location, undefined);
    } finally {
      await app.close();
    }
  });

  test('offline, a redirect is never passed on', async () => {
    const below = new FakeRegistry('ghcr.io');
    const app = await appWith(new SharedRedirect(below, { bucket }), true);
    try {
      const res = await app.inject({ method: 'GET', url: `/v2/ghcr.io/org/app/blobs/${digest}` });
      assert.equal(res.statusCode, 500);
      assert.equal(res.headers.location, undefined);
    } finally {
      await app.close();
    }
  });
});
