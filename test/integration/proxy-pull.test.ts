import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { request } from 'undici';
import { startRegistry, type RegistryHandle } from '../helpers/registry.js';
import { pushBlob, pushImage, pushIndex, pushManifest, type PushedImage, type PushedIndex } from '../helpers/push.js';
import { startSigil, simpleConfig, type SigilHandle } from '../helpers/sigil.js';
import { sha256 } from '../helpers/digest.js';

const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';

async function get(url: string, headers: Record<string, string> = {}, method: 'GET' | 'HEAD' = 'GET') {
  const res = await request(url, { method, headers });
  const body = Buffer.from(await res.body.arrayBuffer());
  return { status: res.statusCode, headers: res.headers, body };
}

describe('pulling through sigil from a real distribution registry', () => {
  let registry: RegistryHandle;
  let sigil: SigilHandle;
  let image: PushedImage;
  let index: PushedIndex;
  let many: PushedImage;

  before(async () => {
    registry = await startRegistry();
    const t = { url: registry.url };
    image = await pushImage(t, 'team/app', 'v1', { layers: 2, layerSize: 4096 });
    index = await pushIndex(t, 'team/multi', 'latest', [
      { os: 'linux', architecture: 'amd64' },
      { os: 'linux', architecture: 'arm64', variant: 'v8' },
    ]);
    many = await pushImage(t, 'team/many', 'big', { layers: 12, layerSize: 2048 });
    for (const tag of ['a1', 'b2', 'c3', 'd4', 'e5']) await pushImage(t, 'team/tags', tag);
    sigil = await startSigil(
      simpleConfig([{ name: 'registry.test:5000', url: registry.url }], '\ndefaultUpstream: "registry.test:5000"\n'),
    );
  });
  after(async () => {
    await sigil?.stop();
    await registry?.stop();
  });

  test('GET /v2/ answers 200 with the API version header', async () => {
    const r = await get(`${sigil.url}/v2/`);
    assert.equal(r.status, 200);
    assert.equal(r.headers['docker-distribution-api-version'], 'registry/2.0');
  });

  test('manifest by tag via ns=, via prefix and via the default upstream: exact bytes, digest computed here', async () => {
    for (const url of [
      `${sigil.url}/v2/team/app/manifests/v1?ns=registry.test%3A5000`,
      `${sigil.url}/v2/registry.test:5000/team/app/manifests/v1`,
      `${sigil.url}/v2/team/app/manifests/v1`,
    ]) {
      const r = await get(url, { accept: OCI_MANIFEST });
      assert.equal(r.status, 200, url);
      assert.deepEqual(r.body, image.manifest);
      assert.equal(r.headers['docker-content-digest'], image.digest);
      assert.equal(r.headers['docker-content-digest'], sha256(r.body));
      assert.equal(r.headers['content-type'], OCI_MANIFEST);
      assert.equal(r.headers['sigil-verification'], 'skipped');
    }
  });

  test('manifest by digest, and HEAD answers exactly what GET answers, without a body', async () => {
    const url = `${sigil.url}/v2/team/app/manifests/${image.digest}`;
    const g = await get(url);
    const h = await get(url, {}, 'HEAD');
    assert.equal(g.status, 200);
    assert.equal(h.status, 200);
    assert.equal(h.body.length, 0);
    for (const k of ['docker-content-digest', 'content-type', 'content-length', 'sigil-verification']) {
      assert.equal(h.headers[k], g.headers[k], k);
    }
    assert.equal(Number(g.headers['content-length']), image.manifest.length);
    const ht = await get(`${sigil.url}/v2/team/app/manifests/v1`, {}, 'HEAD');
    assert.equal(ht.headers['docker-content-digest'], image.digest);
  });

  test('a multi-arch index and its children pass through; the client Accept decides what is asked for', async () => {
    const r = await get(`${sigil.url}/v2/team/multi/manifests/latest`, { accept: `${OCI_INDEX}, ${OCI_MANIFEST}` });
    assert.equal(r.status, 200);
    assert.equal(r.headers['content-type'], OCI_INDEX);
    assert.equal(r.headers['docker-content-digest'], index.digest);
    const parsed = JSON.parse(r.body.toString()) as { manifests: Array<{ digest: string }> };
    assert.deepEqual(
      parsed.manifests.map((m) => m.digest),
      index.children.map((c) => c.digest),
    );
    for (const child of index.children) {
      const c = await get(`${sigil.url}/v2/team/multi/manifests/${child.digest}`);
      assert.equal(c.status, 200);
      assert.deepEqual(c.body, child.manifest);
    }
  });

  test('unknown manifests and repositories answer 404 with the distribution error code', async () => {
    const r = await get(`${sigil.url}/v2/team/app/manifests/nope`);
    assert.equal(r.status, 404);
    const body = JSON.parse(r.body.toString()) as { errors: Array<{ code: string }> };
    assert.equal(body.errors[0].code, 'MANIFEST_UNKNOWN');
    const u = await get(`${sigil.url}/v2/team/none/manifests/${image.digest}`);
    assert.equal(u.status, 404);
  });

  test('blobs: GET streams exact bytes, HEAD gives the length, Range gives 206', async () => {
    for (const layer of many.layers) {
      const r = await get(`${sigil.url}/v2/team/many/blobs/${layer.digest}`);
      assert.equal(r.status, 200);
      assert.equal(sha256(r.body), layer.digest);
      assert.equal(r.body.length, layer.size);
    }
    const layer = image.layers[0];
    const h = await get(`${sigil.url}/v2/team/app/blobs/${layer.digest}`, {}, 'HEAD');
    assert.equal(h.status, 200);
    assert.equal(Number(h.headers['content-length']), layer.size);
    assert.equal(h.body.length, 0);
    const full = await get(`${sigil.url}/v2/team/app/blobs/${layer.digest}`);
    const part = await get(`${sigil.url}/v2/team/app/blobs/${layer.digest}`, { range: 'bytes=10-99' });
    assert.equal(part.status, 206);
    assert.deepEqual(part.body, full.body.subarray(10, 100));
    assert.match(String(part.headers['content-range']), /^bytes 10-99\/\d+$/);
    const missing = await get(`${sigil.url}/v2/team/app/blobs/sha256:${'0'.repeat(64)}`);
    assert.equal(missing.status, 404);
    assert.equal((JSON.parse(missing.body.toString()) as { errors: Array<{ code: string }> }).errors[0].code, 'BLOB_UNKNOWN');
  });

  test('tags/list: full list, then n/last pages with Link, applied by sigil since distribution 2.8 ignores them', async () => {
    const all = await get(`${sigil.url}/v2/team/tags/tags/list`);
    assert.equal(all.status, 200);
    assert.deepEqual((JSON.parse(all.body.toString()) as { tags: string[] }).tags, ['a1', 'b2', 'c3', 'd4', 'e5']);
    const p1 = await get(`${sigil.url}/v2/team/tags/tags/list?n=2`);
    assert.deepEqual(JSON.parse(p1.body.toString()), { name: 'team/tags', tags: ['a1', 'b2'] });
    assert.equal(p1.headers.link, '</v2/team/tags/tags/list?n=2&last=b2>; rel="next"');
    const p2 = await get(`${sigil.url}/v2/team/tags/tags/list?n=2&last=b2`);
    assert.deepEqual((JSON.parse(p2.body.toString()) as { tags: string[] }).tags, ['c3', 'd4']);
    const p3 = await get(`${sigil.url}/v2/team/tags/tags/list?n=2&last=d4`);
    assert.deepEqual((JSON.parse(p3.body.toString()) as { tags: string[] }).tags, ['e5']);
    assert.equal(p3.headers.link, undefined);
    const bad = await get(`${sigil.url}/v2/team/tags/tags/list?n=-1`);
    assert.equal(bad.status, 400);
  });

  test('referrers: built from the fallback tag (distribution 2.8 has no referrers API), filtered by artifactType', async () => {
    const t = { url: registry.url };
    const emptyConfig = Buffer.from('{}');
    const emptyDigest = await pushBlob(t, 'team/app', emptyConfig);
    const mk = async (artifactType: string, tag: string) => {
      const m = Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: OCI_MANIFEST,
          artifactType,
          config: { mediaType: 'application/vnd.oci.empty.v1+json', digest: emptyDigest, size: 2 },
          layers: [{ mediaType: 'application/vnd.oci.empty.v1+json', digest: emptyDigest, size: 2 }],
          subject: { mediaType: OCI_MANIFEST, digest: image.digest, size: image.manifest.length },
        }),
      );
      const d = await pushManifest(t, 'team/app', tag, m, OCI_MANIFEST);
      return { mediaType: OCI_MANIFEST, artifactType, digest: d, size: m.length };
    };
    const sig = await mk('application/vnd.dev.sigstore.bundle.v0.3+json', 'ref-sig');
    const sbom = await mk('application/spdx+json', 'ref-sbom');
    const fallback = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: [sig, sbom] }));
    await pushManifest(t, 'team/app', image.digest.replace(':', '-'), fallback, OCI_INDEX);

    const all = await get(`${sigil.url}/v2/team/app/referrers/${image.digest}`);
    assert.equal(all.status, 200);
    assert.equal(all.headers['content-type'], OCI_INDEX);
    const allIdx = JSON.parse(all.body.toString()) as { manifests: Array<{ digest: string }> };
    assert.deepEqual(allIdx.manifests.map((m) => m.digest).sort(), [sig.digest, sbom.digest].sort());
    assert.equal(all.headers['oci-filters-applied'], undefined);

    const only = await get(
      `${sigil.url}/v2/team/app/referrers/${image.digest}?artifactType=${encodeURIComponent(sig.artifactType)}`,
    );
    assert.equal(only.headers['oci-filters-applied'], 'artifactType');
    assert.deepEqual((JSON.parse(only.body.toString()) as { manifests: Array<{ digest: string }> }).manifests.map((m) => m.digest), [sig.digest]);

    const none = await get(`${sigil.url}/v2/team/many/referrers/${many.digest}`);
    assert.equal(none.status, 200);
    assert.deepEqual(JSON.parse(none.body.toString()), { schemaVersion: 2, mediaType: OCI_INDEX, manifests: [] });
  });

  test('push and delete answer 405 UNSUPPORTED', async () => {
    for (const [method, path] of [
      ['POST', '/v2/team/app/blobs/uploads/'],
      ['PUT', '/v2/team/app/manifests/v2'],
      ['DELETE', `/v2/team/app/manifests/${image.digest}`],
      ['PATCH', '/v2/team/app/blobs/uploads/abc'],
      ['DELETE', `/v2/team/app/blobs/${image.layers[0].digest}`],
    ] as const) {
      const res = await request(`${sigil.url}${path}`, { method, body: method === 'DELETE' ? undefined : 'x' });
      const body = (await res.body.json()) as { errors: Array<{ code: string }> };
      assert.equal(res.statusCode, 405, `${method} ${path}`);
      assert.equal(body.errors[0].code, 'UNSUPPORTED');
    }
    // The image is still there: nothing reached the upstream.
    const r = await get(`${registry.url}/v2/team/app/manifests/${image.digest}`, { accept: OCI_MANIFEST });
    assert.equal(r.status, 200);
  });

  test('metrics count requests by route and status, upstream requests and streamed bytes', async () => {
    const r = await get(`${sigil.url}/metrics`);
    assert.equal(r.status, 200);
    const text = r.body.toString();
    assert.match(text, /sigil_http_requests_total\{route="manifest",method="GET",status="200"\} \d+/);
    assert.match(text, /sigil_http_requests_total\{route="push",method="POST",status="405"\} [1-9]/);
    assert.match(text, /sigil_upstream_requests_total\{upstream="registry.test:5000",kind="manifest",status="200"\} [1-9]/);
    assert.match(text, /sigil_bytes_streamed_total\{[^}]*\} [1-9]/);
    assert.match(text, /sigil_http_request_duration_seconds_bucket/);
  });

  test('health and readiness', async () => {
    assert.equal((await get(`${sigil.url}/healthz`)).status, 200);
    const ready = await get(`${sigil.url}/readyz`);
    assert.equal(ready.status, 200);
    assert.equal((JSON.parse(ready.body.toString()) as { status: string }).status, 'ready');
  });
});
