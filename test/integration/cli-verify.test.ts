import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { runSigil } from '../helpers/cli.js';
import { tempDir } from '../helpers/temp.js';
import { pushLegacySignature, readFixtureSignature } from '../helpers/publish.js';
import { pushImage } from '../helpers/push.js';
import { startRegistry, type RegistryHandle } from '../helpers/registry.js';
import { seedManifest } from '../helpers/registry-storage.js';

const CI = fileURLToPath(new URL('../../../test/fixtures/real/containers-image/', import.meta.url));
let registry: RegistryHandle;
let cfg: string;
let keylessDigest: string;

before(async () => {
  registry = await startRegistry();
  const dir = 'dir-img-cosign-fulcio-rekor-valid';
  keylessDigest = await seedManifest(registry, 'fx/keyless', 'v1', await readFile(join(CI, dir, 'manifest.json')));
  await pushLegacySignature({ url: registry.url }, 'fx/keyless', keylessDigest, [await readFixtureSignature(join(CI, dir))]);
  await pushImage({ url: registry.url }, 'fx/unsigned', 'v1');
  const tmp = await tempDir('sigil-cli-verify-');
  cfg = join(tmp, 'sigil.yaml');
  await writeFile(
    cfg,
    `upstreams:\n  - name: fx.test\n    url: ${registry.url}\ndefaultUpstream: fx.test\npolicies:\n  - name: redhat\n    match: ["fx.test/fx/**"]\n    mode: enforce\n    authorities:\n      - keyless: { issuer: "https://github.com/login/oauth", subject: "mitr@redhat.com" }\n`,
  );
});
after(async () => {
  await registry?.stop();
});

test('sigil verify: a signed image exits 0 and names its signer', async () => {
  const r = await runSigil(['verify', 'fx.test/fx/keyless:v1', '--config', cfg]);
  assert.equal(r.code, 0, r.stderr + r.stdout);
  assert.match(r.stdout, /^verified: fx\.test\/fx\/keyless@sha256:/);
  assert.match(r.stdout, /signer: mitr@redhat\.com \(issuer https:\/\/github\.com\/login\/oauth\)/);
  const byDigest = await runSigil(['verify', `fx/keyless@${keylessDigest}`, '--config', cfg, '--json']);
  assert.equal(byDigest.code, 0, byDigest.stderr);
  const j = JSON.parse(byDigest.stdout) as { verified: boolean; digest: string; policy: string; signer: string };
  assert.equal(j.verified, true);
  assert.equal(j.digest, keylessDigest);
  assert.equal(j.policy, 'redhat');
});

test('sigil verify: an unsigned image exits 1 and says why', async () => {
  const r = await runSigil(['verify', 'fx.test/fx/unsigned:v1', '--config', cfg]);
  assert.equal(r.code, 1);
  assert.match(r.stdout, /NOT verified/);
  assert.match(r.stdout, /no signature found/);
  const j = await runSigil(['verify', 'fx.test/fx/unsigned:v1', '--config', cfg, '--json']);
  assert.equal(j.code, 1);
  assert.equal((JSON.parse(j.stdout) as { outcome: string }).outcome, 'unsigned');
  const missing = await runSigil(['verify', 'fx.test/fx/unsigned:nope', '--config', cfg]);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /MANIFEST_UNKNOWN/);
});

test('sigil verify: usage and config errors exit 2; unconfigured registries are refused', async () => {
  assert.equal((await runSigil(['verify', '--config', cfg])).code, 2);
  const host = await runSigil(['verify', 'evil.example.com/x/y:1', '--config', cfg]);
  assert.equal(host.code, 2);
  assert.match(host.stderr, /not a configured upstream/);
  assert.equal((await runSigil(['verify', 'fx.test/fx/keyless@sha256:xyz', '--config', cfg])).code, 2);
  assert.equal((await runSigil(['verify', 'fx.test/x:1', '--config', join(cfg, 'nope')])).code, 2);
});
