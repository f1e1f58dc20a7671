import assert from 'node:assert/strict';
import { afterEach, test } from 'node:test';
import type { Policy } from '../config/types.js';
import type { Outcome } from '../verify/types.js';
import { FakeRegistry, imageManifest, sha256, silentLogger } from '../../test/helpers/fake-registry.js';
import { tempStore } from '../../test/helpers/temp-store.js';
import { StoreAdmission } from './admission.js';
import { StoreKeeper } from './keep.js';
import type { VerdictRecord } from '../store/catalog.js';

const stores: Array<Awaited<ReturnType<typeof tempStore>>> = [];
afterEach(async () => {
  for (const s of stores.splice(0)) await s.close();
});

const enforce = { name: 'prod', mode: 'enforce', matchers: [/^.*$/], fingerprint: 'fp' } as unknown as Policy;
const verified = { kind: 'verified', signer: { kind: 'key', key: 'k' }, checks: [] } as unknown as Outcome;
const unsigned: Outcome = { kind: 'unsigned', checks: [] };
const at = { upstream: 'up.test', repository: 'app', reference: 'v1' };
const layer = Buffer.from('layer');

async function rig() {
  const store = await tempStore();
  stores.push(store);
  const admission = new StoreAdmission([enforce], { ttlMs: 60_000 });
  return { store, admission, keeper: new StoreKeeper(store, admission, silentLogger()) };
}

test('under enforce, an image that did not verify is neither kept nor are its blobs admitted', async () => {
  const { store, admission, keeper } = await rig();
  const m = imageManifest([layer]);
  await keeper.keep(at, { manifest: m, policy: enforce, basis: 'signature', outcome: unsigned });
  assert.equal(await store.catalog.getManifest('up.test', 'app', m.digest), null);
  assert.equal(admission.admittedBy('up.test', 'app', sha256(layer)), false);
});

test('a verified image is kept with its tag and verdict, and the blobs it names are admitted at their sizes', async () => {
  const { store, admission, keeper } = await rig();
  const m = imageManifest([layer]);
  await keeper.keep(at, { manifest: m, policy: enforce, basis: 'signature', outcome: verified });
  assert.deepEqual((await store.catalog.getManifest('up.test', 'app', m.digest))?.bytes, m.bytes);
  assert.equal((await store.catalog.getTag('up.test', 'app', 'v1'))?.value.digest, m.digest);
  const verdict = (await store.catalog.records('verdict')).find((v) => v.ref.repository === 'app' && v.ref.digest === m.digest && v.ref.policyFingerprint === 'fp');
  assert.equal((verdict?.value as VerdictRecord | undefined)?.outcome.kind, 'verified');
  assert.deepEqual(admission.blob('up.test', 'app', sha256(layer)), { size: layer.length, manifest: m.digest });
});

test('a signature artifact is kept with the blobs whose bytes were checked', async () => {
  const { store, admission, keeper } = await rig();
  const m = imageManifest([Buffer.from('payload')]);
  const blobs = [{ digest: sha256('payload'), size: 7, bytes: Buffer.from('payload') }];
  await keeper.keep({ ...at, reference: 'sha256-abc.sig' }, { manifest: m, policy: enforce, basis: 'signature-artifact', signatureBlobs: blobs });
  assert.deepEqual(await store.catalog.blobNamers('up.test', 'app', sha256('payload')), [m.digest]);
  assert.equal(await store.content.has(sha256('payload')), true);
  assert.equal(admission.admittedBy('up.test', 'app', sha256('payload')), true);
});

test('an answer read from the store admits its blobs but writes nothing', async () => {
  const { store, admission, keeper } = await rig();
  const m = { ...imageManifest([layer]), stale: true };
  await keeper.keep(at, { manifest: m, policy: enforce, basis: 'signature', outcome: verified });
  assert.equal(admission.admittedBy('up.test', 'app', sha256(layer)), true);
  assert.equal(await store.content.has(m.digest), false);
});

test('signature data is kept with the image it signs only when that image may be kept', async () => {
  const { store, keeper } = await rig();
  const below = new FakeRegistry();
  const sig = below.put('app', imageManifest([Buffer.from('payload')]), 'sha256-abc.sig');
  below.blobs.set(sha256('payload'), Buffer.from('payload'));
  const read = async () => {
    const { registry, recording } = keeper.record(below);
    await registry.fetchManifest('app', 'sha256-abc.sig');
    for await (const _ of (await registry.openBlob('app', sha256('payload'), { method: 'GET' })).body!);
    return recording;
  };
  const subject = sha256('image');
  await keeper.keepSignatures(await read(), subject, { policy: enforce, basis: 'signature', outcome: unsigned });
  assert.equal(await store.catalog.getTag('up.test', 'app', 'sha256-abc.sig'), null);
  await keeper.keepSignatures(await read(), subject, { policy: enforce, basis: 'signature', outcome: verified });
  assert.equal((await store.catalog.getTag('up.test', 'app', 'sha256-abc.sig'))?.value.digest, sig.digest);
  assert.deepEqual(await store.catalog.blobNamers('up.test', 'app', sha256('payload')), [subject]);
});
