import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate, createHash, createPublicKey, verify as nodeVerify } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { readFile, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { bundleFromJSON } from '@sigstore/bundle';
import { TrustedRoot } from '@sigstore/protobuf-specs';
import { Verifier, toSignedEntity, toTrustMaterial } from '@sigstore/verify';
import type { VerificationPolicy, VerifierOptions } from '@sigstore/verify';
import {
  ANNOTATION,
  MEDIA,
  bundleFor,
  bundleReferrer,
  cosignPayload,
  ed25519KeyFromSeed,
  ed25519PublicFromSeed,
  generateKey,
  keyFromPrivate,
  legacyLayer,
  sigManifest,
  sigTag,
  signPayload,
} from '../helpers/signer.js';
import type { LegacySignatureLayer, TestKey } from '../helpers/signer.js';
import { createPrivateSigstore } from '../helpers/private-sigstore.js';
import type { PrivateSigstore } from '../helpers/private-sigstore.js';
import { tempDir } from '../helpers/temp.js';
import { sha256 } from '../helpers/digest.js';

// Proves that what test/helpers/signer.ts and private-sigstore.ts produce is accepted by the
// real verifier (@sigstore/verify) against the private trusted root, and that broken variants
// are rejected. The legacy-layer → bundle v0.1 conversion below is the one described in
// test/fixtures/README.md (copied from the shared fixtures).

const FIXTURES = fileURLToPath(new URL('../../../test/fixtures/real/', import.meta.url));
const SUBJECT = 'dev@sigil.test';
const ISSUER = 'https://issuer.sigil.test';
const KEYED: VerifierOptions = { tlogThreshold: 0, ctlogThreshold: 0, timestampThreshold: 0 };
const HASH_ALGORITHM: Record<string, string> = { sha256: 'SHA2_256', sha384: 'SHA2_384', sha512: 'SHA2_512' };
const anchored = (s: string): RegExp => new RegExp(`^${s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`);
const policy: VerificationPolicy = { subjectAlternativeName: anchored(SUBJECT), extensions: { issuer: ISSUER } };

function pemToDer(pem: string): Buffer {
  return Buffer.from(pem.replace(/-----[^-]+-----|\s/g, ''), 'base64');
}

/** A legacy .sig layer as a Sigstore bundle v0.1 (the Rekor SET becomes the inclusion promise). */
function legacyToBundle(layer: LegacySignatureLayer, hint = 'key'): unknown {
  const a = layer.annotations;
  let algorithm = 'sha256';
  const tlogEntries: unknown[] = [];
  if (a[ANNOTATION.BUNDLE]) {
    const set = JSON.parse(a[ANNOTATION.BUNDLE]) as {
      SignedEntryTimestamp: string;
      Payload: { body: string; integratedTime: number; logIndex: number; logID: string };
    };
    const body = JSON.parse(Buffer.from(set.Payload.body, 'base64').toString('utf8')) as {
      kind: string;
      apiVersion: string;
      spec: { data: { hash: { algorithm: string } } };
    };
    algorithm = body.spec.data.hash.algorithm;
    tlogEntries.push({
      logIndex: String(set.Payload.logIndex),
      logId: { keyId: Buffer.from(set.Payload.logID, 'hex').toString('base64') },
      kindVersion: { kind: body.kind, version: body.apiVersion },
      integratedTime: String(set.Payload.integratedTime),
      inclusionPromise: { signedEntryTimestamp: set.SignedEntryTimestamp },
      canonicalizedBody: set.Payload.body,
    });
  }
  const cert = a[ANNOTATION.CERTIFICATE];
  return {
    mediaType: 'application/vnd.dev.sigstore.bundle+json;version=0.1',
    verificationMaterial: cert
      ? { x509CertificateChain: { certificates: [{ rawBytes: pemToDer(cert).toString('base64') }] }, tlogEntries }
      : { publicKey: { hint }, tlogEntries },
    messageSignature: {
      messageDigest: { algorithm: HASH_ALGORITHM[algorithm], digest: createHash(algorithm).update(layer.payload).digest('base64') },
      signature: a[ANNOTATION.SIGNATURE],
    },
  };
}

describe('cosign-format test signer and private Sigstore', () => {
  let dir: string;
  let sigstore: PrivateSigstore;
  let other: PrivateSigstore;
  const keys = new Map<string, KeyObject>();
  const digest = sha256(Buffer.from('an image manifest'));

  const trust = (s: PrivateSigstore = sigstore) =>
    toTrustMaterial(TrustedRoot.fromJSON(JSON.parse(s.trustedRootJson)), (hint: string) => {
      const publicKey = keys.get(hint);
      if (!publicKey) throw new Error(`no key ${hint}`);
      return { publicKey, validFor: () => true };
    });
  const verifyLegacy = (layer: LegacySignatureLayer, opts?: VerifierOptions, s?: PrivateSigstore, hint?: string) =>
    new Verifier(trust(s), opts).verify(toSignedEntity(bundleFromJSON(legacyToBundle(layer, hint)), layer.payload), hint ? undefined : policy);
  const verifyBundle = (bundle: Buffer, opts?: VerifierOptions, keyed = false) =>
    new Verifier(trust(), opts).verify(toSignedEntity(bundleFromJSON(JSON.parse(bundle.toString('utf8')))), keyed ? undefined : policy);
  const addKey = (k: TestKey): TestKey => {
    keys.set(k.hint, k.publicKey);
    return k;
  };

  before(async () => {
    dir = await tempDir('sigil-signer-');
    sigstore = await createPrivateSigstore(join(dir, 'a'));
    other = await createPrivateSigstore(join(dir, 'b'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test('trusted_root.json has the protobuf-specs shape and is written to disk', async () => {
    assert.equal(await readFile(sigstore.trustedRootPath, 'utf8'), sigstore.trustedRootJson);
    const mine = JSON.parse(sigstore.trustedRootJson) as Record<string, unknown>;
    const real = JSON.parse(await readFile(join(FIXTURES, 'cosign/trusted_root_pgi.json'), 'utf8')) as Record<string, unknown>;
    assert.equal(mine.mediaType, real.mediaType);
    for (const k of ['tlogs', 'certificateAuthorities', 'ctlogs'] as const) {
      const m = (mine[k] as Array<Record<string, unknown>>)[0];
      const r = (real[k] as Array<Record<string, unknown>>)[0];
      assert.deepEqual(Object.keys(m).sort(), Object.keys(r).sort(), k);
    }
    assert.deepEqual(mine.timestampAuthorities, []);
    const root = TrustedRoot.fromJSON(mine);
    assert.equal(root.certificateAuthorities[0].certChain?.certificates.length, 2);
    assert.equal(root.tlogs[0].logId?.keyId.toString('hex'), sigstore.rekorLogId);
  });

  test('certificates parse with node/OpenSSL and look like Fulcio leaves', () => {
    const id = sigstore.issueIdentity(SUBJECT, ISSUER);
    const leaf = new X509Certificate(id.certPem);
    const [inter, root] = id.chainPem.split(/(?<=-----END CERTIFICATE-----\n)/).map((p) => new X509Certificate(p));
    assert.ok(root.verify(root.publicKey), 'root is self-signed');
    assert.ok(inter.verify(root.publicKey) && inter.checkIssued(root));
    assert.ok(leaf.verify(inter.publicKey) && leaf.checkIssued(inter));
    assert.ok(inter.ca && root.ca && !leaf.ca);
    assert.equal(leaf.subjectAltName, `email:${SUBJECT}`);
    assert.deepEqual(leaf.keyUsage, ['1.3.6.1.5.5.7.3.3']);
    assert.equal(Date.parse(leaf.validTo) - Date.parse(leaf.validFrom), 10 * 60 * 1000);
    assert.equal(leaf.subject, '');
    const uri = sigstore.issueIdentity('https://github.com/o/r/.github/workflows/w.yml@refs/heads/main', ISSUER);
    assert.equal(new X509Certificate(uri.certPem).subjectAltName, 'URI:https://github.com/o/r/.github/workflows/w.yml@refs/heads/main');
    // The same extension layout as the public-good leaf (1.1 raw, 1.8 UTF8String, SCT list).
    const der = leaf.raw;
    for (const oid of ['2b0601040183bf300101', '2b0601040183bf300108', '2b06010401d679020402']) {
      assert.ok(der.includes(Buffer.from(`06${(oid.length / 2).toString(16).padStart(2, '0')}${oid}`, 'hex')), oid);
    }
    assert.ok(der.includes(Buffer.concat([Buffer.from([0x0c, ISSUER.length]), Buffer.from(ISSUER)])), '1.8 is a UTF8String');
  });

  test('cosignPayload reproduces the fixture payload byte for byte', async () => {
    for (const fixture of ['dir-img-cosign-key-rekor-valid', 'dir-img-cosign-fulcio-rekor-valid']) {
      const raw = await readFile(join(FIXTURES, 'containers-image', fixture, 'signature-1'));
      const sig = JSON.parse(raw.subarray(raw.indexOf('\n') + 1).toString('utf8')) as { payload: string };
      const real = Buffer.from(sig.payload, 'base64');
      const parsed = JSON.parse(real.toString('utf8')) as { critical: { identity: { 'docker-reference': string }; image: { 'docker-manifest-digest': string } } };
      assert.deepEqual(cosignPayload(parsed.critical.image['docker-manifest-digest'], parsed.critical.identity['docker-reference']), real);
    }
    const withAnnotations = JSON.parse(cosignPayload(digest, 'r/x', { b: '2', a: '<&>' }).toString()) as { optional: Record<string, string> };
    assert.deepEqual(Object.keys(withAnnotations.optional), ['a', 'b']);
    assert.match(cosignPayload(digest, 'r/x', { a: '<&>' }).toString(), /\\u003c\\u0026\\u003e/);
  });

  test('keyless legacy layer with a Rekor SET verifies', () => {
    const id = sigstore.issueIdentity(SUBJECT, ISSUER);
    const layer = legacyLayer(id, digest, { rekor: sigstore, dockerReference: 'registry.test/app' });
    assert.deepEqual(Object.keys(layer.annotations).sort(), [ANNOTATION.SIGNATURE, ANNOTATION.BUNDLE, ANNOTATION.CERTIFICATE, ANNOTATION.CHAIN].sort());
    const set = JSON.parse(layer.annotations[ANNOTATION.BUNDLE]) as { Payload: { body: string; logID: string } };
    const body = JSON.parse(Buffer.from(set.Payload.body, 'base64').toString()) as { kind: string; apiVersion: string };
    assert.equal(body.kind, 'hashedrekord');
    assert.equal(body.apiVersion, '0.0.1');
    assert.equal(set.Payload.logID, sigstore.rekorLogId);
    const signer = verifyLegacy(layer);
    assert.equal(signer.identity?.subjectAlternativeName, SUBJECT);
    assert.equal(signer.identity?.extensions?.issuer, ISSUER);
  });

  test('keyless v0.3 bundles verify (inclusion proof in a growing tree, checkpoint, SET, SCT)', () => {
    const id = sigstore.issueIdentity(SUBJECT, ISSUER);
    for (let i = 0; i < 6; i++) {
      const bundle = bundleFor(id, sha256(Buffer.from(`image ${i}`)), { rekor: sigstore, annotations: { n: String(i) } });
      const json = JSON.parse(bundle.toString()) as { verificationMaterial: { tlogEntries: Array<{ inclusionProof: { treeSize: string; hashes: string[] } }> } };
      const proof = json.verificationMaterial.tlogEntries[0].inclusionProof;
      assert.ok(Number(proof.treeSize) >= 2 || i === 0);
      assert.equal(verifyBundle(bundle).identity?.subjectAlternativeName, SUBJECT);
    }
    // The inclusion proof and checkpoint are checked on their own, without the SET.
    const bundle = JSON.parse(bundleFor(id, digest, { rekor: sigstore }).toString()) as {
      verificationMaterial: { tlogEntries: Array<Record<string, unknown> & { inclusionProof: { checkpoint: { envelope: string } } }> };
    };
    const entry = bundle.verificationMaterial.tlogEntries[0];
    const badCheckpoint = structuredClone(bundle);
    const cp = badCheckpoint.verificationMaterial.tlogEntries[0].inclusionProof.checkpoint;
    cp.envelope = cp.envelope.replace(/\n(\d+)\n/, (_m, n: string) => `\n${Number(n) + 1}\n`);
    assert.throws(() => new Verifier(trust()).verify(toSignedEntity(bundleFromJSON(badCheckpoint)), policy), /invalid checkpoint signature/);
    const badPath = structuredClone(bundle) as typeof bundle & {
      verificationMaterial: { tlogEntries: Array<{ inclusionProof: { hashes: string[] } }> };
    };
    const hashes = badPath.verificationMaterial.tlogEntries[0].inclusionProof.hashes;
    assert.ok(hashes.length > 0, 'the tree has more than one leaf by now');
    hashes[0] = Buffer.alloc(32).toString('base64');
    assert.throws(() => new Verifier(trust()).verify(toSignedEntity(bundleFromJSON(badPath)), policy), /calculated root hash does not match/);
    assert.ok(entry.inclusionPromise, 'bundles carry the SET too (the only timestamp for a keyless signature)');
    assert.ok(new Verifier(trust()).verify(toSignedEntity(bundleFromJSON(bundle)), policy));
  });

  test('key-signed p256 legacy layer without tlog verifies with thresholds 0', () => {
    const key = addKey(generateKey('p256'));
    const layer = legacyLayer(key, digest);
    assert.deepEqual(Object.keys(layer.annotations), [ANNOTATION.SIGNATURE]);
    assert.ok(verifyLegacy(layer, KEYED, sigstore, key.hint).key);
    assert.throws(() => verifyLegacy(layer, { ...KEYED, tlogThreshold: 1 }, sigstore, key.hint), /tlog/i);
  });

  test('key-signed p384 and rsa layers with a Rekor SET verify (hash from the Rekor body)', () => {
    for (const kind of ['p384', 'rsa'] as const) {
      const key = addKey(generateKey(kind));
      const layer = legacyLayer(key, digest, { rekor: sigstore });
      const body = JSON.parse(Buffer.from((JSON.parse(layer.annotations[ANNOTATION.BUNDLE]) as { Payload: { body: string } }).Payload.body, 'base64').toString()) as {
        spec: { data: { hash: { algorithm: string } } };
      };
      assert.equal(body.spec.data.hash.algorithm, kind === 'p384' ? 'sha384' : 'sha256');
      assert.ok(verifyLegacy(layer, { tlogThreshold: 1, ctlogThreshold: 0, timestampThreshold: 0 }, sigstore, key.hint).key, kind);
    }
  });

  test('key-signed v0.3 bundle with publicKey hint verifies', () => {
    const key = addKey(generateKey('p256'));
    assert.ok(verifyBundle(bundleFor(key, digest, { rekor: sigstore }), { tlogThreshold: 1, ctlogThreshold: 0, timestampThreshold: 0 }, true).key);
    assert.ok(verifyBundle(bundleFor(key, digest), KEYED, true).key);
  });

  test('ed25519 signs pure Ed25519; ed25519ph matches RFC 8032 7.3', () => {
    const ed = generateKey('ed25519');
    const payload = cosignPayload(digest, 'r/x');
    assert.ok(nodeVerify(null, payload, ed.publicKey, Buffer.from(signPayload(ed, payload), 'base64')));
    // RFC 8032 section 7.3, test vector "abc" for Ed25519ph.
    const seed = Buffer.from('833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42', 'hex');
    const ph = keyFromPrivate('ed25519ph', ed25519KeyFromSeed(seed));
    const raw = createPublicKey(ph.privateKey).export({ format: 'jwk' }).x;
    assert.equal(Buffer.from(String(raw), 'base64url').toString('hex'), 'ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf');
    assert.equal(ed25519PublicFromSeed(seed).toString('hex'), 'ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf');
    assert.equal(
      Buffer.from(signPayload(ph, Buffer.from('abc')), 'base64').toString('hex'),
      '98a70222f0b8121aa9d30f813d683f809e462b469c7ff87639499bb94e6dae4131f85042463c2a355a2003d062adf5aaa10b8c61e636062aaad11c2a26083406',
    );
    // A random key: the point arithmetic agrees with node's public key, and ph differs from pure.
    const rnd = generateKey('ed25519ph');
    const rndSeed = Buffer.from(String(rnd.privateKey.export({ format: 'jwk' }).d), 'base64url');
    assert.equal(ed25519PublicFromSeed(rndSeed).toString('base64url'), rnd.publicKey.export({ format: 'jwk' }).x);
    assert.ok(!nodeVerify(null, payload, rnd.publicKey, Buffer.from(signPayload(rnd, payload), 'base64')));
  });

  test('tampered payload or signature fails (legacy and bundle)', () => {
    const id = sigstore.issueIdentity(SUBJECT, ISSUER);
    const payloadTampered = legacyLayer(id, digest, { rekor: sigstore, tamper: 'payload' });
    assert.equal((JSON.parse(payloadTampered.payload.toString()) as { critical: { image: { 'docker-manifest-digest': string } } }).critical.image['docker-manifest-digest'], digest);
    assert.throws(() => verifyLegacy(payloadTampered), /digest mismatch|signature/i);
    assert.throws(() => verifyLegacy(legacyLayer(id, digest, { rekor: sigstore, tamper: 'signature' })), /signature/i);
    const key = addKey(generateKey('p256'));
    assert.throws(() => verifyLegacy(legacyLayer(key, digest, { tamper: 'payload' }), KEYED, sigstore, key.hint), /signature verification failed/);
    assert.throws(() => verifyLegacy(legacyLayer(key, digest, { tamper: 'signature' }), KEYED, sigstore, key.hint), /signature verification failed/);
    assert.throws(() => verifyBundle(bundleFor(id, digest, { rekor: sigstore, tamper: 'payload' })), /hash mismatch|signature/i);
    assert.throws(() => verifyBundle(bundleFor(id, digest, { rekor: sigstore, tamper: 'signature' })), /signature/i);
    assert.throws(() => verifyBundle(bundleFor(key, digest, { tamper: 'payload' }), KEYED, true), /signature verification failed/);
  });

  test('untrusted CA, foreign Rekor, expired certificate and missing SCT fail', () => {
    const rogue = sigstore.issueIdentity(SUBJECT, ISSUER, { untrusted: true });
    assert.throws(() => verifyLegacy(legacyLayer(rogue, digest, { rekor: sigstore })), /certificate chain/i);
    assert.throws(() => verifyBundle(bundleFor(rogue, digest, { rekor: sigstore })), /certificate chain/i);
    // Signed by a trusted identity but logged in another (untrusted) Rekor.
    const id = sigstore.issueIdentity(SUBJECT, ISSUER);
    assert.throws(() => verifyLegacy(legacyLayer(id, digest, { rekor: other })), /inclusion promise/i);
    // Logged after the 10-minute certificate expired.
    const late = Math.floor(Date.now() / 1000) + 11 * 60;
    assert.throws(
      () => verifyLegacy(legacyLayer(id, digest, { rekor: sigstore, integratedTime: late })),
      (e: Error) => /not valid or expired/.test(String((e.cause as Error | undefined)?.message)),
    );
    // Policy: another SAN is refused, an unanchored prefix does not match.
    const good = legacyLayer(id, digest, { rekor: sigstore });
    const entity = () => toSignedEntity(bundleFromJSON(legacyToBundle(good)), good.payload);
    assert.ok(new Verifier(trust()).verify(entity(), policy));
    assert.throws(() => new Verifier(trust()).verify(entity(), { subjectAlternativeName: anchored('dev@sigil.tes') }), /subject|identity|SAN/i);
    assert.throws(() => new Verifier(trust()).verify(entity(), { ...policy, extensions: { issuer: 'https://evil.test' } }), /issuer|extension/i);
    // No SCT: refused with the default ctlogThreshold 1, accepted with 0.
    const noSct = sigstore.issueIdentity(SUBJECT, ISSUER, { sct: false });
    const layer = legacyLayer(noSct, digest, { rekor: sigstore });
    assert.throws(() => verifyLegacy(layer), /SCT/);
    assert.ok(verifyLegacy(layer, { ctlogThreshold: 0 }));
    // A valid chain in another sigstore's root is not trusted here.
    assert.throws(() => verifyLegacy(legacyLayer(other.issueIdentity(SUBJECT, ISSUER), digest, { rekor: sigstore })), /certificate chain/i);
  });

  test('sigManifest and bundleReferrer have the OCI shapes cosign pushes', () => {
    const key = generateKey('p256');
    const id = sigstore.issueIdentity(SUBJECT, ISSUER);
    const layers = [legacyLayer(key, digest), legacyLayer(id, digest, { rekor: sigstore })];
    const sig = sigManifest(layers);
    const m = JSON.parse(sig.manifest.toString()) as {
      schemaVersion: number;
      mediaType: string;
      config: { mediaType: string; digest: string; size: number };
      layers: Array<{ mediaType: string; digest: string; size: number; annotations: Record<string, string> }>;
    };
    assert.equal(m.schemaVersion, 2);
    assert.equal(m.mediaType, MEDIA.OCI_MANIFEST);
    assert.equal(sig.mediaType, MEDIA.OCI_MANIFEST);
    assert.equal(m.config.digest, sha256(sig.blobs[0]));
    assert.equal(m.config.size, sig.blobs[0].length);
    assert.equal(m.layers.length, 2);
    m.layers.forEach((l, i) => {
      assert.equal(l.mediaType, MEDIA.SIMPLE_SIGNING);
      assert.equal(l.digest, sha256(sig.blobs[i + 1]));
      assert.deepEqual(l.annotations, layers[i].annotations);
    });
    assert.equal(sigTag(digest), `sha256-${digest.slice(7)}.sig`);

    const bundle = bundleFor(id, digest, { rekor: sigstore });
    const subject = { digest, size: 1234, mediaType: MEDIA.OCI_MANIFEST };
    const ref = bundleReferrer(bundle, subject);
    const r = JSON.parse(ref.manifest.toString()) as {
      artifactType: string;
      config: { mediaType: string; digest: string; size: number };
      layers: Array<{ mediaType: string; digest: string }>;
      subject: unknown;
      annotations: Record<string, string>;
    };
    assert.equal(r.artifactType, MEDIA.BUNDLE_V03);
    assert.equal(ref.artifactType, MEDIA.BUNDLE_V03);
    assert.deepEqual(r.config, { mediaType: MEDIA.OCI_EMPTY, size: 2, digest: 'sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a' });
    assert.deepEqual(r.layers.map((l) => [l.mediaType, l.digest]), [[MEDIA.BUNDLE_V03, sha256(bundle)]]);
    assert.deepEqual(r.subject, subject);
    assert.equal(r.annotations[ANNOTATION.BUNDLE_PREDICATE_TYPE], 'https://sigstore.dev/cosign/sign/v1');
    assert.deepEqual(ref.blobs, [Buffer.from('{}'), bundle]);
    const statement = JSON.parse(
      Buffer.from((JSON.parse(bundle.toString()) as { dsseEnvelope: { payload: string } }).dsseEnvelope.payload, 'base64').toString(),
    ) as { subject: Array<{ digest: { sha256: string } }> };
    assert.equal(`sha256:${statement.subject[0].digest.sha256}`, digest);
  });

  test('createPrivateSigstore writes only the trusted root', async () => {
    assert.deepEqual(await readdir(join(dir, 'a')), ['trusted_root.json']);
  });
});
