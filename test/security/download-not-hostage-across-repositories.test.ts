import assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import { after, before, test } from 'node:test';
import { request } from 'undici';
import { startFaultServer, type FaultServer } from '../helpers/fault-server.js';
import { tempDir } from '../helpers/temp.js';
import { pushLegacySignature } from '../helpers/publish.js';
import { legacyLayer } from '../helpers/signer.js';
import { startVerifyEnv, type VerifyEnv } from '../helpers/verify-env.js';
import { sha256 } from '../helpers/digest.js';

// Prevents: one repository's upstream answer standing in for another's. Blob downloads into the
// store are coalesced by digest alone, across repositories and upstreams: a pull of a verified
// image's layer in an enforce repository follows (and waits on, and fails with) a download of the
// same digest that an attacker started through a repository they control, whose upstream drips.
// Base-image layers are shared by many repositories, so their digests are public.
const ACCEPT = 'application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json';

let env: VerifyEnv;
let front: FaultServer;
const cleanup: Array<() => Promise<void>> = [];

before(async () => {
  env = await startVerifyEnv();
  const target = new URL(env.registry.url);
  // The upstream: the real registry, except that repository evil/* drips its blobs (1 byte/s).
  front = await startFaultServer((req, res) => {
    const url = req.url ?? '';
    if (url.startsWith('/v2/evil/') && url.includes('/blobs/') && req.method === 'GET') {
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      const drip = setInterval(() => res.write(Buffer.from([0])), 1000);
      res.once('close', () => clearInterval(drip));
      return;
    }
    const fwd = httpRequest(new URL(url, target), { method: req.method, headers: { ...req.headers, host: target.host } }, (up) => {
      res.writeHead(up.statusCode ?? 502, up.headers);
      up.pipe(res);
    });
    fwd.on('error', () => res.destroy());
    req.pipe(fwd);
  });
});
after(async () => {
  for (const c of cleanup.reverse()) await c();
  await front?.stop();
  await env?.stop();
});

test("a verified image's layer is not held hostage by another repository's download of the same digest", async () => {
  const img = await env.push('prod/app', 'v1', { layers: 1, layerSize: 256 * 1024 });
  await pushLegacySignature(env.target, 'prod/app', img.digest, [legacyLayer(env.keys.p256, img.digest)]);
  const storeDir = await tempDir('sigil-coalesce-');
  const sigil = await env.sigil(
    `  - name: prod\n    match: ["reg.test/prod/**"]\n    mode: enforce\n    authorities:\n      - { key: ${env.keys.p256.path}, tlog: ignore }`,
    { upstreamUrl: front.url, extra: `cache:\n  store:\n    dir: ${storeDir}\n    maxBytes: 1073741824` },
  );
  const m = await request(`${sigil.url}/v2/prod/app/manifests/v1`, { headers: { accept: ACCEPT } });
  await m.body.dump();
  assert.equal(m.statusCode, 200);
  assert.equal(m.headers['sigil-verification'], 'verified');

  const layer = img.layers[0].digest;
  // The attacker asks for the same digest through their own repository first.
  const ac = new AbortController();
  cleanup.push(async () => ac.abort());
  const evil = await request(`${sigil.url}/v2/evil/x/blobs/${layer}`, { signal: ac.signal });
  evil.body.on('data', () => {}).on('error', () => {});
  await new Promise((r) => setTimeout(r, 300));

  const t0 = Date.now();
  let outcome: string;
  try {
    const res = await request(`${sigil.url}/v2/prod/app/blobs/${layer}`, { signal: AbortSignal.timeout(5000) });
    const body = Buffer.from(await res.body.arrayBuffer());
    outcome = `${res.statusCode} ${sha256(body) === layer ? 'ok' : `wrong bytes (${body.length})`}`;
  } catch (err) {
    outcome = `failed after ${Date.now() - t0} ms: ${(err as Error).message}`;
  }
  assert.equal(outcome, '200 ok', "the verified image's layer, from its own (healthy) repository");
});
