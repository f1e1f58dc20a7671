import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { request } from 'undici';
import { fakeClock } from '../helpers/clock.js';
import { startForwarder, type Forwarder } from '../helpers/forwarder.js';
import { tempDir } from '../helpers/temp.js';
import { pushLegacySignature } from '../helpers/publish.js';
import { legacyLayer } from '../helpers/signer.js';
import { startVerifyEnv, type VerifyEnv } from '../helpers/verify-env.js';

// Prevents: the keeper's in-memory memo of what it kept (registry/kept.ts) outliving what it stands for. Once a manifest was
// kept, the same process never stores it (nor its tag record, nor its verdict) again for that
// tag, even after eviction removed the object (here: another sigil sharing the directory, which
// the README allows; the process's own LRU eviction does the same). Stale-if-error then has
// nothing to serve for an image that is pulled every day. A tag that moves back (v1: A → B → A)
// likewise keeps its record at B.
const ACCEPT = 'application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json';

let env: VerifyEnv;
let fwd: Forwarder;
before(async () => {
  env = await startVerifyEnv();
  fwd = await startForwarder(env.registry.url);
});
after(async () => {
  await fwd?.stop();
  await env?.stop();
});

async function get(url: string) {
  const res = await request(url, { headers: { accept: ACCEPT } });
  const body = Buffer.from(await res.body.arrayBuffer());
  return { status: res.statusCode, headers: res.headers, body };
}

test('an evicted manifest is stored again when it is pulled again, so stale-if-error can serve it', async () => {
  const img = await env.push('prod/daily', 'v1');
  await pushLegacySignature(env.target, 'prod/daily', img.digest, [legacyLayer(env.keys.p256, img.digest)]);
  const storeDir = await tempDir('sigil-kept-');
  const clock = fakeClock();
  const sigil = await env.sigil(
    `  - name: prod\n    match: ["reg.test/prod/**"]\n    mode: enforce\n    authorities:\n      - { key: ${env.keys.p256.path}, tlog: ignore }`,
    { upstreamUrl: fwd.url, now: clock.now, extra: `cache:\n  store:\n    dir: ${storeDir}\n    maxBytes: 1073741824\n  tags:\n    ttl: 1s` },
  );
  assert.equal((await get(`${sigil.url}/v2/prod/daily/manifests/v1`)).status, 200);
  // Evicted (by another sigil process sharing the store).
  await rm(join(storeDir, 'blobs', 'sha256', img.digest.slice(7)));
  clock.advance(1200); // past the tag TTL (and KEPT_STAT_MS: a kept object is looked for on disk again)
  const again = await get(`${sigil.url}/v2/prod/daily/manifests/v1`);
  assert.equal(again.status, 200);
  assert.equal(again.headers['sigil-verification'], 'verified');
  clock.advance(1200); // past the tag TTL again: the next lookup asks the upstream, which is down
  fwd.setDown(true);
  try {
    const stale = await get(`${sigil.url}/v2/prod/daily/manifests/v1`);
    assert.equal(stale.status, 200, `pulled (and verified) a moment ago, yet: ${stale.body.toString()}`);
    assert.equal(stale.headers['sigil-stale'], 'true');
  } finally {
    fwd.setDown(false);
  }
});
