import assert from 'node:assert/strict';
import { afterEach, test } from 'node:test';
import { Metrics } from '../audit/metrics.js';
import { isSigilError } from '../errors.js';
import { FakeRegistry, collect, imageManifest, manualTimer, sha256, silentLogger } from '../../test/helpers/fake-registry.js';
import { compileConfig } from '../../test/helpers/sigil.js';
import { tempStore } from '../../test/helpers/temp-store.js';
import { StoreAdmission } from './admission.js';
import { composeServe, serveRegistry, type StackDeps } from './compose.js';

const stores: Array<Awaited<ReturnType<typeof tempStore>>> = [];
afterEach(async () => {
  for (const s of stores.splice(0)) await s.close();
});

const cache = { tags: { ttlMs: 30_000 }, manifests: { maxBytes: 1 << 20 } };
const layer = Buffer.from('layer');

async function rig(opts: { store: boolean; staleIfError?: boolean }) {
  const up = new FakeRegistry();
  const m = up.put('app', imageManifest([layer]), 'v1');
  up.blobs.set(sha256(layer), layer);
  const timer = manualTimer();
  const deps: StackDeps = { metrics: new Metrics({ defaultMetrics: false }), logger: silentLogger(), now: () => 1_000, timer: timer.timer };
  let store: Awaited<ReturnType<typeof tempStore>> | undefined;
  if (opts.store) {
    store = await tempStore();
    stores.push(store);
  }
  const admission = new StoreAdmission([], { ttlMs: 60_000 });
  const reg = serveRegistry(up, { staleIfError: opts.staleIfError ?? true }, cache, deps, store && { ...store, admission });
  return { up, m, timer, store, reg };
}

test('without a store: the memory caches in front of the upstream, blobs straight through', async () => {
  const { up, m, reg } = await rig({ store: false });
  await reg.fetchManifest('app', 'v1');
  await reg.fetchManifest('app', 'v1');
  await collect((await reg.openBlob('app', sha256(layer), { method: 'GET' })).body);
  assert.deepEqual(up.calls, ['resolveTag app:v1', `fetchManifest app@${m.digest}`, `openBlob GET app@${sha256(layer)}`]);
});

test('with a store: blobs written through and read back, manifests by digest from the store', async () => {
  const { up, m, store, reg } = await rig({ store: true });
  await collect((await reg.openBlob('app', sha256(layer), { method: 'GET' })).body);
  await store!.content.idle();
  for (let i = 0; i < 1000 && !(await store!.catalog.hasBlob('up.test', 'app', sha256(layer))); i++) await new Promise((r) => setImmediate(r));
  assert.deepEqual(await collect((await reg.openBlob('app', sha256(layer), { method: 'GET' })).body), layer);
  await store!.catalog.putManifest('up.test', 'app', m.digest, m.mediaType, m.bytes);
  await reg.fetchManifest('app', m.digest);
  assert.deepEqual(up.calls, [`openBlob GET app@${sha256(layer)}`], 'the second blob GET and the manifest came from the store');
});

test('with a store and staleIfError: an upstream silent past the deadline gets the stored tag (stale)', async () => {
  const { up, m, timer, store, reg } = await rig({ store: true });
  await store!.catalog.putManifest('up.test', 'app', m.digest, m.mediaType, m.bytes);
  await store!.catalog.putTag('up.test', 'app', 'v1', { digest: m.digest, mediaType: m.mediaType });
  up.hold.add('resolveTag');
  const answer = reg.fetchManifest('app', 'v1');
  for (let i = 0; i < 100 && timer.armed.length === 0; i++) await new Promise((r) => setImmediate(r));
  timer.fire();
  assert.equal((await answer).stale, true);
  up.release();
});

test('with a store but staleIfError off, the upstream\'s failure is the answer', async () => {
  const { up, m, store, reg } = await rig({ store: true, staleIfError: false });
  await store!.catalog.putManifest('up.test', 'app', m.digest, m.mediaType, m.bytes);
  await store!.catalog.putTag('up.test', 'app', 'v1', { digest: m.digest, mediaType: m.mediaType });
  up.fail.set('resolveTag', 'UPSTREAM_UNREACHABLE');
  await assert.rejects(reg.fetchManifest('app', 'v1'), (e) => isSigilError(e) && e.code === 'UPSTREAM_UNREACHABLE');
});

test('serve --offline is the store alone: nothing is contacted; a store comes with its keeper', async () => {
  const store = await tempStore();
  stores.push(store);
  const m = imageManifest();
  await store.catalog.putManifest('up.test', 'app', m.digest, m.mediaType, m.bytes);
  await store.catalog.putTag('up.test', 'app', 'v1', { digest: m.digest, mediaType: m.mediaType });
  // 127.0.0.1:9 (discard): nothing answers there
  const config = await compileConfig(`upstreams:\n  - name: up.test\n    url: http://127.0.0.1:9\ncache:\n  store:\n    dir: ${store.dir}\n    maxBytes: 1048576\n`);
  const deps = { metrics: new Metrics({ defaultMetrics: false }), logger: silentLogger() };
  const offline = composeServe(config, { ...deps, offline: true, store });
  assert.equal((await offline.registries.get('up.test')!.fetchManifest('app', 'v1')).stale, true);
  assert.ok(offline.keeper);
  const storeless = composeServe(config, { ...deps, offline: false });
  assert.equal(storeless.keeper, undefined);
  await storeless.registries.get('up.test')!.close();
});

test('tag answers are shared through Redis only with a peer token to seal them; without one, each process looks tags up itself', async () => {
  for (const token of ['a-peer-token-of-some-length', undefined]) {
    const up = new FakeRegistry();
    up.put('app', imageManifest([layer]), 'v1');
    const keys: string[] = [];
    // a coordinator that records the keys asked and answers "unavailable" (Redis down): the stack goes on below
    const coordinator = new Proxy({}, { get: (_t, _op) => async (key: string) => (keys.push(key), { kind: 'unavailable' }) }) as never;
    const deps: StackDeps = { metrics: new Metrics({ defaultMetrics: false }), logger: silentLogger(), shared: { redirect: false, coordinator, token, close: async () => {} } };
    const store = await tempStore();
    stores.push(store);
    const reg = serveRegistry(up, { staleIfError: false }, cache, deps, { ...store, admission: new StoreAdmission([], { ttlMs: 60_000 }) });
    await reg.fetchManifest('app', 'v1');
    assert.equal(keys.some((k) => k.startsWith('tag:')), token !== undefined, `token ${token === undefined ? 'absent' : 'present'}: ${keys.join(', ')}`);
  }
});
