import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { request } from 'undici';
import { tempDir } from '../helpers/temp.js';
import { pushLegacySignature, readFixtureSignature } from '../helpers/publish.js';
import { startRegistry, type RegistryHandle } from '../helpers/registry.js';
import { seedManifest } from '../helpers/registry-storage.js';
import { startSigil, type SigilHandle } from '../helpers/sigil.js';
import { writePkiRoot } from '../helpers/verify-fixtures.js';

// The real signatures of test/fixtures/real (origin: test/fixtures/README.md), served by a real
// registry and pulled through sigil with the public-good root that ships inside sigil.
const CI = fileURLToPath(new URL('../../../test/fixtures/real/containers-image/', import.meta.url));
const ACCEPT = 'application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json';

let registry: RegistryHandle;
let sigil: SigilHandle;
const digests: Record<string, string> = {};

async function seed(dir: string, repo: string): Promise<void> {
  const manifest = await readFile(join(CI, dir, 'manifest.json'));
  const digest = await seedManifest(registry, repo, 'v1', manifest);
  await pushLegacySignature({ url: registry.url }, repo, digest, [await readFixtureSignature(join(CI, dir))]);
  digests[repo] = digest;
}

before(async () => {
  registry = await startRegistry();
  await seed('dir-img-cosign-fulcio-rekor-valid', 'fx/keyless');
  await seed('dir-img-cosign-key-rekor-valid', 'fx/key-rekor');
  await seed('dir-img-cosign-valid', 'fx/key-no-rekor');
  await seed('dir-img-cosign-valid', 'fx/key-no-rekor-strict');
  await seed('dir-img-cosign-pki-valid', 'fx/pki');
  await seed('dir-img-cosign-key-rekor-valid', 'fx/wrong-identity');
  const dir = await tempDir('sigil-fx-');
  const pkiRoot = await writePkiRoot(dir);
  sigil = await startSigil(`
server:
  listen: 127.0.0.1:0
upstreams:
  - name: fx.test
    url: ${registry.url}
defaultUpstream: fx.test
trust:
  trustedRoot: [public-good, ${pkiRoot}]
policies:
  - name: redhat-keyless
    match: ["fx.test/fx/keyless"]
    mode: enforce
    authorities:
      - keyless: { issuer: "https://github.com/login/oauth", subject: "mitr@redhat.com" }
  - name: key-with-rekor
    match: ["fx.test/fx/key-rekor"]
    mode: enforce
    authorities:
      - key: ${join(CI, 'cosign2.pub')}
  - name: key-no-rekor
    match: ["fx.test/fx/key-no-rekor"]
    mode: enforce
    authorities:
      - { key: ${join(CI, 'cosign.pub')}, tlog: ignore }
  - name: key-rekor-required
    match: ["fx.test/fx/key-no-rekor-strict"]
    mode: enforce
    authorities:
      - { key: ${join(CI, 'cosign.pub')}, tlog: require }
  - name: private-pki
    match: ["fx.test/fx/pki"]
    mode: enforce
    authorities:
      - keyless: { issuerRegExp: "^$", subject: "qiwan@redhat.com" }
  - name: other-identity
    match: ["fx.test/fx/wrong-identity"]
    mode: enforce
    authorities:
      - keyless: { issuer: "https://github.com/login/oauth", subject: "someone@redhat.com" }
`, { cwd: dir });
});
after(async () => {
  await sigil?.stop();
  await registry?.stop();
});

async function pull(repo: string) {
  const res = await request(`${sigil.url}/v2/${repo}/manifests/v1`, { headers: { accept: ACCEPT } });
  const body = Buffer.from(await res.body.arrayBuffer());
  return { status: res.statusCode, headers: res.headers, body };
}

test('public-good keyless signature (Fulcio cert, SCT, Rekor SET) verifies offline with the shipped root', async () => {
  const r = await pull('fx/keyless');
  assert.equal(r.status, 200, r.body.toString());
  assert.equal(r.headers['docker-content-digest'], digests['fx/keyless']);
  assert.equal(r.headers['sigil-verification'], 'verified');
  assert.equal(r.headers['sigil-signer'], 'mitr@redhat.com (issuer https://github.com/login/oauth)');
});

test('key signature with a public-good Rekor entry verifies with tlog: require', async () => {
  const r = await pull('fx/key-rekor');
  assert.equal(r.status, 200, r.body.toString());
  assert.match(String(r.headers['sigil-signer']), /^sha256:[a-f0-9]{64}$/);
});

test('key signature without Rekor: verified with tlog: ignore, denied with tlog: require', async () => {
  const ok = await pull('fx/key-no-rekor');
  assert.equal(ok.status, 200, ok.body.toString());
  const strict = await pull('fx/key-no-rekor-strict');
  assert.equal(strict.status, 403);
  assert.match(strict.body.toString(), /Rekor|tlog|transparency/i);
});

test('private PKI signature verifies against a custom trusted root', async () => {
  const r = await pull('fx/pki');
  assert.equal(r.status, 200, r.body.toString());
  assert.equal(r.headers['sigil-signer'], 'qiwan@redhat.com');
});

test('a real signature by another identity than the policy names is denied', async () => {
  const r = await pull('fx/wrong-identity');
  assert.equal(r.status, 403);
});
