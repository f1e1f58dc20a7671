import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { request } from 'undici';
import { startForwarder, type Forwarder } from '../helpers/forwarder.js';
import { tempDir } from '../helpers/temp.js';
import { getBlob, pushBlob, type PushedImage } from '../helpers/push.js';
import { startVerifyEnv, type VerifyEnv } from '../helpers/verify-env.js';
import type { SigilHandle } from '../helpers/sigil.js';
import { sha256 } from '../helpers/digest.js';

// Prevents: a blob stored for repository A and requested through repository B. The write-through
// layer's download (registry/download.ts) finds the digest committed, gets a follower stream (store.beginWrite → streamOf) and
// destroys it at once; streamOf then opens the file anyway and pipes it into the destroyed
// PassThrough, where it stays paused with its file descriptor open. B is never recorded
// (noteBlob), so every request repeats the upstream GET and leaks one more descriptor: any
// client can run sigil out of descriptors (EMFILE) with one cached digest.
const ACCEPT = 'application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json';
const openFds = () => readdirSync('/proc/self/fd').length;
const ROUNDS = 30;

let env: VerifyEnv;
let fwd: Forwarder;
let sigil: SigilHandle;
let img: PushedImage;

before(async () => {
  env = await startVerifyEnv();
  fwd = await startForwarder(env.registry.url);
  img = await env.push('open/a', 'v1', { layers: 1, layerSize: 200 * 1024 });
  const layer = img.layers[0].digest;
  await pushBlob(env.target, 'open/b', (await getBlob(env.target, 'open/a', layer)).body);
  const storeDir = await tempDir('sigil-fd-');
  sigil = await env.sigil(
    `  - name: rest\n    match: ["**"]\n    mode: warn\n    authorities:\n      - { key: ${env.keys.p256.path}, tlog: ignore }`,
    { upstreamUrl: fwd.url, extra: `cache:\n  store:\n    dir: ${storeDir}\n    maxBytes: 1073741824` },
  );
  const m = await request(`${sigil.url}/v2/open/a/manifests/v1`, { headers: { accept: ACCEPT } });
  await m.body.dump();
  const b = await request(`${sigil.url}/v2/open/a/blobs/${layer}`);
  assert.equal(sha256(Buffer.from(await b.body.arrayBuffer())), layer);
  await new Promise((r) => setTimeout(r, 300)); // committed and recorded for open/a
});
after(async () => {
  await fwd?.stop();
  await env?.stop();
});

async function getFromB(): Promise<void> {
  const layer = img.layers[0].digest;
  const res = await request(`${sigil.url}/v2/open/b/blobs/${layer}`);
  const body = Buffer.from(await res.body.arrayBuffer());
  assert.equal(res.statusCode, 200);
  assert.equal(sha256(body), layer);
}

test('requesting a stored digest through another repository does not leak file descriptors', async () => {
  await getFromB();
  await new Promise((r) => setTimeout(r, 300));
  const before = openFds();
  for (let i = 0; i < ROUNDS; i++) await getFromB();
  await new Promise((r) => setTimeout(r, 500));
  const leaked = openFds() - before;
  assert.ok(leaked < 5, `${leaked} file descriptors more after ${ROUNDS} blob requests`);
});

test('after the first request through repository B, its blob is served from disk', async () => {
  const layer = img.layers[0].digest;
  const before = fwd.count('GET', `/v2/open/b/blobs/${layer}`);
  for (let i = 0; i < 5; i++) await getFromB();
  const upstream = fwd.count('GET', `/v2/open/b/blobs/${layer}`) - before;
  assert.ok(upstream <= 1, `${upstream} upstream GETs for 5 requests of a blob already in the store`);
});
