import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { request } from 'undici';
import { pushBundleReferrer, pushLegacySignature } from '../helpers/publish.js';
import { pushIndex, pushManifest } from '../helpers/push.js';
import { bundleFor, legacyLayer, sigTag, type KeyKind } from '../helpers/signer.js';
import { ISSUER, SUBJECT, pull, startVerifyEnv, type VerifyEnv } from '../helpers/verify-env.js';
import type { SigilHandle } from '../helpers/sigil.js';

let env: VerifyEnv;
let sigil: SigilHandle;

before(async () => {
  env = await startVerifyEnv();
  const k = env.keys;
  sigil = await env.sigil(`
  - name: keys
    match: ["reg.test/keys/**"]
    mode: enforce
    authorities:
      - { key: ${k.p256.path}, tlog: ignore }
      - { key: ${k.p384.path}, tlog: ignore }
      - { key: ${k.rsa.path}, tlog: ignore }
      - { key: ${k.ed25519.path}, tlog: ignore }
      - { key: ${k.ed25519ph.path}, tlog: ignore }
  - name: keyless
    match: ["reg.test/keyless/**"]
    mode: enforce
    authorities:
      - keyless:
          issuer: ${ISSUER}
          subjectRegExp: ^https://github\\.com/acme/.+$
  - name: annotated
    match: ["reg.test/annot/*"]
    mode: enforce
    authorities:
      - { key: ${k.p256.path}, tlog: ignore }
    annotations:
      env: prod
  - name: rollout
    match: ["reg.test/warn/**"]
    mode: warn
    authorities:
      - { key: ${k.p256.path}, tlog: ignore }
  - name: no-check
    match: ["reg.test/off/**"]
    mode: off
`);
});
after(async () => {
  await env?.stop();
});

describe('key authorities', () => {
  for (const kind of ['p256', 'p384', 'rsa', 'ed25519', 'ed25519ph'] as KeyKind[]) {
    test(`an image signed with a ${kind} key is served verified, signer = the key's SPKI sha256`, async () => {
      const img = await env.push(`keys/${kind}`, 'v1');
      await pushLegacySignature(env.target, `keys/${kind}`, img.digest, [legacyLayer(env.keys[kind], img.digest)]);
      const r = await pull(sigil, `keys/${kind}`, 'v1');
      assert.equal(r.status, 200, r.body.toString());
      assert.deepEqual(r.body, img.manifest);
      assert.equal(r.headers['sigil-verification'], 'verified');
      assert.equal(r.headers['sigil-policy'], 'keys');
      assert.equal(r.headers['sigil-signer'], env.keys[kind].keyId);
    });
  }
});

describe('keyless (private Sigstore)', () => {
  test('legacy .sig with certificate, chain and Rekor SET: verified with the identity as signer', async () => {
    const id = env.sigstore.issueIdentity(SUBJECT, ISSUER);
    const img = await env.push('keyless/legacy', 'v1');
    await pushLegacySignature(env.target, 'keyless/legacy', img.digest, [legacyLayer(id, img.digest, { rekor: env.sigstore })]);
    const r = await pull(sigil, 'keyless/legacy', 'v1');
    assert.equal(r.status, 200, r.body.toString());
    assert.equal(r.headers['sigil-verification'], 'verified');
    assert.equal(r.headers['sigil-signer'], `${SUBJECT} (issuer ${ISSUER})`);
  });

  test('a v0.3 Sigstore bundle attached as an OCI 1.1 referrer (cosign v3): verified', async () => {
    const id = env.sigstore.issueIdentity(SUBJECT, ISSUER);
    const img = await env.push('keyless/bundle', 'v1');
    const bundle = bundleFor(id, img.digest, { rekor: env.sigstore });
    await pushBundleReferrer(env.target, 'keyless/bundle', { digest: img.digest, size: img.manifest.length, mediaType: img.mediaType }, bundle);
    const r = await pull(sigil, 'keyless/bundle', img.digest);
    assert.equal(r.status, 200, r.body.toString());
    assert.equal(r.headers['sigil-verification'], 'verified');
    assert.equal(r.headers['sigil-signer'], `${SUBJECT} (issuer ${ISSUER})`);
  });

  test('a bundle whose predicate type the policy does not allow does not count', async () => {
    const id = env.sigstore.issueIdentity(SUBJECT, ISSUER);
    const img = await env.push('keyless/sbom-only', 'v1');
    const bundle = bundleFor(id, img.digest, { rekor: env.sigstore, predicateType: 'https://spdx.dev/Document' });
    await pushBundleReferrer(env.target, 'keyless/sbom-only', { digest: img.digest, size: img.manifest.length, mediaType: img.mediaType }, bundle);
    const r = await pull(sigil, 'keyless/sbom-only', 'v1');
    assert.equal(r.status, 403);
    assert.match(JSON.stringify(r.json().errors[0].detail), /predicate/i);
  });
});

describe('modes', () => {
  test('enforce: an unsigned image is 403 DENIED with no manifest bytes, GET and HEAD alike', async () => {
    const img = await env.push('keys/unsigned', 'v1');
    const g = await pull(sigil, 'keys/unsigned', 'v1');
    assert.equal(g.status, 403);
    const e = g.json().errors[0];
    assert.equal(e.code, 'DENIED');
    assert.equal(e.detail?.outcome, 'unsigned');
    assert.ok(!g.body.includes(img.manifest));
    assert.equal(g.headers['docker-content-digest'], undefined);
    const h = await pull(sigil, 'keys/unsigned', 'v1', 'HEAD');
    assert.equal(h.status, 403);
  });

  test('warn: an unsigned image is served, marked unverified, with a Warning header', async () => {
    const img = await env.push('warn/app', 'v1');
    const r = await pull(sigil, 'warn/app', 'v1');
    assert.equal(r.status, 200);
    assert.deepEqual(r.body, img.manifest);
    assert.equal(r.headers['sigil-verification'], 'unverified');
    assert.equal(r.headers['sigil-policy'], 'rollout');
    assert.match(String(r.headers.warning), /^299 - "sigil: no signature found/);
    const signed = await env.push('warn/signed', 'v1');
    await pushLegacySignature(env.target, 'warn/signed', signed.digest, [legacyLayer(env.keys.p256, signed.digest)]);
    const s = await pull(sigil, 'warn/signed', 'v1');
    assert.equal(s.headers['sigil-verification'], 'verified');
    assert.equal(s.headers.warning, undefined);
  });

  test('off: served with verification skipped', async () => {
    await env.push('off/app', 'v1');
    const r = await pull(sigil, 'off/app', 'v1');
    assert.equal(r.status, 200);
    assert.equal(r.headers['sigil-verification'], 'skipped');
    assert.equal(r.headers['sigil-policy'], 'no-check');
  });

  test('policy annotations must be in the signed payload; extra ones are fine', async () => {
    const prod = await env.push('annot/prod', 'v1');
    await pushLegacySignature(env.target, 'annot/prod', prod.digest, [legacyLayer(env.keys.p256, prod.digest, { annotations: { env: 'prod', team: 'x' } })]);
    assert.equal((await pull(sigil, 'annot/prod', 'v1')).status, 200);
    const dev = await env.push('annot/dev', 'v1');
    await pushLegacySignature(env.target, 'annot/dev', dev.digest, [legacyLayer(env.keys.p256, dev.digest, { annotations: { env: 'dev' } })]);
    const r = await pull(sigil, 'annot/dev', 'v1');
    assert.equal(r.status, 403);
    assert.match(JSON.stringify(r.json().errors[0].detail), /env/);
  });
});

describe('multi-arch', () => {
  test('children of a signed index pass by digest; an unsigned manifest beside it does not', async () => {
    const idx = await pushIndex(env.target, 'keys/multi', 'v1', [
      { os: 'linux', architecture: 'amd64' },
      { os: 'linux', architecture: 'arm64' },
    ]);
    await pushLegacySignature(env.target, 'keys/multi', idx.digest, [legacyLayer(env.keys.p256, idx.digest)]);
    const other = await env.push('keys/multi', 'stray');
    const i = await pull(sigil, 'keys/multi', 'v1');
    assert.equal(i.status, 200, i.body.toString());
    assert.equal(i.headers['sigil-verification'], 'verified');
    for (const child of idx.children) {
      const c = await pull(sigil, 'keys/multi', child.digest);
      assert.equal(c.status, 200, c.body.toString());
      assert.equal(c.headers['sigil-verification'], 'verified');
      assert.equal(c.headers['sigil-signer'], env.keys.p256.keyId);
    }
    assert.equal((await pull(sigil, 'keys/multi', 'stray')).status, 403);
    assert.equal((await pull(sigil, 'keys/multi', other.digest)).status, 403);
  });

  test('an unsigned index and its children are denied', async () => {
    const idx = await pushIndex(env.target, 'keys/multi-unsigned', 'v1', [{ os: 'linux', architecture: 'amd64' }]);
    assert.equal((await pull(sigil, 'keys/multi-unsigned', 'v1')).status, 403);
    assert.equal((await pull(sigil, 'keys/multi-unsigned', idx.children[0].digest)).status, 403);
  });

  test('a child with its own valid signature passes without its index', async () => {
    const idx = await pushIndex(env.target, 'keys/child-signed', 'v1', [{ os: 'linux', architecture: 'amd64' }]);
    const child = idx.children[0];
    await pushLegacySignature(env.target, 'keys/child-signed', child.digest, [legacyLayer(env.keys.rsa, child.digest)]);
    const c = await pull(sigil, 'keys/child-signed', child.digest);
    assert.equal(c.status, 200);
    assert.equal(c.headers['sigil-signer'], env.keys.rsa.keyId);
  });
});

describe('signature artifacts', () => {
  test('.sig manifests and bundle referrers are served with verification skipped, so cosign keeps working', async () => {
    const img = await env.push('keys/artifacts', 'v1');
    await pushLegacySignature(env.target, 'keys/artifacts', img.digest, [legacyLayer(env.keys.p256, img.digest)]);
    const s = await pull(sigil, 'keys/artifacts', sigTag(img.digest));
    assert.equal(s.status, 200);
    assert.equal(s.headers['sigil-verification'], 'skipped');
    const id = env.sigstore.issueIdentity(SUBJECT, ISSUER);
    const ref = await pushBundleReferrer(
      env.target,
      'keys/artifacts',
      { digest: img.digest, size: img.manifest.length, mediaType: img.mediaType },
      bundleFor(id, img.digest, { rekor: env.sigstore }),
    );
    const b = await pull(sigil, 'keys/artifacts', ref);
    assert.equal(b.status, 200);
    assert.equal(b.headers['sigil-verification'], 'skipped');
  });

  test('an image dressed as a signature (tar layers under a .sig tag) is verified like any image, and denied', async () => {
    const victim = await env.push('keys/dressed', 'v1');
    const evil = await env.push('keys/dressed', 'evil');
    await pushManifest(env.target, 'keys/dressed', sigTag(victim.digest), evil.manifest, evil.mediaType);
    const r = await pull(sigil, 'keys/dressed', sigTag(victim.digest));
    assert.equal(r.status, 403);
  });
});

describe('caching and coalescing', () => {
  test('32 concurrent cold pulls of one signed image cost one verification; later pulls hit the cache', async () => {
    const img = await env.push('keys/herd', 'v1');
    await pushLegacySignature(env.target, 'keys/herd', img.digest, [legacyLayer(env.keys.p384, img.digest)]);
    const metric = async (re: RegExp) => {
      const text = await (await request(`${sigil.url}/metrics`)).body.text();
      const m = re.exec(text);
      return m ? Number(m[1]) : 0;
    };
    const sigFetches = () => metric(/sigil_upstream_requests_total\{upstream="reg.test",kind="manifest",status="200"\} (\d+)/);
    const before = await metric(/sigil_verifications_total\{outcome="verified",policy="keys"\} (\d+)/);
    const results = await Promise.all(Array.from({ length: 32 }, () => pull(sigil, 'keys/herd', img.digest)));
    for (const r of results) assert.equal(r.status, 200);
    const after1 = await metric(/sigil_verifications_total\{outcome="verified",policy="keys"\} (\d+)/);
    assert.equal(after1 - before, 1);
    const fetchesBefore = await sigFetches();
    const again = await pull(sigil, 'keys/herd', img.digest);
    assert.equal(again.headers['sigil-verification'], 'verified');
    // The warm pull needed nothing from the upstream: the manifest from the memory cache
    // (by digest), the verdict from the verdict cache — no signature lookup.
    assert.equal((await sigFetches()) - fetchesBefore, 0);
    const decision = sigil.logs.find((l) => l.audit === 'decision' && l.repository === 'keys/herd' && l.cached === true);
    assert.ok(decision, 'an audit event for a cached decision');
    assert.equal(decision.outcome, 'verified');
    assert.equal(decision.signer, env.keys.p384.keyId);
  });
});
