import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { request } from 'undici';
import { fakeClock } from '../helpers/clock.js';
import { startForwarder, type Forwarder } from '../helpers/forwarder.js';
import { tempDir } from '../helpers/temp.js';
import { pushLegacySignature } from '../helpers/publish.js';
import { pushIndex, type PushedImage } from '../helpers/push.js';
import { legacyLayer } from '../helpers/signer.js';
import { startVerifyEnv, type VerifyEnv } from '../helpers/verify-env.js';
import type { SigilHandle } from '../helpers/sigil.js';
import { sha256 } from '../helpers/digest.js';

const ACCEPT = 'application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json';

let env: VerifyEnv;
let fwd: Forwarder;
let storeDir: string;
const policies = (keyPath: string) => `
  - name: prod
    match: ["reg.test/prod/**"]
    mode: enforce
    authorities:
      - { key: ${keyPath}, tlog: ignore }
  - name: rest
    match: ["**"]
    mode: warn
    authorities:
      - { key: ${keyPath}, tlog: ignore }`;

function storeConfig(tagTtl = '1s'): string {
  return `cache:\n  store:\n    dir: ${storeDir}\n    maxBytes: 1073741824\n  tags:\n    ttl: ${tagTtl}`;
}

async function get(s: SigilHandle, path: string, headers: Record<string, string> = {}) {
  const res = await request(`${s.url}${path}`, { headers: { accept: ACCEPT, ...headers } });
  const body = Buffer.from(await res.body.arrayBuffer());
  return { status: res.statusCode, headers: res.headers, body };
}

/** Pulls an image the way a client does: manifest by tag, then config and layers by digest. */
async function pullImage(s: SigilHandle, repo: string, tag: string, img: PushedImage) {
  const m = await get(s, `/v2/${repo}/manifests/${tag}`);
  assert.equal(m.status, 200, m.body.toString());
  for (const d of [img.config, ...img.layers]) {
    const b = await get(s, `/v2/${repo}/blobs/${d.digest}`);
    assert.equal(b.status, 200);
    assert.equal(sha256(b.body), d.digest);
  }
  return m;
}

before(async () => {
  env = await startVerifyEnv();
  fwd = await startForwarder(env.registry.url);
  storeDir = await tempDir('sigil-store-');
});
after(async () => {
  await fwd?.stop();
  await env?.stop();
});

describe('pull-through cache', () => {
  test('32 concurrent cold pulls of one signed 12-object image: each object fetched from upstream once', async () => {
    const img = await env.push('prod/herd', 'v1', { layers: 10, layerSize: 64 * 1024 });
    await pushLegacySignature(env.target, 'prod/herd', img.digest, [legacyLayer(env.keys.p256, img.digest)]);
    const sigil = await env.sigil(policies(env.keys.p256.path), { upstreamUrl: fwd.url, extra: storeConfig('5m') });
    const before = fwd.requests.length;
    await Promise.all(Array.from({ length: 32 }, () => pullImage(sigil, 'prod/herd', 'v1', img)));
    const seen = fwd.requests.slice(before).map((r) => `${r.method} ${r.url.split('?')[0]}`);
    const counts = new Map<string, number>();
    for (const r of seen) counts.set(r, (counts.get(r) ?? 0) + 1);
    for (const d of [img.config, ...img.layers]) assert.equal(counts.get(`GET /v2/prod/herd/blobs/${d.digest}`), 1, d.digest);
    assert.equal(counts.get(`HEAD /v2/prod/herd/manifests/v1`), 1);
    assert.equal(counts.get(`GET /v2/prod/herd/manifests/${img.digest}`), 1);
    const sigLookups = seen.filter((r) => r.includes('sha256-') || r.includes('/referrers/'));
    assert.ok(sigLookups.length <= 4, sigLookups.join('\n')); // referrers API, fallback tag, .sig tag (HEAD + GET)
    // 12 objects (manifest, config, 10 layers) plus the signature lookups, against 32 × 12 = 384 requests.
    assert.ok(seen.length <= 12 + 1 + 5, `${seen.length} upstream requests:\n${seen.join('\n')}`);
    // Later pulls come from memory and disk: nothing reaches the upstream.
    const again = fwd.requests.length;
    await pullImage(sigil, 'prod/herd', 'v1', img);
    assert.equal(fwd.requests.length - again, 0, fwd.requests.slice(again).map((r) => `${r.method} ${r.url}`).join('\n'));
  });

  test('blobs are served from the store, Range included; HEAD gives the stored length', async () => {
    const img = await env.push('open/ranged', 'v1', { layers: 1, layerSize: 10_000 });
    const sigil = await env.sigil(policies(env.keys.p256.path), { upstreamUrl: fwd.url, extra: storeConfig() });
    await pullImage(sigil, 'open/ranged', 'v1', img);
    await new Promise((r) => setTimeout(r, 200)); // the store commits after the last byte
    const layer = img.layers[0];
    const before = fwd.requests.length;
    const part = await get(sigil, `/v2/open/ranged/blobs/${layer.digest}`, { range: 'bytes=100-199' });
    assert.equal(part.status, 206);
    assert.equal(part.body.length, 100);
    assert.equal(part.headers['content-range'], `bytes 100-199/${layer.size}`);
    const head = await request(`${sigil.url}/v2/open/ranged/blobs/${layer.digest}`, { method: 'HEAD' });
    await head.body.dump();
    assert.equal(Number(head.headers['content-length']), layer.size);
    assert.equal(fwd.requests.length - before, 0);
  });

  test('enforce: an unverified image is not stored; warn: it is', async () => {
    const unsigned = await env.push('prod/unsigned', 'v1');
    const open = await env.push('open/unsigned', 'v1');
    const sigil = await env.sigil(policies(env.keys.p256.path), { upstreamUrl: fwd.url, extra: storeConfig() });
    assert.equal((await get(sigil, '/v2/prod/unsigned/manifests/v1')).status, 403);
    for (const d of unsigned.layers) await (await request(`${sigil.url}/v2/prod/unsigned/blobs/${d.digest}`)).body.dump();
    await pullImage(sigil, 'open/unsigned', 'v1', open);
    await new Promise((r) => setTimeout(r, 200));
    const objects = await listObjects();
    assert.ok(!objects.includes(unsigned.digest.slice(7)), 'the denied manifest is not stored');
    assert.ok(!objects.includes(unsigned.layers[0].digest.slice(7)), "the denied image's layer is not stored");
    assert.ok(objects.includes(open.digest.slice(7)) && objects.includes(open.layers[0].digest.slice(7)));
  });
});

describe('when the upstream fails', () => {
  test('stale-if-error: stored, verified images still pull (marked Sigil-Stale), unknown ones fail fast', async () => {
    const idx = await pushIndex(env.target, 'prod/stale', 'v1', [{ os: 'linux', architecture: 'amd64' }]);
    await pushLegacySignature(env.target, 'prod/stale', idx.digest, [legacyLayer(env.keys.p256, idx.digest)]);
    const child = idx.children[0];
    const clock = fakeClock();
    const sigil = await env.sigil(policies(env.keys.p256.path), { upstreamUrl: fwd.url, extra: storeConfig(), now: clock.now });
    assert.equal((await get(sigil, '/v2/prod/stale/manifests/v1')).status, 200);
    await pullImage(sigil, 'prod/stale', child.digest, child);
    clock.advance(1200); // past the tag TTL: the next lookup asks the upstream
    fwd.setDown(true);
    try {
      const m = await get(sigil, '/v2/prod/stale/manifests/v1');
      assert.equal(m.status, 200, m.body.toString());
      assert.equal(m.headers['sigil-stale'], 'true');
      assert.equal(m.headers['sigil-verification'], 'verified');
      assert.equal(m.headers['docker-content-digest'], idx.digest);
      await pullImage(sigil, 'prod/stale', child.digest, child);
      const tags = await get(sigil, '/v2/prod/stale/tags/list');
      assert.equal(tags.status, 200);
      assert.equal(tags.headers['sigil-stale'], 'true');
      assert.ok((JSON.parse(tags.body.toString()) as { tags: string[] }).tags.includes('v1'));
      const t0 = Date.now();
      const unknown = await get(sigil, '/v2/prod/never-pulled/manifests/v1');
      assert.ok(unknown.status >= 502 && unknown.status <= 504, String(unknown.status));
      assert.ok(Date.now() - t0 < 5000);
      const metrics = (await get(sigil, '/metrics')).body.toString();
      assert.match(metrics, /sigil_stale_responses_total\{upstream="reg.test"\} [1-9]/);
    } finally {
      fwd.setDown(false);
    }
  });

  test('a restarted sigil re-verifies from the stored signatures with the upstream down; --offline contacts nothing', async () => {
    const img = await env.push('prod/restart', 'v1', { layers: 2 });
    await pushLegacySignature(env.target, 'prod/restart', img.digest, [legacyLayer(env.keys.p256, img.digest)]);
    const first = await env.sigil(policies(env.keys.p256.path), { upstreamUrl: fwd.url, extra: storeConfig() });
    await pullImage(first, 'prod/restart', 'v1', img);
    await new Promise((r) => setTimeout(r, 200));
    await first.stop();
    fwd.setDown(true);
    try {
      const second = await env.sigil(policies(env.keys.p256.path), { upstreamUrl: fwd.url, extra: storeConfig() });
      const m = await pullImage(second, 'prod/restart', 'v1', img);
      assert.equal(m.headers['sigil-verification'], 'verified');
      assert.equal(m.headers['sigil-signer'], env.keys.p256.keyId);
      const verified = second.logs.find((l) => l.audit === 'decision' && l.repository === 'prod/restart');
      assert.equal(verified?.cached, false, 'a fresh verdict, from the stored signature');
    } finally {
      fwd.setDown(false);
    }
    const offlineRequests = fwd.requests.length;
    const offline = await env.sigil(policies(env.keys.p256.path), { upstreamUrl: fwd.url, extra: storeConfig(), offline: true });
    const m = await pullImage(offline, 'prod/restart', 'v1', img);
    assert.equal(m.headers['sigil-verification'], 'verified');
    assert.equal((await get(offline, '/v2/prod/never-pulled/manifests/v1')).status, 404);
    assert.equal(fwd.requests.length, offlineRequests, 'offline: not one request upstream');
  });
});

async function listObjects(): Promise<string[]> {
  const root = join(storeDir, 'blobs', 'sha256');
  try {
    return await readdir(root, { recursive: true });
  } catch {
    return [];
  }
}
