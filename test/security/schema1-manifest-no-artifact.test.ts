// (Also covered by the Go case-folding rule of go-case-folded-keys-no-artifact.) isSignatureArtifact()
// only refuses INDEX media types; it never checks that the Content-Type the upstream sent (which
// sigil passes on to the client, and which the client parses the body by) is an image manifest.
// An upstream can answer with Docker schema 1 (`application/vnd.docker.distribution.manifest.v1+prettyjws`),
// whose body has no `mediaType` field: a body with `config` + signature-typed `layers` (what sigil
// reads) and `fsLayers`/`history` (what a schema-1 client reads) is served as `skipped` in enforce
// mode. containerd <= 1.7 (CRI pulls with WithSchema1Conversion, ctr fetch too) converts and runs
// schema 1 images; its Accept ends in `*/*`, which sigil forwards upstream as is.
// An in-process fake upstream: docker-registry 2.8 refuses schema 1 pushes by default.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startFaultServer, type FaultServer } from '../helpers/fault-server.js';
import { generateKey } from '../helpers/signer.js';
import { startSigil, type SigilHandle } from '../helpers/sigil.js';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { tempDir } from '../helpers/temp.js';
import { sha256 } from '../helpers/digest.js';

const SCHEMA1 = 'application/vnd.docker.distribution.manifest.v1+prettyjws';
const layerDigest = `sha256:${'1'.repeat(64)}`;
const body = Buffer.from(JSON.stringify({
  schemaVersion: 1,
  name: 'acme/app',
  tag: 'v1',
  architecture: 'amd64',
  // what a schema-1 client runs
  fsLayers: [{ blobSum: layerDigest }],
  history: [{ v1Compatibility: JSON.stringify({ id: 'a'.repeat(64), config: { Cmd: ['/evil'] } }) }],
  // what sigil's artifact detection reads
  config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: `sha256:${'2'.repeat(64)}`, size: 2 },
  layers: [{ mediaType: 'application/vnd.dev.cosign.simplesigning.v1+json', digest: `sha256:${'3'.repeat(64)}`, size: 2 }],
}));
const digest = sha256(body);

let upstream: FaultServer;
let sigil: SigilHandle;

before(async () => {
  upstream = await startFaultServer((req, res) => {
    if (req.url?.startsWith('/v2/acme/app/manifests/')) {
      res.writeHead(200, { 'content-type': SCHEMA1, 'docker-content-digest': digest, 'content-length': String(body.length) });
      res.end(req.method === 'HEAD' ? undefined : body);
      return;
    }
    res.writeHead(req.url === '/v2/' ? 200 : 404, { 'content-type': 'application/json' });
    res.end('{}');
  });
  const dir = await tempDir('sigil-schema1-');
  const keyPath = join(dir, 'k.pub');
  await writeFile(keyPath, generateKey('p256').publicPem);
  sigil = await startSigil(`server:
  listen: 127.0.0.1:0
upstreams:
  - name: up.test
    url: ${upstream.url}
defaultUpstream: up.test
policies:
  - name: enforced
    match: ["**"]
    mode: enforce
    authorities:
      - { key: ${keyPath}, tlog: ignore }
`);
});
after(async () => {
  await sigil?.stop();
  await upstream?.stop();
});

test('a schema-1 manifest carrying decoy signature `layers` is not a signature artifact (enforce denies it)', async () => {
  const res = await fetch(`${sigil.url}/v2/acme/app/manifests/v1`, {
    headers: { accept: 'application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json, */*' },
  });
  const verification = res.headers.get('sigil-verification');
  const type = res.headers.get('content-type');
  await res.arrayBuffer();
  assert.equal(res.status, 403, `served as ${type} with Sigil-Verification: ${String(verification)}`);
});
