// Key signatures in cosign's legacy layout for every key type sigil accepts,
// made with node:crypto by the test signer (test/helpers/signer.ts, which
// shares no code with src/), with and without a Rekor entry of a private Sigstore.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { constants, createHash, createPublicKey, sign } from 'node:crypto';
import { ed25519 } from '@noble/curves/ed25519.js';
import { rm } from 'node:fs/promises';
import { verifyCandidates } from '../../src/verify/candidates.js';
import { keyIdOf, keyMaterialId, parsePublicKey, verifyWithKey } from '../../src/verify/key-signature.js';
import { verifyEd25519ph } from '../../src/verify/ed25519ph.js';
import { loadTrust, type TrustBundle } from '../../src/verify/trust.js';
import type { Digest } from '../../src/oci/digest.js';
import type { CandidateSignature } from '../../src/verify/types.js';
import { tempDir } from '../helpers/temp.js';
import { createPrivateSigstore, toLegacyBundleAnnotation, type PrivateSigstore } from '../helpers/private-sigstore.js';
import { compressedPublicPem, cosignPayload, generateKey, hashedRekordBody, legacyLayer, type LegacySignatureLayer } from '../helpers/signer.js';
import { PUBLIC_GOOD_ROOT, keyAuthority, keyless, onlyReason, policy } from '../helpers/verify-fixtures.js';
import { sha256 } from '../helpers/digest.js';

const digest = `sha256:${'c0'.repeat(32)}` as Digest;
const candidate = (layer: Pick<LegacySignatureLayer, 'payload' | 'annotations'>): CandidateSignature => ({
  format: 'legacy', source: 'sha256-c0c0.sig layer 0', payload: layer.payload, annotations: layer.annotations,
});
const SIG = 'dev.cosignproject.cosign/signature';
const sha256Bytes = (b: Buffer): Buffer => createHash('sha256').update(b).digest();

// RFC 8032 §7.3, test vector "TEST abc" for Ed25519ph.
const RFC8032_PH = {
  publicKey: 'ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf',
  message: '616263',
  signature: '98a70222f0b8121aa9d30f813d683f809e462b469c7ff87639499bb94e6dae4131f85042463c2a355a2003d062adf5aaa10b8c61e636062aaad11c2a26083406',
};

describe('Ed25519ph (RFC 8032 §5.1 with phflag 1)', () => {
  test('verifies the RFC 8032 test vector and rejects it for another message or as pure Ed25519', () => {
    const pk = Buffer.from(RFC8032_PH.publicKey, 'hex');
    const sig = Buffer.from(RFC8032_PH.signature, 'hex');
    assert.equal(verifyEd25519ph(pk, Buffer.from(RFC8032_PH.message, 'hex'), sig), true);
    assert.equal(verifyEd25519ph(pk, Buffer.from('abd'), sig), false);
    const spki = Buffer.concat([Buffer.from('302a300506032b6570032100', 'hex'), pk]);
    const key = parsePublicKey(`-----BEGIN PUBLIC KEY-----\n${spki.toString('base64')}\n-----END PUBLIC KEY-----\n`).key;
    assert.equal(verifyWithKey(key, Buffer.from('abc'), sig), true); // through the pure-then-ph fallback
  });

  test('rejects S >= L, a bad point and wrong lengths', () => {
    const pk = Buffer.from(RFC8032_PH.publicKey, 'hex');
    const sig = Buffer.from(RFC8032_PH.signature, 'hex');
    const bigS = Buffer.from(sig);
    bigS.fill(0xff, 32);
    assert.equal(verifyEd25519ph(pk, Buffer.from('abc'), bigS), false);
    const badPoint = Buffer.alloc(32, 0xff); // y >= p
    assert.equal(verifyEd25519ph(badPoint, Buffer.from('abc'), sig), false);
    assert.equal(verifyEd25519ph(pk, Buffer.from('abc'), sig.subarray(0, 63)), false);
  });
});

describe('key ids', () => {
  test('sha256:<hex> of the SPKI DER, the same for a key and its certificate-free PEM forms', () => {
    const key = generateKey('p256');
    const spki = key.publicKey.export({ type: 'spki', format: 'der' });
    assert.equal(parsePublicKey(key.publicPem).keyId, sha256(spki));
    assert.equal(keyIdOf(spki), key.keyId);
  });
  test('key material: one EC key, its point compressed or not, is one key; another key is not', () => {
    for (const kind of ['p256', 'p384'] as const) {
      const key = generateKey(kind);
      const compressed = parsePublicKey(compressedPublicPem(key));
      assert.notEqual(compressed.keyId, key.keyId, 'two encodings, two SPKIs');
      assert.equal(keyMaterialId(compressed.key), key.keyId);
      assert.equal(keyMaterialId(key.publicKey), key.keyId);
      assert.notEqual(keyMaterialId(generateKey(kind).publicKey), key.keyId);
    }
    const ed = generateKey('ed25519');
    assert.equal(keyMaterialId(ed.publicKey), ed.keyId);
  });
});

describe('legacy key signatures without a Rekor entry (tlog: ignore)', () => {
  const trust = (): TrustBundle => loadTrust(['public-good'], { publicGoodPath: PUBLIC_GOOD_ROOT });

  for (const kind of ['p256', 'p384', 'rsa', 'ed25519', 'ed25519ph'] as const) {
    test(`${kind}: verifies; a changed payload, a flipped bit or another key does not`, () => {
      const key = generateKey(kind);
      const p = policy([keyAuthority(key.publicPem, 'ignore')]);
      const out = verifyCandidates([candidate(legacyLayer(key, digest))], { digest }, p, trust());
      assert.deepEqual(out.kind === 'verified' && out.signer, { kind: 'key', keyId: key.keyId }, JSON.stringify(out));
      for (const tamper of ['payload', 'signature'] as const) {
        const reason = onlyReason(verifyCandidates([candidate(legacyLayer(key, digest, { tamper }))], { digest }, p, trust()));
        assert.equal(reason, `signature does not verify with key ${key.keyId}`, tamper);
      }
      const other = generateKey(kind);
      assert.equal(onlyReason(verifyCandidates([candidate(legacyLayer(other, digest))], { digest }, p, trust())), `signature does not verify with key ${key.keyId}`);
    });
  }

  test('keys anyone can sign for verify nothing: an Ed25519 key of small order, an RSA key with public exponent 1', () => {
    const payload = cosignPayload(digest, 'registry.sigil.test/image');
    // The identity point: [S]B - [k]A = [S]B, so R = [S]B and S sign any payload as Ed25519ph.
    const identity = Buffer.concat([Buffer.from('302a300506032b6570032100', 'hex'), Buffer.from(ed25519.Point.ZERO.toBytes())]);
    const s = 0x0123456789abcdefn;
    const edForged = Buffer.concat([ed25519.Point.BASE.multiply(s).toBytes(), Buffer.from(s.toString(16).padStart(64, '0'), 'hex').reverse()]);
    // e = 1: the signature is the PKCS#1 v1.5 encoding of the digest itself.
    const n = generateKey('rsa').publicKey.export({ format: 'jwk' }).n;
    const rsaE1 = createPublicKey({ key: { kty: 'RSA', n, e: 'AQ' }, format: 'jwk' });
    const t = Buffer.concat([Buffer.from('3031300d060960864801650304020105000420', 'hex'), sha256Bytes(payload)]);
    const rsaForged = Buffer.concat([Buffer.from([0, 1]), Buffer.alloc(256 - 3 - t.length, 0xff), Buffer.from([0]), t]);
    for (const [what, pem, forged] of [
      ['Ed25519 identity', `-----BEGIN PUBLIC KEY-----\n${identity.toString('base64')}\n-----END PUBLIC KEY-----\n`, edForged],
      ['RSA e = 1', rsaE1.export({ type: 'spki', format: 'pem' }).toString(), rsaForged],
    ] as const) {
      const out = verifyCandidates([candidate({ payload, annotations: { [SIG]: forged.toString('base64') } })], { digest }, policy([keyAuthority(pem, 'ignore')]), trust());
      assert.equal(out.kind, 'invalid', what);
      assert.match(onlyReason(out), /^signature does not verify with key sha256:/, what);
    }
  });

  test('P-384 signed with SHA-256 (cosign before 2.4) and RSA-PSS verify', () => {
    const payload = cosignPayload(digest, 'registry.sigil.test/image');
    const p384 = generateKey('p384');
    const viaSha256 = { payload, annotations: { [SIG]: sign('sha256', payload, p384.privateKey).toString('base64') } };
    assert.equal(verifyCandidates([candidate(viaSha256)], { digest }, policy([keyAuthority(p384.publicPem, 'ignore')]), trust()).kind, 'verified');
    const rsa = generateKey('rsa');
    const pss = sign('sha256', payload, { key: rsa.privateKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 });
    const viaPss = { payload, annotations: { [SIG]: pss.toString('base64') } };
    assert.equal(verifyCandidates([candidate(viaPss)], { digest }, policy([keyAuthority(rsa.publicPem, 'ignore')]), trust()).kind, 'verified');
  });

  test('a P-256 signature with SHA-512 is not one of cosign\'s schemes', () => {
    const payload = cosignPayload(digest, 'registry.sigil.test/image');
    const key = generateKey('p256');
    const layer = { payload, annotations: { [SIG]: sign('sha512', payload, key.privateKey).toString('base64') } };
    assert.equal(verifyCandidates([candidate(layer)], { digest }, policy([keyAuthority(key.publicPem, 'ignore')]), trust()).kind, 'invalid');
  });
});

describe('legacy signatures with a Rekor SET of a private Sigstore', () => {
  let dir: string;
  let sigstore: PrivateSigstore;
  let trust: TrustBundle;
  before(async () => {
    dir = await tempDir('sigil-verify-keys');
    sigstore = await createPrivateSigstore(dir);
    trust = loadTrust([sigstore.trustedRootPath], { publicGoodPath: PUBLIC_GOOD_ROOT });
  });
  after(() => rm(dir, { recursive: true, force: true }));

  for (const kind of ['p256', 'p384', 'rsa', 'ed25519', 'ed25519ph'] as const) {
    test(`${kind}: tlog require verifies (the entry's hash algorithm is the key's)`, () => {
      const key = generateKey(kind);
      const out = verifyCandidates([candidate(legacyLayer(key, digest, { rekor: sigstore }))], { digest }, policy([keyAuthority(key.publicPem, 'require')]), trust);
      assert.deepEqual(out.kind === 'verified' && out.signer, { kind: 'key', keyId: key.keyId }, JSON.stringify(out));
    });
  }

  test('a payload changed after logging fails on the entry digest', () => {
    const key = generateKey('p256');
    const reason = onlyReason(verifyCandidates([candidate(legacyLayer(key, digest, { rekor: sigstore, tamper: 'payload' }))], { digest }, policy([keyAuthority(key.publicPem, 'require')]), trust));
    assert.match(reason, /digest mismatch|signature does not verify/);
  });

  test('an entry that records another key than the signer\'s fails', () => {
    const [signer, other] = [generateKey('p256'), generateKey('p256')];
    const layer = legacyLayer(signer, digest);
    const entry = sigstore.rekorEntry(hashedRekordBody(other, layer.payload, layer.annotations[SIG]));
    const annotations = { ...layer.annotations, 'dev.sigstore.cosign/bundle': toLegacyBundleAnnotation(entry) };
    const reason = onlyReason(verifyCandidates([candidate({ payload: layer.payload, annotations })], { digest }, policy([keyAuthority(signer.publicPem, 'require')]), trust));
    assert.equal(reason, "the Rekor entry records another public key than the signer's");
  });

  test('keyless legacy: verified at the integrated time; the certificate in the entry must be the one carried', () => {
    const alice = sigstore.issueIdentity('https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main', 'https://token.actions.githubusercontent.com');
    const p = policy([keyless('https://token.actions.githubusercontent.com', /^https:\/\/github\.com\/acme\/.+$/)]);
    const layer = legacyLayer(alice, digest, { rekor: sigstore });
    const out = verifyCandidates([candidate(layer)], { digest }, p, trust, { now: new Date(Date.now() + 24 * 3600 * 1000) });
    assert.deepEqual(out.kind === 'verified' && out.signer, { kind: 'keyless', subject: alice.subject, issuer: 'https://token.actions.githubusercontent.com' });
    const bob = sigstore.issueIdentity(alice.subject, 'https://token.actions.githubusercontent.com');
    const swapped = { ...layer.annotations, 'dev.sigstore.cosign/certificate': bob.certPem };
    assert.equal(verifyCandidates([candidate({ payload: layer.payload, annotations: swapped })], { digest }, p, trust).kind, 'invalid');
  });

  test('a malformed Rekor bundle annotation is the reason under tlog: require', () => {
    const key = generateKey('p256');
    const layer = legacyLayer(key, digest);
    const annotations = { ...layer.annotations, 'dev.sigstore.cosign/bundle': '{"Payload": 3}' };
    const reason = onlyReason(verifyCandidates([candidate({ payload: layer.payload, annotations })], { digest }, policy([keyAuthority(key.publicPem, 'require')]), trust));
    assert.equal(reason, 'dev.sigstore.cosign/bundle: Rekor bundle annotation has no Payload object');
  });
});
