import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { pushImage, type PushedImage } from '../helpers/push.js';
import { rawRequest } from '../helpers/raw-http.js';
import { startRegistry, type RegistryHandle } from '../helpers/registry.js';
import { startSigil, simpleConfig, type SigilHandle } from '../helpers/sigil.js';

// The router decodes a /v2/ path once; a `%` still there afterwards is part of the name, tag or
// digest the client wrote, and none of those may contain one. Decoding again would give one
// image many names (`sec%252fapp` = `sec%2fapp` = `sec/app`).
let registry: RegistryHandle;
let sigil: SigilHandle;
let image: PushedImage;

before(async () => {
  registry = await startRegistry();
  image = await pushImage({ url: registry.url }, 'sec/app', 'v1');
  sigil = await startSigil(simpleConfig([{ name: 'r.test', url: registry.url }], '\ndefaultUpstream: r.test\n'));
});
after(async () => {
  await sigil?.stop();
  await registry?.stop();
});

const MANIFEST_ACCEPT = { accept: 'application/vnd.oci.image.manifest.v1+json' };

test('a path spelled plainly, or with its characters escaped once, names the image', async () => {
  for (const target of ['/v2/sec/app/manifests/v1', '/v2/sec%2fapp/manifests/v1', '/v2/sec%2Fapp%2Fmanifests%2Fv1', `/v2/sec/app/blobs/sha256%3A${image.layers[0].digest.slice(7)}`]) {
    const res = await rawRequest(sigil.port, 'GET', target, MANIFEST_ACCEPT);
    assert.equal(res.status, 200, `${target}: ${res.body.slice(0, 200)}`);
  }
  const plain = await rawRequest(sigil.port, 'GET', '/v2/sec/app/manifests/v1', MANIFEST_ACCEPT);
  assert.equal(plain.headers['docker-content-digest'], image.digest);
});

test('a path escaped twice is not decoded again: it names no image and is refused', async () => {
  const cases: Array<[string, number, string]> = [
    ['/v2/sec%252fapp/manifests/v1', 400, 'NAME_INVALID'],
    ['/v2/sec%252Fapp/manifests/v1', 400, 'NAME_INVALID'],
    ['/v2/sec%252fapp%252fmanifests%252fv1', 404, 'NAME_UNKNOWN'],
    ['/v2/sec/app/manifests/v%2531', 400, 'TAG_INVALID'],
    [`/v2/sec/app/blobs/sha256%253A${image.layers[0].digest.slice(7)}`, 400, 'DIGEST_INVALID'],
    [`/v2/sec/app/referrers/sha256%253A${image.digest.slice(7)}`, 400, 'DIGEST_INVALID'],
  ];
  for (const [target, status, code] of cases) {
    const res = await rawRequest(sigil.port, 'GET', target, MANIFEST_ACCEPT);
    assert.equal(res.status, status, `${target}: ${res.body.slice(0, 200)}`);
    assert.match(res.body, new RegExp(`"code":"${code}"`), target);
    assert.equal(res.headers['docker-content-digest'], undefined, `${target} must not answer with the image`);
  }
});
