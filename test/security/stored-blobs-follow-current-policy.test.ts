// Under enforce, a blob is served from the content store only while a manifest that passes the
// CURRENT policy and trust names it in that repository. A blob stored under an earlier policy
// (warn), an earlier key or an earlier trust root is not served from the store once its manifest
// no longer passes: online it comes from the upstream as it would without a store (here the
// upstream is down, so nothing is served), offline it is refused.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { request } from 'undici';
import { startForwarder, type Forwarder } from '../helpers/forwarder.js';
import { tempDir } from '../helpers/temp.js';
import { pushLegacySignature } from '../helpers/publish.js';
import type { PushedImage } from '../helpers/push.js';
import { generateKey, legacyLayer } from '../helpers/signer.js';
import type { SigilHandle } from '../helpers/sigil.js';
import { ISSUER, SUBJECT, startVerifyEnv, type VerifyEnv } from '../helpers/verify-env.js';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Digest } from '../../src/oci/digest.js';
import { Catalog, ContentStore } from '../../src/store/index.js';
import { sha256 } from '../helpers/digest.js';

/** Up to 5 s for the store to commit what was pulled. */
const STORE_POLLS = 100;

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

const policy = (mode: 'warn' | 'enforce', authority: string) => `
  - name: app
    match: ["**"]
    mode: ${mode}
    authorities:
      - ${authority}`;
const keyAuthority = (path: string) => `{ key: ${path}, tlog: ignore }`;
const keylessAuthority = `{ keyless: { issuer: "${ISSUER}", subject: "${SUBJECT}" } }`;
const store = (dir: string) => `cache:\n  store:\n    dir: ${dir}\n    maxBytes: 1073741824`;

async function get(s: SigilHandle, path: string) {
  const res = await request(`${s.url}${path}`, { headers: { accept: ACCEPT } });
  return { status: res.statusCode, headers: res.headers, body: Buffer.from(await res.body.arrayBuffer()) };
}

/** Pulls the manifest and every blob through `s` (all must be served), waits until the store holds them, stops `s`. */
async function fill(s: SigilHandle, repo: string, img: PushedImage, dir: string): Promise<void> {
  const m = await get(s, `/v2/${repo}/manifests/v1`);
  assert.equal(m.status, 200, m.body.toString());
  for (const d of [img.config, ...img.layers]) {
    const b = await get(s, `/v2/${repo}/blobs/${d.digest}`);
    assert.equal(b.status, 200);
    assert.equal(sha256(b.body), d.digest);
  }
  // Blobs are committed (and recorded) just after their last byte went out.
  const store = await ContentStore.open({ dir, maxBytes: Number.MAX_SAFE_INTEGER });
  try {
    const catalog = new Catalog(store);
    for (let i = 0; i < STORE_POLLS; i++) {
      const held = await Promise.all([img.config, ...img.layers].map((d) => catalog.hasBlob('reg.test', repo, d.digest as Digest)));
      if (held.every(Boolean)) break;
      await new Promise((r) => setTimeout(r, 50));
    }
  } finally {
    await store.close();
  }
  await s.stop();
}

/** With the upstream down: the manifest is denied and no blob is served, online; offline both are refused. */
async function assertNothingServed(repo: string, img: PushedImage, policiesYaml: string, dir: string, trustedRoots?: string[]): Promise<void> {
  fwd.setDown(true);
  try {
    const online = await env.sigil(policiesYaml, { upstreamUrl: fwd.url, extra: store(dir), trustedRoots });
    assert.equal((await get(online, `/v2/${repo}/manifests/v1`)).status, 403);
    for (const d of [img.config, ...img.layers]) {
      const b = await get(online, `/v2/${repo}/blobs/${d.digest}`);
      assert.notEqual(b.status, 200, `online: blob ${d.digest} served from the store`);
    }
    const offline = await env.sigil(policiesYaml, { upstreamUrl: fwd.url, extra: store(dir), offline: true, trustedRoots });
    assert.equal((await get(offline, `/v2/${repo}/manifests/v1`)).status, 403);
    for (const d of [img.config, ...img.layers]) {
      const b = await get(offline, `/v2/${repo}/blobs/${d.digest}`);
      assert.equal(b.status, 403, `offline: blob ${d.digest} served from the store`);
    }
  } finally {
    fwd.setDown(false);
  }
}

describe('under enforce, stored blobs are served only while a manifest that passes names them', () => {
  test('blobs stored under warn are not served once the policy enforces and the image is unsigned', async () => {
    const dir = await tempDir('sigil-store-');
    const img = await env.push('follow/warn', 'v1');
    await fill(await env.sigil(policy('warn', keyAuthority(env.keys.p256.path)), { upstreamUrl: fwd.url, extra: store(dir) }), 'follow/warn', img, dir);
    await assertNothingServed('follow/warn', img, policy('enforce', keyAuthority(env.keys.p256.path)), dir);
  });

  test('blobs stored under one key are not served once that key is replaced', async () => {
    const dir = await tempDir('sigil-store-');
    const img = await env.push('follow/key', 'v1');
    await pushLegacySignature(env.target, 'follow/key', img.digest, [legacyLayer(env.keys.p256, img.digest)]);
    await fill(await env.sigil(policy('enforce', keyAuthority(env.keys.p256.path)), { upstreamUrl: fwd.url, extra: store(dir) }), 'follow/key', img, dir);
    const other = join(env.dir, 'replacement.pub');
    await writeFile(other, generateKey('p256').publicPem);
    await assertNothingServed('follow/key', img, policy('enforce', keyAuthority(other)), dir);
  });

  test('blobs stored under one trust root are not served once it is no longer trusted', async () => {
    const dir = await tempDir('sigil-store-');
    const img = await env.push('follow/trust', 'v1');
    const id = env.sigstore.issueIdentity(SUBJECT, ISSUER);
    await pushLegacySignature(env.target, 'follow/trust', img.digest, [legacyLayer(id, img.digest, { rekor: env.sigstore })]);
    await fill(await env.sigil(policy('enforce', keylessAuthority), { upstreamUrl: fwd.url, extra: store(dir) }), 'follow/trust', img, dir);
    // the same config, but only the public-good root is trusted now (the private Sigstore is not)
    await assertNothingServed('follow/trust', img, policy('enforce', keylessAuthority), dir, ['public-good']);
  });

  test('with the policy and trust unchanged, a restarted sigil serves stored blobs, offline even before any manifest request', async () => {
    const dir = await tempDir('sigil-store-');
    const img = await env.push('follow/same', 'v1');
    await pushLegacySignature(env.target, 'follow/same', img.digest, [legacyLayer(env.keys.p256, img.digest)]);
    const p = policy('enforce', keyAuthority(env.keys.p256.path));
    await fill(await env.sigil(p, { upstreamUrl: fwd.url, extra: store(dir) }), 'follow/same', img, dir);
    const offline = await env.sigil(p, { upstreamUrl: fwd.url, extra: store(dir), offline: true });
    // blobs first: the store's record of which manifest names them is judged now
    for (const d of [img.config, ...img.layers]) {
      const b = await get(offline, `/v2/follow/same/blobs/${d.digest}`);
      assert.equal(b.status, 200, b.body.toString());
      assert.equal(sha256(b.body), d.digest);
    }
    assert.equal((await get(offline, '/v2/follow/same/manifests/v1')).headers['sigil-verification'], 'verified');
  });
});
