// in warn mode, an indeterminate outcome's cause goes into the `Warning`
// header (ManifestGate.#decision → v2-routes manifest()). The cause may contain an upstream's
// error message (error-map.ts cleanMessage strips control characters but keeps anything above
// U+00FF, and itself appends "…" when it truncates). Node refuses such header values
// (ERR_INVALID_CHAR), so the pull fails with 500 instead of being served with a warning.
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { startFaultServer, type FaultServer } from '../helpers/fault-server.js';
import { tempDir } from '../helpers/temp.js';
import { generateKey } from '../helpers/signer.js';
import { startSigil, type SigilHandle } from '../helpers/sigil.js';
import { sha256 } from '../helpers/digest.js';

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const body = Buffer.from(JSON.stringify({
  schemaVersion: 2,
  mediaType: OCI_MANIFEST,
  config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: `sha256:${'2'.repeat(64)}`, size: 2 },
  layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: `sha256:${'3'.repeat(64)}`, size: 2 }],
}));
const digest = sha256(body);

let upstream: FaultServer;
let sigil: SigilHandle;

before(async () => {
  upstream = await startFaultServer((req, res) => {
    if (req.url?.startsWith('/v2/acme/app/manifests/v1')) {
      res.writeHead(200, { 'content-type': OCI_MANIFEST, 'docker-content-digest': digest, 'content-length': String(body.length) });
      res.end(req.method === 'HEAD' ? undefined : body);
      return;
    }
    if (req.url?.startsWith('/v2/acme/app/referrers/')) {
      res.writeHead(400, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ errors: [{ code: 'UNSUPPORTED', message: 'référents indisponibles – réessayez' }] }));
      return;
    }
    res.writeHead(req.url === '/v2/' ? 200 : 404, { 'content-type': 'application/json' });
    res.end('{}');
  });
  const dir = await tempDir('sigil-warning-');
  const keyPath = join(dir, 'k.pub');
  await writeFile(keyPath, generateKey('p256').publicPem);
  sigil = await startSigil(`server:
  listen: 127.0.0.1:0
upstreams:
  - name: up.test
    url: ${upstream.url}
defaultUpstream: up.test
policies:
  - name: warned
    match: ["**"]
    mode: warn
    authorities:
      - { key: ${keyPath}, tlog: ignore }
`);
});
after(async () => {
  await sigil?.stop();
  await upstream?.stop();
});

test('warn mode: an upstream message with a non-Latin-1 character still serves the image with Sigil-Verification: unverified', async () => {
  const res = await fetch(`${sigil.url}/v2/acme/app/manifests/v1`, { headers: { accept: OCI_MANIFEST } });
  const text = await res.text();
  assert.equal(res.status, 200, text);
  assert.equal(res.headers.get('sigil-verification'), 'unverified');
  assert.match(res.headers.get('warning') ?? '', /^299 - /);
});
