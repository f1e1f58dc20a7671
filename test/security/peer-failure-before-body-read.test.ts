/**
 * A follower's body (registry/cluster-flight.ts) is handed up before anyone reads it: the store's
 * download (registry/download.ts) still awaits its temp file before piping it. When the lease
 * holder's stream fails and the rest cannot be had meanwhile, that failure must wait in the body
 * for its reader — never an 'error' event without a listener, which takes the whole process down.
 */
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { test } from 'node:test';
import type { Digest } from '../../src/oci/digest.js';
import { ClusterFlight, blobLeaseKey } from '../../src/registry/cluster-flight.js';
import { signHolder } from '../../src/shared/peer-auth.js';
import type { PeerAnswer, PeerClient } from '../../src/shared/peer-client.js';
import { FakeRegistry, collect, sha256, silentLogger } from '../helpers/fake-registry.js';

const token = 'peer-token-0123456789abcdef';
const HOLDER = 'http://127.0.0.1:9';

/** A replica whose lease holder answers `peerBody`; the upstream below holds `bytes`, its 206 without a Content-Range (not a continuation to trust). */
function follower(bytes: Buffer, peerBody: PassThrough) {
  const below = new FakeRegistry('up.test');
  const digest: Digest = sha256(bytes);
  below.blobs.set(digest, bytes);
  const key = blobLeaseKey(below.name, 'app', digest);
  const leases = { acquire: async () => ({ kind: 'held' as const, holder: signHolder(token, key, HOLDER) }), holder: async () => signHolder(token, key, HOLDER) };
  const answer: PeerAnswer = { kind: 'ok', status: 200, offset: 0, size: bytes.length, body: peerBody };
  const peers = { open: async () => answer } as unknown as PeerClient;
  const content = { onCommit: () => {}, has: async () => false };
  const flight = new ClusterFlight(below, { leases, peers, peer: { advertise: 'http://127.0.0.1:8', token }, content, logger: silentLogger() });
  return { flight, digest, below };
}

test("a holder's stream that fails before the follower's body is read fails that body when it is read, and crashes nothing", async () => {
  const bytes = Buffer.from('0123456789abcdef');
  const peerBody = new PassThrough();
  const { flight, digest, below } = follower(bytes, peerBody);
  const res = await flight.openBlob('app', digest, { method: 'GET', verifyDigest: false });
  assert.ok(res.body);
  peerBody.write(bytes.subarray(0, 4));
  peerBody.destroy(new Error('holder reset'));
  // the continuation is refused; nobody has read the body yet
  for (let i = 0; i < 100 && !res.body.destroyed; i++) await new Promise((r) => setImmediate(r));
  assert.equal(res.body.destroyed, true, 'the failure reached the body');
  await new Promise((r) => setImmediate(r));
  await assert.rejects(collect(res.body), /asked for bytes 4-/);
  assert.equal(below.count('openBlob GET bytes=4-'), 1);
});
