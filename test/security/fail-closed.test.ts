import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { request } from 'undici';
import { startFaultServer, type FaultServer } from '../helpers/fault-server.js';
import { tempDir } from '../helpers/temp.js';
import { generateKey } from '../helpers/signer.js';
import { startSigil, type SigilHandle } from '../helpers/sigil.js';
import { sha256 } from '../helpers/digest.js';

// Prevents: serving an image in enforce mode when its signatures could not be looked up
// (upstream trouble while verifying is "indeterminate", never "verified").
const OCI = 'application/vnd.oci.image.manifest.v1+json';
const MANIFEST = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI, config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: `sha256:${'2'.repeat(64)}`, size: 2 }, layers: [] }));
const DIGEST = sha256(MANIFEST);

const cleanup: Array<() => Promise<void>> = [];
after(async () => {
  for (const c of cleanup) await c();
});

async function setup(mode: 'enforce' | 'warn'): Promise<{ up: FaultServer; sigil: SigilHandle }> {
  const up = await startFaultServer((req, res) => {
    const url = req.url ?? '';
    if (url.endsWith('/manifests/v1') || url.endsWith(`/manifests/${DIGEST}`)) {
      res.writeHead(200, { 'content-type': OCI, 'docker-content-digest': DIGEST });
      res.end(MANIFEST);
      return;
    }
    // Signature lookups (referrers, fallback tag, .sig tag) all fail with 503.
    res.writeHead(503, { 'content-type': 'application/json' });
    res.end('{"errors":[{"code":"UNAVAILABLE","message":"down"}]}');
  });
  const dir = await tempDir('sigil-fc-');
  const key = join(dir, 'k.pub');
  await writeFile(key, generateKey('p256').publicPem);
  const sigil = await startSigil(
    `server:\n  listen: 127.0.0.1:0\nupstreams:\n  - name: up.test\n    url: ${up.url}\npolicies:\n  - name: p\n    match: ["**"]\n    mode: ${mode}\n    authorities:\n      - { key: ${key}, tlog: ignore }\n`,
  );
  cleanup.push(() => sigil.stop(), () => up.stop());
  return { up, sigil };
}

test('enforce: signatures that cannot be fetched (upstream 503) mean 403 indeterminate, not served', async () => {
  const { sigil } = await setup('enforce');
  const res = await request(`${sigil.url}/v2/up.test/a/b/manifests/v1`);
  const body = (await res.body.json()) as { errors: Array<{ code: string; detail: { outcome: string; cause: string } }> };
  assert.equal(res.statusCode, 403);
  assert.equal(body.errors[0].code, 'DENIED');
  assert.equal(body.errors[0].detail.outcome, 'indeterminate');
  assert.match(body.errors[0].detail.cause, /503|UNAVAILABLE|BAD_RESPONSE/);
});

test('warn: the same outage serves the image marked unverified', async () => {
  const { sigil } = await setup('warn');
  const res = await request(`${sigil.url}/v2/up.test/a/b/manifests/v1`);
  const body = Buffer.from(await res.body.arrayBuffer());
  assert.equal(res.statusCode, 200);
  assert.deepEqual(body, MANIFEST);
  assert.equal(res.headers['sigil-verification'], 'unverified');
  assert.match(String(res.headers.warning), /could not verify/);
});
