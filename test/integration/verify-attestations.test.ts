// Attestation policies through a real distribution registry: images signed and attested the way
// cosign does it (`.att` DSSE envelopes, Sigstore bundle referrers), pulled through sigil, and
// checked with `sigil verify`. A policy's attestation requirement is met only by an attestation of
// the served digest, signed by one of its authorities, whose CEL condition holds.
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { PREDICATE, attestationBundle, attestationLayer, slsaProvenance, statement } from '../helpers/attester.js';
import { runSigil } from '../helpers/cli.js';
import { tempDir } from '../helpers/temp.js';
import { pushBundleReferrer, pushLegacyAttestation, pushLegacySignature } from '../helpers/publish.js';
import type { PushedImage } from '../helpers/push.js';
import type { SigilHandle } from '../helpers/sigil.js';
import { legacyLayer, type Signer } from '../helpers/signer.js';
import { ISSUER, SUBJECT, UPSTREAM, pull, startVerifyEnv, type VerifyEnv } from '../helpers/verify-env.js';

const OUR_REPO = 'https://github.com/acme/app';
const CONDITION = `predicate.runDetails.builder.id == "${SUBJECT}" && predicate.buildDefinition.externalParameters.workflow.repository == "${OUR_REPO}"`;
const provenance = (digest: string, builderId = SUBJECT, repository = OUR_REPO): Buffer => statement(digest, PREDICATE.SLSA_V1, slsaProvenance({ builderId, repository }));

let env: VerifyEnv;
let sigil: SigilHandle;
let policies: string;

before(async () => {
  env = await startVerifyEnv();
  const k = env.keys;
  policies = `
  - name: provenance
    match: ["${UPSTREAM}/prov/**"]
    mode: enforce
    authorities:
      - { key: ${k.p256.path}, tlog: ignore }
    attestations:
      - name: built-by-our-ci
        predicateType: ${PREDICATE.SLSA_V1}
        condition: >-
          ${CONDITION}
  - name: sbom
    match: ["${UPSTREAM}/sbom/**"]
    mode: enforce
    authorities:
      - { key: ${k.p256.path}, tlog: ignore }
    attestations:
      - name: sbom-attached
        predicateType: [${PREDICATE.SPDX}, ${PREDICATE.CYCLONEDX}]
  - name: keyless
    match: ["${UPSTREAM}/keyless/**"]
    mode: enforce
    authorities:
      - keyless:
          issuer: ${ISSUER}
          subjectRegExp: ^https://github\\.com/acme/.+$
    attestations:
      - name: built-by-our-ci
        predicateType: ${PREDICATE.SLSA_V1}
        condition: predicate.buildDefinition.externalParameters.workflow.repository == "${OUR_REPO}"
  - name: rollout
    match: ["${UPSTREAM}/warn/**"]
    mode: warn
    authorities:
      - { key: ${k.p256.path}, tlog: ignore }
    attestations:
      - name: built-by-our-ci
        predicateType: ${PREDICATE.SLSA_V1}
        condition: >-
          ${CONDITION}
`;
  sigil = await env.sigil(policies);
});
after(async () => {
  await env?.stop();
});

/** Pushes an image signed with the policies' key (legacy `.sig`). */
async function signedImage(repo: string, signer: Signer = env.keys.p256): Promise<PushedImage> {
  const img = await env.push(repo, 'v1');
  const rekor = 'certPem' in signer ? { rekor: env.sigstore } : {};
  await pushLegacySignature(env.target, repo, img.digest, [legacyLayer(signer, img.digest, rekor)]);
  return img;
}

interface Denial {
  code: string;
  message: string;
  detail?: { outcome?: string; attestations?: Array<{ name: string; result: string; reason?: string; condition: string; predicateTypes: string[] }> };
}
const denial = (r: Awaited<ReturnType<typeof pull>>): Denial => r.json<{ errors: Denial[] }>().errors[0];

describe('SLSA provenance: built by our workflow from our repository', () => {
  test('a `.att` attestation (cosign attest) that meets the condition: served verified', async () => {
    const img = await signedImage('prov/att');
    await pushLegacyAttestation(env.target, 'prov/att', img.digest, [attestationLayer(env.keys.p256, provenance(img.digest))]);
    const r = await pull(sigil, 'prov/att', 'v1');
    assert.equal(r.status, 200, r.body.toString());
    assert.deepEqual(r.body, img.manifest);
    assert.equal(r.headers['sigil-verification'], 'verified');
    assert.equal(r.headers['sigil-signer'], env.keys.p256.keyId);
  });

  test('a Sigstore bundle attestation among the referrers (cosign v3): served verified', async () => {
    const img = await signedImage('prov/bundle');
    const stmt = statement(img.digest, PREDICATE.SLSA_V1, slsaProvenance({ builderId: SUBJECT, repository: OUR_REPO }), { version: 'v1' });
    await pushBundleReferrer(env.target, 'prov/bundle', { digest: img.digest, size: img.manifest.length, mediaType: img.mediaType }, attestationBundle(env.keys.p256, img.digest, stmt));
    const r = await pull(sigil, 'prov/bundle', 'v1');
    assert.equal(r.status, 200, r.body.toString());
    assert.equal(r.headers['sigil-verification'], 'verified');
  });

  test('a failing condition: 403, the reason names the requirement, its predicate type and the condition', async () => {
    const img = await signedImage('prov/other-builder');
    await pushLegacyAttestation(env.target, 'prov/other-builder', img.digest, [attestationLayer(env.keys.p256, provenance(img.digest, 'https://github.com/evil/x/.github/workflows/y.yml@refs/heads/main'))]);
    const r = await pull(sigil, 'prov/other-builder', 'v1');
    assert.equal(r.status, 403);
    const e = denial(r);
    assert.equal(e.code, 'DENIED');
    assert.ok(e.message.includes(`attestation built-by-our-ci (${PREDICATE.SLSA_V1}) not met: ${img.digest.replace(':', '-')}.att layer 0: condition ${CONDITION} is false`), e.message);
    assert.equal(e.detail?.outcome, 'invalid');
    assert.deepEqual(e.detail?.attestations?.map((a) => [a.name, a.result, a.condition, a.predicateTypes]), [['built-by-our-ci', 'not met', CONDITION, [PREDICATE.SLSA_V1]]]);
    assert.ok(!r.body.includes(img.manifest));
  });

  test('no attestation: 403, none of the predicate type for the digest', async () => {
    const img = await signedImage('prov/missing');
    const r = await pull(sigil, 'prov/missing', 'v1');
    assert.equal(r.status, 403);
    assert.match(denial(r).message, new RegExp(`not met: no attestation of predicate type ${PREDICATE.SLSA_V1.replace(/[./]/g, '\\$&')} for ${img.digest}`));
  });

  test('an attestation made for another image, copied to this one\'s `.att` tag: 403', async () => {
    const theirs = await env.push('prov/theirs', 'v1');
    const img = await signedImage('prov/copied');
    await pushLegacyAttestation(env.target, 'prov/copied', img.digest, [attestationLayer(env.keys.p256, provenance(theirs.digest))]);
    const r = await pull(sigil, 'prov/copied', 'v1');
    assert.equal(r.status, 403);
    assert.ok(denial(r).message.includes(`statement names ${theirs.digest} not the served ${img.digest}`), denial(r).message);
  });

  test('an attestation signed by a key the policy does not trust: 403', async () => {
    const img = await signedImage('prov/stranger');
    await pushLegacyAttestation(env.target, 'prov/stranger', img.digest, [attestationLayer(env.stranger, provenance(img.digest))]);
    const r = await pull(sigil, 'prov/stranger', 'v1');
    assert.equal(r.status, 403);
    assert.match(denial(r).message, /not signed by an authority of the policy: signature does not verify with key sha256:/);
  });

  test('a malformed envelope: 403 with why it is not usable, no crash; a good one beside it still counts', async () => {
    const img = await signedImage('prov/malformed');
    const good = attestationLayer(env.keys.p256, provenance(img.digest));
    const broken = { ...good, envelope: Buffer.from('{"payloadType":"application/vnd.in-toto+json","payload":') };
    await pushLegacyAttestation(env.target, 'prov/malformed', img.digest, [broken]);
    const r = await pull(sigil, 'prov/malformed', 'v1');
    assert.equal(r.status, 403);
    assert.match(denial(r).message, /not usable: sha256-[0-9a-f]+\.att layer 0: the DSSE envelope is not JSON/);
    const img2 = await signedImage('prov/malformed-and-good');
    await pushLegacyAttestation(env.target, 'prov/malformed-and-good', img2.digest, [broken, attestationLayer(env.keys.p256, provenance(img2.digest))]);
    const r2 = await pull(sigil, 'prov/malformed-and-good', 'v1');
    assert.equal(r2.status, 200, r2.body.toString());
  });

  test('attested but not signed: 403 for the signature; the attestation alone is not a signature', async () => {
    const img = await env.push('prov/unsigned', 'v1');
    await pushLegacyAttestation(env.target, 'prov/unsigned', img.digest, [attestationLayer(env.keys.p256, provenance(img.digest))]);
    const r = await pull(sigil, 'prov/unsigned', 'v1');
    assert.equal(r.status, 403);
    assert.equal(denial(r).detail?.outcome, 'unsigned');
  });

  test('warn mode: served, marked unverified, the Warning says which attestation is not met', async () => {
    const img = await signedImage('warn/app');
    const r = await pull(sigil, 'warn/app', 'v1');
    assert.equal(r.status, 200);
    assert.deepEqual(r.body, img.manifest);
    assert.equal(r.headers['sigil-verification'], 'unverified');
    assert.match(String(r.headers.warning), /^299 - "sigil: attestation built-by-our-ci \(https:\/\/slsa\.dev\/provenance\/v1\) not met: no attestation .* \(policy rollout\)"$/);
  });
});

describe('"an SPDX or CycloneDX SBOM is attached"', () => {
  for (const type of [PREDICATE.SPDX, PREDICATE.CYCLONEDX]) {
    test(`a ${type} attestation meets it`, async () => {
      const repo = `sbom/${type === PREDICATE.SPDX ? 'spdx' : 'cyclonedx'}`;
      const img = await signedImage(repo);
      await pushLegacyAttestation(env.target, repo, img.digest, [attestationLayer(env.keys.p256, statement(img.digest, type, { name: 'sbom' }))]);
      const r = await pull(sigil, repo, 'v1');
      assert.equal(r.status, 200, r.body.toString());
      assert.equal(r.headers['sigil-verification'], 'verified');
    });
  }

  test('a provenance is no SBOM: 403', async () => {
    const img = await signedImage('sbom/provenance-only');
    await pushLegacyAttestation(env.target, 'sbom/provenance-only', img.digest, [attestationLayer(env.keys.p256, provenance(img.digest))]);
    const r = await pull(sigil, 'sbom/provenance-only', 'v1');
    assert.equal(r.status, 403);
    assert.match(denial(r).message, /attestation sbom-attached \(https:\/\/spdx\.dev\/Document or https:\/\/cyclonedx\.org\/bom\) not met: no attestation/);
  });
});

describe('keyless (private Sigstore)', () => {
  test('a keyless `.att` with its Rekor intoto entry, and a keyless bundle: both meet the requirement', async () => {
    const id = env.sigstore.issueIdentity(SUBJECT, ISSUER);
    const img = await signedImage('keyless/att', id);
    await pushLegacyAttestation(env.target, 'keyless/att', img.digest, [attestationLayer(id, provenance(img.digest), { rekor: env.sigstore })]);
    const r = await pull(sigil, 'keyless/att', 'v1');
    assert.equal(r.status, 200, r.body.toString());
    assert.equal(r.headers['sigil-signer'], `${SUBJECT} (issuer ${ISSUER})`);

    const img2 = await signedImage('keyless/bundle', id);
    const b = attestationBundle(id, img2.digest, statement(img2.digest, PREDICATE.SLSA_V1, slsaProvenance({ builderId: SUBJECT, repository: OUR_REPO }), { version: 'v1' }), { rekor: env.sigstore });
    await pushBundleReferrer(env.target, 'keyless/bundle', { digest: img2.digest, size: img2.manifest.length, mediaType: img2.mediaType }, b);
    assert.equal((await pull(sigil, 'keyless/bundle', 'v1')).status, 200);
  });

  test('an identity outside the policy\'s pattern attests: 403', async () => {
    const id = env.sigstore.issueIdentity(SUBJECT, ISSUER);
    const outsider = env.sigstore.issueIdentity('https://github.com/evil/app/.github/workflows/x.yml@refs/heads/main', ISSUER);
    const img = await signedImage('keyless/outsider', id);
    await pushLegacyAttestation(env.target, 'keyless/outsider', img.digest, [attestationLayer(outsider, provenance(img.digest), { rekor: env.sigstore })]);
    const r = await pull(sigil, 'keyless/outsider', 'v1');
    assert.equal(r.status, 403);
    assert.match(denial(r).message, /not signed by an authority of the policy: .*evil/);
  });
});

describe('with a content store', () => {
  test('the `.att` attestation is kept with the image: an --offline sigil re-verifies it, condition and all, from the store', async () => {
    const storeDir = await tempDir('sigil-attest-store-');
    const extra = `cache:\n  store:\n    dir: ${storeDir}\n    maxBytes: 1073741824`;
    const img = await signedImage('prov/stored');
    await pushLegacyAttestation(env.target, 'prov/stored', img.digest, [attestationLayer(env.keys.p256, provenance(img.digest))]);
    const online = await env.sigil(policies, { extra });
    assert.equal((await pull(online, 'prov/stored', 'v1')).status, 200);
    await online.stop();
    const offline = await env.sigil(policies, { extra, offline: true });
    const r = await pull(offline, 'prov/stored', 'v1');
    assert.equal(r.status, 200, r.body.toString());
    assert.equal(r.headers['sigil-verification'], 'verified');
    const decision = offline.logs.find((l) => l.audit === 'decision' && l.repository === 'prov/stored');
    assert.equal(decision?.cached, false, 'a fresh verdict, from the stored signature and attestation');
  });
});

describe('sigil mirror, --import and cache ls', () => {
  test('the `.att` tag is copied and exported with the image, counted as its signature data, and verifies offline after an import', async () => {
    const root = await tempDir('sigil-attest-mirror-');
    const img = await signedImage('prov/mirrored');
    await pushLegacyAttestation(env.target, 'prov/mirrored', img.digest, [attestationLayer(env.keys.p256, provenance(img.digest))]);
    const configWith = async (store: string): Promise<string> => {
      const path = join(root, `${store}.yaml`);
      const yaml = ['upstreams:', `  - name: ${UPSTREAM}`, `    url: ${env.registry.url}`, `defaultUpstream: ${UPSTREAM}`, 'trust:', `  trustedRoot: [${env.sigstore.trustedRootPath}]`];
      await writeFile(path, [...yaml, 'policies:', policies, 'cache:', '  store:', `    dir: ${join(root, store)}`, '    maxBytes: 1073741824', ''].join('\n'));
      return path;
    };
    const file = join(root, 'mirror.yaml');
    await writeFile(file, `images:\n  - image: ${UPSTREAM}/prov/mirrored\n    tags: ["v1"]\n`);
    const mirrored = await runSigil(['mirror', file, '--config', await configWith('store'), '--export', join(root, 'layout'), '--json']);
    assert.equal(mirrored.code, 0, mirrored.stderr + mirrored.stdout);
    const ls = await runSigil(['cache', 'ls', '--config', await configWith('store'), '--json']);
    const inventory = JSON.parse(ls.stdout) as { tags: Array<{ ref: string; objects: number }>; loose: { objects: number } };
    // the image: manifest, config, layer; its .sig: manifest, config, payload; its .att: manifest, config, envelope
    assert.deepEqual(inventory.tags.map((t) => [t.ref, t.objects]), [[`${UPSTREAM}/prov/mirrored:v1`, 9]]);
    assert.equal(inventory.loose.objects, 0);

    const imported = await runSigil(['mirror', '--import', join(root, 'layout'), '--config', await configWith('imported'), '--json']);
    assert.equal(imported.code, 0, imported.stderr + imported.stdout);
    const statuses = (JSON.parse(imported.stdout) as { results: Array<{ status: string }> }).results.map((r) => r.status).sort();
    assert.deepEqual(statuses, ['signature', 'signature', 'verified']);
    for (const store of ['store', 'imported']) {
      const offline = await env.sigil(policies, { extra: `cache:\n  store:\n    dir: ${join(root, store)}\n    maxBytes: 1073741824`, offline: true });
      const r = await pull(offline, 'prov/mirrored', 'v1');
      assert.equal(r.status, 200, `${store}: ${r.body.toString()}`);
      assert.equal(r.headers['sigil-verification'], 'verified');
      await offline.stop();
    }
  });
});

describe('sigil verify shows the attestations and which conditions passed', () => {
  let cfg: string;
  before(async () => {
    cfg = join(env.dir, 'attestations.yaml');
    await writeFile(
      cfg,
      [
        'upstreams:',
        `  - name: ${UPSTREAM}`,
        `    url: ${env.registry.url}`,
        `defaultUpstream: ${UPSTREAM}`,
        'trust:',
        `  trustedRoot: [public-good, ${env.sigstore.trustedRootPath}]`,
        'policies:',
        policies,
      ].join('\n'),
    );
  });

  test('met: exit 0, the requirement, where it was met, by whom, and the condition that passed', async () => {
    const img = await signedImage('prov/cli-ok');
    await pushLegacyAttestation(env.target, 'prov/cli-ok', img.digest, [attestationLayer(env.keys.p256, provenance(img.digest))]);
    const r = await runSigil(['verify', `${UPSTREAM}/prov/cli-ok:v1`, '--config', cfg]);
    assert.equal(r.code, 0, r.stderr + r.stdout);
    const tag = `${img.digest.replace(':', '-')}.att`;
    assert.ok(r.stdout.includes(`  attestation "built-by-our-ci" (${PREDICATE.SLSA_V1}): met by ${tag} layer 0, signer ${env.keys.p256.keyId}\n    condition passed: ${CONDITION}\n`), r.stdout);
    const j = await runSigil(['verify', `${UPSTREAM}/prov/cli-ok:v1`, '--config', cfg, '--json']);
    const report = JSON.parse(j.stdout) as { verified: boolean; attestations: Array<Record<string, unknown>> };
    assert.equal(report.verified, true);
    assert.deepEqual(report.attestations, [
      { name: 'built-by-our-ci', predicateTypes: [PREDICATE.SLSA_V1], condition: CONDITION, met: true, source: `${tag} layer 0`, predicateType: PREDICATE.SLSA_V1, signer: env.keys.p256.keyId },
    ]);
  });

  test('not met: exit 1, each attestation tried and what it failed on', async () => {
    const img = await signedImage('prov/cli-bad');
    await pushLegacyAttestation(env.target, 'prov/cli-bad', img.digest, [
      attestationLayer(env.stranger, provenance(img.digest)),
      attestationLayer(env.keys.p256, provenance(img.digest, SUBJECT, 'https://github.com/evil/app')),
    ]);
    const r = await runSigil(['verify', `${UPSTREAM}/prov/cli-bad:v1`, '--config', cfg]);
    assert.equal(r.code, 1, r.stderr + r.stdout);
    const tag = `${img.digest.replace(':', '-')}.att`;
    assert.match(r.stdout, /^NOT verified: /);
    assert.ok(r.stdout.includes(`  attestation "built-by-our-ci" (${PREDICATE.SLSA_V1}): NOT met\n`), r.stdout);
    assert.ok(r.stdout.includes(`    ${tag} layer 0: not signed by an authority of the policy: signature does not verify with key ${env.keys.p256.keyId}\n`), r.stdout);
    assert.ok(r.stdout.includes(`    ${tag} layer 1: condition ${CONDITION} is false\n`), r.stdout);
  });
});
