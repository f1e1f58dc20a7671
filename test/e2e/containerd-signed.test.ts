import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startContainerd, type ContainerdHandle } from '../helpers/containerd.js';
import { pushBundleReferrer, pushLegacySignature } from '../helpers/publish.js';
import { makeLayer, pushIndex } from '../helpers/push.js';
import { bundleFor, legacyLayer } from '../helpers/signer.js';
import { ISSUER, SUBJECT, startVerifyEnv, type VerifyEnv } from '../helpers/verify-env.js';
import type { SigilHandle } from '../helpers/sigil.js';

// A real containerd pulling through sigil in enforce mode: signed images pull and unpack,
// an unsigned one is refused. sigil is the hosts.toml `server`, the only host (README).
const REF_HOST = 'reg.test';
let env: VerifyEnv;
let ctd: ContainerdHandle;
let sigil: SigilHandle;

before(async () => {
  [env, ctd] = await Promise.all([startVerifyEnv(), startContainerd()]);
  sigil = await env.sigil(`
  - name: prod
    match: ["reg.test/prod/**"]
    mode: enforce
    authorities:
      - { key: ${env.keys.p256.path}, tlog: ignore }
      - keyless: { issuer: "${ISSUER}", subjectRegExp: "^https://github\\\\.com/acme/app/.+$" }
`);
  await ctd.writeHosts(REF_HOST, `server = "${sigil.url}"\n\n[host."${sigil.url}"]\n  capabilities = ["pull", "resolve"]\n`);
});
after(async () => {
  await ctd?.stop();
  await env?.stop();
});

test('containerd pulls and unpacks a signed multi-arch image through sigil in enforce mode', { timeout: 60_000 }, async () => {
  const idx = await pushIndex(env.target, 'prod/app', 'v1', [
    { os: 'linux', architecture: 'amd64' },
    { os: 'linux', architecture: 'arm64' },
  ]);
  await pushLegacySignature(env.target, 'prod/app', idx.digest, [legacyLayer(env.keys.p256, idx.digest)]);
  const r = await ctd.pull(`${REF_HOST}/prod/app:v1`, { platform: 'linux/amd64' });
  assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
  const files = await ctd.unpackedFiles(`${REF_HOST}/prod/app:v1`);
  assert.ok(files.some((f) => f.startsWith('sigil-test/')), files.join('\n'));
  // The children passed because the signed index lists them.
  const decisions = sigil.logs.filter((l) => l.audit === 'decision' && l.repository === 'prod/app');
  assert.ok(decisions.some((d) => d.basis === 'index' && d.verification === 'verified'), JSON.stringify(decisions));
});

test('containerd pulls an image signed keylessly with a Sigstore bundle referrer (cosign v3 style)', { timeout: 60_000 }, async () => {
  const id = env.sigstore.issueIdentity(SUBJECT, ISSUER);
  const img = await env.push('prod/keyless', 'v1', { layers: [makeLayer(Buffer.from('signed keylessly\n'), 'etc/keyless.txt').blob] });
  await pushBundleReferrer(env.target, 'prod/keyless', { digest: img.digest, size: img.manifest.length, mediaType: img.mediaType }, bundleFor(id, img.digest, { rekor: env.sigstore }));
  const r = await ctd.pull(`${REF_HOST}/prod/keyless:v1`);
  assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
  assert.equal((await ctd.readUnpackedFile(`${REF_HOST}/prod/keyless:v1`, 'etc/keyless.txt')).toString(), 'signed keylessly\n');
});

test('containerd is refused an unsigned image (403) with sigil\'s reason in its error, and stores none of it', { timeout: 60_000 }, async () => {
  const img = await env.push('prod/unsigned', 'v1');
  const r = await ctd.pull(`${REF_HOST}/prod/unsigned:v1`);
  assert.notEqual(r.code, 0, r.stdout);
  // ctr prints the status line as sent (the reason phrase), nothing of the JSON body
  assert.match(r.stderr, /failed with status code \[manifests v1\]: 403 sigil: no signature found \(policy prod\)/);
  const content = (await ctd.ctr(['content', 'ls', '-q'])).stdout.split('\n');
  assert.ok(!content.includes(img.digest) && !content.includes(img.layers[0].digest));
  assert.ok(!(await ctd.images()).includes(`${REF_HOST}/prod/unsigned:v1`));
});

test('a denied manifest is not served through /blobs/<digest> either', { timeout: 60_000 }, async () => {
  const { request } = await import('undici');
  const img = await env.push('prod/sneaky', 'v1');
  const m = await request(`${sigil.url}/v2/prod/sneaky/manifests/v1`);
  await m.body.dump();
  assert.equal(m.statusCode, 403);
  const b = await request(`${sigil.url}/v2/prod/sneaky/blobs/${img.digest}`);
  const body = (await b.body.json()) as { errors: Array<{ code: string }> };
  assert.equal(b.statusCode, 403);
  assert.equal(body.errors[0].code, 'DENIED');
  // Real blobs of other, allowed content are unaffected.
  const layer = await request(`${sigil.url}/v2/prod/sneaky/blobs/${img.layers[0].digest}`);
  await layer.body.dump();
  assert.equal(layer.statusCode, 200);
});
