import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Readable } from 'node:stream';
import { isSigilError } from '../errors.js';
import type { Digest } from '../oci/digest.js';
import type { FaultHandler, FaultServer } from '../../test/helpers/fault-server.js';
import { UpstreamTestbed } from '../../test/helpers/upstream-rig.js';
import type { UpstreamRig } from '../../test/helpers/upstream-rig.js';
import { blobGet } from './blobs.js';
import type { BlobRequest, BlobResponse } from '../oci/registry.js';
import { sha256 } from '../../test/helpers/digest.js';

const bed = new UpstreamTestbed();
after(() => bed.close());

const BLOB = Buffer.from('the blob, all of it');
const DIGEST: Digest = sha256(BLOB);

/** Opens blob DIGEST of a/b through the request skeleton, on an upstream served by `handler`. */
async function openBlob(handler: FaultHandler, req: BlobRequest, verifyDigests = true): Promise<{ res: BlobResponse; rig: UpstreamRig; s: FaultServer }> {
  const s = await bed.server(handler);
  const rig = bed.rig();
  const streaming = { upstream: rig.name, verifyDigests, metrics: rig.metrics, logger: rig.logger, hashes: undefined };
  const res = await rig.caller(s.url).call(blobGet('a/b', DIGEST, req, streaming));
  return { res, rig, s };
}

/** Serves `bytes` as the blob with `headers`, each GET or HEAD. */
const serve = (bytes: Buffer, headers: Record<string, string> = {}): FaultHandler => (req, res) => {
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(bytes.length), ...headers });
  res.end(req.method === 'HEAD' ? undefined : bytes);
};

/** Reads a stream to its end or error, keeping what was emitted before an error. */
async function drain(stream: Readable | null): Promise<{ bytes: string; error?: unknown }> {
  assert.ok(stream, 'a GET has a body');
  const chunks: Buffer[] = [];
  try {
    for await (const c of stream) chunks.push(c as Buffer);
  } catch (error) {
    return { bytes: Buffer.concat(chunks).toString(), error };
  }
  return { bytes: Buffer.concat(chunks).toString() };
}

describe('blobGet: a blob streamed from the upstream', () => {
  test('only headers safe to pass on reach the client: no cookies, no storage headers', async () => {
    const { res } = await openBlob(serve(BLOB, { 'set-cookie': 'session=1', 'x-amz-request-id': 'abc', etag: '"e"', 'accept-ranges': 'bytes' }), { method: 'GET' });
    assert.equal(res.status, 200);
    assert.deepEqual(res.headers, { 'content-type': 'application/octet-stream', 'content-length': String(BLOB.length), etag: '"e"', 'accept-ranges': 'bytes' });
    assert.deepEqual(await drain(res.body), { bytes: BLOB.toString() });
  });

  test('HEAD: the headers and no body', async () => {
    const { res, s } = await openBlob(serve(BLOB), { method: 'HEAD' });
    assert.equal(res.body, null);
    assert.equal(res.headers['content-length'], String(BLOB.length));
    assert.equal(s.requests[0].method, 'HEAD');
  });

  test('wrong bytes: the stream fails with DIGEST_MISMATCH, counted once under blob and logged once naming upstream, repository, digest and code', async () => {
    const { res, rig } = await openBlob(serve(Buffer.from('other bytes, same size')), { method: 'GET' });
    const got = await drain(res.body);
    assert.ok(isSigilError(got.error));
    assert.equal(got.error.code, 'DIGEST_MISMATCH');
    assert.equal(await rig.counter('sigil_upstream_errors_total', { kind: 'blob', code: 'DIGEST_MISMATCH' }), 1);
    const warned = rig.logs.filter((l) => l.msg === 'blob stream failed');
    assert.equal(warned.length, 1);
    assert.equal(warned[0].level, 40);
    assert.equal(warned[0].upstream, 'test-upstream');
    assert.equal(warned[0].repository, 'a/b');
    assert.equal(warned[0].digest, DIGEST);
    assert.equal(warned[0].code, 'DIGEST_MISMATCH');
  });

  test('verifyDigest false (someone downstream hashes) passes the bytes unhashed; the upstream setting is the default', async () => {
    const other = Buffer.from('bytes the store will refuse');
    assert.deepEqual(await drain((await openBlob(serve(other), { method: 'GET', verifyDigest: false })).res.body), { bytes: other.toString() });
    assert.deepEqual(await drain((await openBlob(serve(other), { method: 'GET' }, false)).res.body), { bytes: other.toString() });
    const checked = await drain((await openBlob(serve(other), { method: 'GET', verifyDigest: true }, false)).res.body);
    assert.ok(isSigilError(checked.error) && checked.error.code === 'DIGEST_MISMATCH');
  });

  test('a connection cut mid-body: UPSTREAM_BAD_RESPONSE, even unhashed, no hang', async () => {
    const { res } = await openBlob((_req, res) => {
      res.writeHead(200, { 'content-length': String(BLOB.length) });
      res.write(BLOB.subarray(0, 5));
      setImmediate(() => res.socket?.destroy());
    }, { method: 'GET', verifyDigest: false });
    const got = await drain(res.body);
    assert.ok(isSigilError(got.error));
    assert.equal(got.error.code, 'UPSTREAM_BAD_RESPONSE');
  });

  test('a 206 that is every byte of the blob is hashed like a 200; a 206 of a part is passed on unhashed', async () => {
    const whole = await openBlob((_req, res) => {
      res.writeHead(206, { 'content-range': `bytes 0-${BLOB.length - 1}/${BLOB.length}`, 'content-length': String(BLOB.length) });
      res.end(Buffer.from('X'.repeat(BLOB.length)));
    }, { method: 'GET', range: 'bytes=0-' });
    const got = await drain(whole.res.body);
    assert.ok(isSigilError(got.error) && got.error.code === 'DIGEST_MISMATCH');

    const part = await openBlob((_req, res) => {
      res.writeHead(206, { 'content-range': `bytes 0-3/${BLOB.length}`, 'content-length': '4' });
      res.end('XXXX');
    }, { method: 'GET', range: 'bytes=0-3' });
    assert.equal(part.res.status, 206);
    assert.deepEqual(await drain(part.res.body), { bytes: 'XXXX' });
  });

  test('a 206 other than the range asked for is UPSTREAM_BAD_RESPONSE before any byte is passed on', async () => {
    await assert.rejects(
      openBlob((_req, res) => {
        res.writeHead(206, { 'content-range': `bytes 4-7/${BLOB.length}`, 'content-length': '4' });
        res.end('XXXX');
      }, { method: 'GET', range: 'bytes=0-3' }),
      { code: 'UPSTREAM_BAD_RESPONSE', message: `upstream test-upstream: blob ${DIGEST} of a/b: answered 206 with Content-Range bytes 4-7/${BLOB.length} to Range bytes=0-3` },
    );
  });
});
