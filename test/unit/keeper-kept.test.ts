import assert from 'node:assert/strict';
import { test } from 'node:test';
import { pino } from 'pino';
import { StoreAdmission } from '../../src/registry/admission.js';
import { StoreKeeper } from '../../src/registry/keep.js';
import { KEPT_TRUST_MS } from '../../src/registry/kept.js';
import type { Evaluation, ManifestTarget } from '../../src/gate/manifest-gate.js';
import type { Digest } from '../../src/oci/digest.js';
import { Catalog } from '../../src/store/catalog.js';
import { ContentStore } from '../../src/store/content-store.js';
import { tempDir } from '../helpers/temp.js';
import { sha256 } from '../helpers/digest.js';
import { fakeClock } from '../helpers/clock.js';

const freshDir = (): Promise<string> => tempDir('sigil-keeper-kept-');

const MT = 'application/vnd.oci.image.manifest.v1+json';

test('a sweep by another process sharing the store: a kept tag is recorded again within KEPT_TRUST_MS', async () => {
  const dir = await freshDir();
  const clock = fakeClock();
  const now = clock.now;
  const mine = await ContentStore.open({ dir, maxBytes: 1 << 20, now, sweepMetaAtOpen: false });
  let other: ContentStore | undefined;
  try {
    const catalog = new Catalog(mine);
    const keeper = new StoreKeeper({ content: mine, catalog }, new StoreAdmission([], { ttlMs: 600_000 }), pino({ level: 'silent' }), now);
    const bytes = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MT, config: null, layers: [] }));
    const digest: Digest = sha256(bytes);
    const ev: Evaluation = { manifest: { bytes, digest, mediaType: MT }, basis: 'no-policy', cached: false };
    const at = (reference: string): ManifestTarget => ({ upstream: 'reg.test', repository: 'team/app', reference });
    await keeper.keep(at('latest'), ev);
    await keeper.keep(at('1.0'), ev);

    // the other process (started now: it scans what is stored) evicts the manifest and sweeps its records
    other = await ContentStore.open({ dir, maxBytes: 1 << 20, now, sweepMetaAtOpen: false });
    clock.advance(1000);
    assert.equal((await other.prune({ maxBytes: 0 })).removed, 1);
    await other.sweepMeta(); // after the one the eviction started
    assert.equal(await catalog.getTag('reg.test', 'team/app', 'latest'), null, 'swept by the other process');
    // this process stores the image again through `1.0` (the object was gone: a full keep)
    clock.advance(1000);
    await keeper.keep(at('1.0'), ev);
    assert.equal((await catalog.getTag('reg.test', 'team/app', '1.0'))?.value.digest, digest);

    // `latest`: this process saw no sweep of its own, so within the trust window the record stays missing ...
    await keeper.keep(at('latest'), ev);
    assert.equal(await catalog.getTag('reg.test', 'team/app', 'latest'), null);
    // ... and once the window is over, keeping it reads the records back and writes them again
    clock.advance(KEPT_TRUST_MS);
    await keeper.keep(at('latest'), ev);
    assert.equal((await catalog.getTag('reg.test', 'team/app', 'latest'))?.value.digest, digest);
  } finally {
    await other?.close();
    await mine.close();
  }
});
