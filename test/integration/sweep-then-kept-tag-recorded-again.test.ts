import assert from 'node:assert/strict';
import { test } from 'node:test';
import { pino } from 'pino';
import { StoreAdmission } from '../../src/registry/admission.js';
import { storeOnly } from '../../src/registry/compose.js';
import { StoreKeeper } from '../../src/registry/keep.js';
import type { Evaluation, ManifestTarget } from '../../src/gate/manifest-gate.js';
import type { Digest } from '../../src/oci/digest.js';
import { Catalog } from '../../src/store/catalog.js';
import { ContentStore } from '../../src/store/content-store.js';
import { tempDir } from '../helpers/temp.js';
import { sha256 } from '../helpers/digest.js';
import { fakeClock } from '../helpers/clock.js';

// Guards: the metadata sweep removes the tag and manifest records of an
// evicted manifest; the keeper's shortcut ("kept already for this tag, and the object is on disk")
// then never writes them again once the same digest is stored again by another key (a second
// tag of the same image, a pull by digest, another repository, another process). The image is
// wholly stored, yet stale-if-error and --offline answer MANIFEST_UNKNOWN for that tag for as
// long as the process runs. (The on-disk check covers eviction alone; the sweep
// takes away the records that check assumed.)

const freshDir = (): Promise<string> => tempDir('sigil-kept-tag-');

const MT_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';

test('a tag kept before an eviction + sweep is recorded again when its image is stored again', async () => {
  const dir = await freshDir();
  const clock = fakeClock();
  const now = clock.now;
  const store = await ContentStore.open({ dir, maxBytes: 1 << 20, now, sweepMetaAtOpen: false });
  try {
    const catalog = new Catalog(store);
    const keeper = new StoreKeeper({ content: store, catalog }, new StoreAdmission([], { ttlMs: 600_000 }), pino({ level: 'silent' }));
    const bytes = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MT_MANIFEST, config: null, layers: [] }));
    const digest: Digest = sha256(bytes);
    const ev: Evaluation = { manifest: { bytes, digest, mediaType: MT_MANIFEST }, basis: 'no-policy', cached: false };
    const at = (reference: string): ManifestTarget => ({ upstream: 'reg.test', repository: 'team/app', reference });

    // `latest` and `1.0` name the same image; both pulled and kept
    await keeper.keep(at('latest'), ev);
    await keeper.keep(at('1.0'), ev);
    const offline = storeOnly('reg.test', { content: store, catalog });
    assert.equal((await offline.fetchManifest('team/app', 'latest')).digest, digest);

    // cache pressure evicts the manifest; a sweep (automatic, or `sigil cache prune`) drops its records
    clock.advance(1000);
    await store.prune({ maxBytes: 0 });
    clock.advance(1000);
    await store.sweepMeta();
    assert.equal(await catalog.getTag('reg.test', 'team/app', 'latest'), null, 'swept with its object');

    // pulled again, by the other tag first, then by `latest`
    clock.advance(1000);
    await keeper.keep(at('1.0'), ev);
    await keeper.keep(at('latest'), ev);
    assert.equal(await store.onDisk(digest), true, 'the image is stored');
    assert.equal((await offline.fetchManifest('team/app', '1.0')).digest, digest);
    const latest = await catalog.getTag('reg.test', 'team/app', 'latest');
    assert.equal(latest?.value.digest, digest, 'the tag record of `latest` was written again when `latest` was kept again');
    assert.equal((await offline.fetchManifest('team/app', 'latest')).digest, digest);
  } finally {
    await store.close();
  }
});
