import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { pushLegacySignature } from '../helpers/publish.js';
import { pushBlob, pushManifest } from '../helpers/push.js';
import { cosignPayload, legacyLayer, signPayload, sigTag, ANNOTATION } from '../helpers/signer.js';
import { ISSUER, SUBJECT, pull, startVerifyEnv, type VerifyEnv } from '../helpers/verify-env.js';
import type { SigilHandle } from '../helpers/sigil.js';

// Each test is named for the attack it prevents. Policies are in enforce mode: a failure here
// would mean an image that should have been blocked was served.
let env: VerifyEnv;
let sigil: SigilHandle;

before(async () => {
  env = await startVerifyEnv();
  sigil = await env.sigil(`
  - name: keyed
    match: ["reg.test/k/**"]
    mode: enforce
    authorities:
      - { key: ${env.keys.p256.path}, tlog: ignore }
  - name: keyless
    match: ["reg.test/id/**"]
    mode: enforce
    authorities:
      - keyless:
          issuer: ${ISSUER}
          subjectRegExp: ^https://github\\.com/acme/app/.+$
`);
});
after(async () => {
  await env?.stop();
});

function reasons(r: Awaited<ReturnType<typeof pull>>): string {
  return JSON.stringify(r.json().errors[0].detail);
}

test('unsigned image is denied', async () => {
  await env.push('k/unsigned', 'v1');
  const r = await pull(sigil, 'k/unsigned', 'v1');
  assert.equal(r.status, 403);
  assert.match(r.json().errors[0].message, /no signature found/);
});

test('signature by a key the policy does not trust is denied', async () => {
  const img = await env.push('k/wrong-key', 'v1');
  await pushLegacySignature(env.target, 'k/wrong-key', img.digest, [legacyLayer(env.stranger, img.digest)]);
  const r = await pull(sigil, 'k/wrong-key', 'v1');
  assert.equal(r.status, 403);
  assert.equal(r.json().errors[0].detail?.outcome, 'invalid');
});

test('signature replayed from another image is denied (the payload names the other digest)', async () => {
  const signed = await env.push('k/replay', 'good');
  const evil = await env.push('k/replay', 'evil');
  const layer = legacyLayer(env.keys.p256, signed.digest);
  await pushLegacySignature(env.target, 'k/replay', signed.digest, [layer]);
  await pushLegacySignature(env.target, 'k/replay', evil.digest, [layer]);
  assert.equal((await pull(sigil, 'k/replay', 'good')).status, 200);
  const r = await pull(sigil, 'k/replay', 'evil');
  assert.equal(r.status, 403);
  assert.ok(reasons(r).includes(signed.digest), reasons(r));
});

test('corrupted signature bytes are denied', async () => {
  const img = await env.push('k/corrupt', 'v1');
  await pushLegacySignature(env.target, 'k/corrupt', img.digest, [legacyLayer(env.keys.p256, img.digest, { tamper: 'signature' })]);
  assert.equal((await pull(sigil, 'k/corrupt', 'v1')).status, 403);
});

test('altered payload blob is denied', async () => {
  const img = await env.push('k/altered', 'v1');
  await pushLegacySignature(env.target, 'k/altered', img.digest, [legacyLayer(env.keys.p256, img.digest, { tamper: 'payload' })]);
  assert.equal((await pull(sigil, 'k/altered', 'v1')).status, 403);
});

test('garbage .sig manifest is denied without crashing', async () => {
  const img = await env.push('k/garbage', 'v1');
  const junk = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config: { mediaType: 'application/vnd.oci.empty.v1+json', digest: await pushBlob(env.target, 'k/garbage', Buffer.from('{}')), size: 2 }, layers: [{ mediaType: 'application/vnd.dev.cosign.simplesigning.v1+json', digest: await pushBlob(env.target, 'k/garbage', Buffer.from('not json at all')), size: 15, annotations: { [ANNOTATION.SIGNATURE]: '!!!not-base64' } }] }));
  await pushManifest(env.target, 'k/garbage', sigTag(img.digest), junk, 'application/vnd.oci.image.manifest.v1+json');
  const r = await pull(sigil, 'k/garbage', 'v1');
  assert.equal(r.status, 403);
  assert.equal((await pull(sigil, 'k/garbage', 'v1')).status, 403);
});

test('oversized signature blobs are not read; too many signature layers are cut at the limit', async () => {
  const img = await env.push('k/huge', 'v1');
  const payload = cosignPayload(img.digest, 'x');
  const big = Buffer.concat([payload, Buffer.alloc(2 * 1024 * 1024, 0x20)]);
  const bigDigest = await pushBlob(env.target, 'k/huge', big);
  const cfg = await pushBlob(env.target, 'k/huge', Buffer.from('{}'));
  const manifest = {
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: cfg, size: 2 },
    layers: [{ mediaType: 'application/vnd.dev.cosign.simplesigning.v1+json', digest: bigDigest, size: big.length, annotations: { [ANNOTATION.SIGNATURE]: signPayload(env.keys.p256, big) } }],
  };
  await pushManifest(env.target, 'k/huge', sigTag(img.digest), Buffer.from(JSON.stringify(manifest)), manifest.mediaType);
  const r = await pull(sigil, 'k/huge', 'v1');
  assert.equal(r.status, 403);
  assert.match(reasons(r), /size/);

  const many = await env.push('k/many', 'v1');
  const layers = Array.from({ length: 40 }, () => legacyLayer(env.stranger, many.digest));
  layers.push(legacyLayer(env.keys.p256, many.digest)); // the valid one is past the limit
  await pushLegacySignature(env.target, 'k/many', many.digest, layers);
  const m = await pull(sigil, 'k/many', 'v1');
  assert.equal(m.status, 403);
  assert.match(reasons(m), /only the first 32 considered/);
});

test('same digest in another repository without a signature there is denied', async () => {
  const a = await env.push('k/repo-a', 'v1', { layers: [Buffer.from('same-content-layer')] });
  await pushLegacySignature(env.target, 'k/repo-a', a.digest, [legacyLayer(env.keys.p256, a.digest)]);
  const b = await env.push('k/repo-b', 'v1', { layers: [Buffer.from('same-content-layer')] });
  assert.equal(a.digest, b.digest);
  assert.equal((await pull(sigil, 'k/repo-a', a.digest)).status, 200);
  assert.equal((await pull(sigil, 'k/repo-b', b.digest)).status, 403);
});

test('identity that only an unanchored pattern would match is denied', async () => {
  const img = await env.push('id/app', 'v1');
  const evil = env.sigstore.issueIdentity('https://github.com/acme/app-evil/.github/workflows/x.yml@refs/heads/main', ISSUER);
  const prefix = env.sigstore.issueIdentity(`https://evil.example/?u=${SUBJECT}`, ISSUER);
  await pushLegacySignature(env.target, 'id/app', img.digest, [
    legacyLayer(evil, img.digest, { rekor: env.sigstore }),
    legacyLayer(prefix, img.digest, { rekor: env.sigstore }),
  ]);
  const r = await pull(sigil, 'id/app', 'v1');
  assert.equal(r.status, 403);
  const wrongIssuer = await env.push('id/issuer', 'v1');
  await pushLegacySignature(env.target, 'id/issuer', wrongIssuer.digest, [
    legacyLayer(env.sigstore.issueIdentity(SUBJECT, `${ISSUER}.evil.example`), wrongIssuer.digest, { rekor: env.sigstore }),
  ]);
  assert.equal((await pull(sigil, 'id/issuer', 'v1')).status, 403);
});

test('certificate from an untrusted CA is denied', async () => {
  const img = await env.push('id/untrusted', 'v1');
  const id = env.sigstore.issueIdentity(SUBJECT, ISSUER, { untrusted: true });
  await pushLegacySignature(env.target, 'id/untrusted', img.digest, [legacyLayer(id, img.digest, { rekor: env.sigstore })]);
  assert.equal((await pull(sigil, 'id/untrusted', 'v1')).status, 403);
});

test('certificate that had expired when the signature was logged is denied', async () => {
  const img = await env.push('id/expired', 'v1');
  const past = new Date(Date.now() - 3600_000);
  const id = env.sigstore.issueIdentity(SUBJECT, ISSUER, { notBefore: past, notAfter: new Date(past.getTime() + 600_000) });
  await pushLegacySignature(env.target, 'id/expired', img.digest, [legacyLayer(id, img.digest, { rekor: env.sigstore })]);
  assert.equal((await pull(sigil, 'id/expired', 'v1')).status, 403);
});

test('keyless signature without a transparency log entry is denied', async () => {
  const img = await env.push('id/no-tlog', 'v1');
  await pushLegacySignature(env.target, 'id/no-tlog', img.digest, [legacyLayer(env.sigstore.issueIdentity(SUBJECT, ISSUER), img.digest)]);
  assert.equal((await pull(sigil, 'id/no-tlog', 'v1')).status, 403);
});

test('a Rekor entry of another signature does not count as this one\'s (tlog: require)', async () => {
  const strict = await env.sigil(`
  - name: keyed-tlog
    match: ["reg.test/**"]
    mode: enforce
    authorities:
      - { key: ${env.keys.p256.path}, tlog: require }
`);
  const img = await env.push('k/rekor-swap', 'v1');
  const logged = legacyLayer(env.keys.p256, img.digest, { rekor: env.sigstore, annotations: { n: '1' } });
  const unlogged = legacyLayer(env.keys.p256, img.digest, { annotations: { n: '2' } });
  // A valid signature by the trusted key, carrying the (valid) SET of a different signature.
  const swapped = { payload: unlogged.payload, annotations: { ...unlogged.annotations, [ANNOTATION.BUNDLE]: logged.annotations[ANNOTATION.BUNDLE] } };
  await pushLegacySignature(env.target, 'k/rekor-swap', img.digest, [swapped]);
  const r = await pull(strict, 'k/rekor-swap', 'v1');
  assert.equal(r.status, 403);
  // The honest, logged signature verifies under the same policy.
  const ok = await env.push('k/rekor-ok', 'v1');
  await pushLegacySignature(env.target, 'k/rekor-ok', ok.digest, [legacyLayer(env.keys.p256, ok.digest, { rekor: env.sigstore })]);
  assert.equal((await pull(strict, 'k/rekor-ok', 'v1')).status, 200);
});
