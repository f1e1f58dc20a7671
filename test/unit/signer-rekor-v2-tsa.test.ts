// Proves that the private Rekor v2 log (test/helpers/rekor-v2.ts) and timestamp authority
// (test/helpers/tsa.ts) produce what the real verifier, @sigstore/verify, accepts against a
// trusted root listing them — and that it refuses the broken variants — before any test of
// sigil trusts them. The tokens are also checked by `openssl ts -verify`, independently of
// sigstore-js.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { bundleFromJSON } from '@sigstore/bundle';
import { PublicKeyDetails, TrustedRoot } from '@sigstore/protobuf-specs';
import { Verifier, toSignedEntity, toTrustMaterial, type VerificationPolicy } from '@sigstore/verify';
import { createPrivateSigstore, type PrivateSigstore } from '../helpers/private-sigstore.js';
import type { RekorV2Log } from '../helpers/rekor-v2.js';
import { createTimestampingSigstore } from '../helpers/timestamping.js';
import { ANNOTATION, bundleFor, generateKey, legacyLayer } from '../helpers/signer.js';
import type { TestTsa } from '../helpers/tsa.js';
import { tempDir } from '../helpers/temp.js';
import { sha256 } from '../helpers/digest.js';
import { certPem } from '../helpers/x509.js';

const SUBJECT = 'dev@sigil.test';
const ISSUER = 'https://issuer.sigil.test';
const policy: VerificationPolicy = { subjectAlternativeName: SUBJECT, extensions: { issuer: ISSUER } };
const digest = sha256(Buffer.from('an image manifest'));
const HOUR_MS = 3_600_000;

interface Setup {
  dir: string;
  sigstore: PrivateSigstore;
  log: RekorV2Log;
  tsa: TestTsa;
  /** A TSA the root does not list. */
  stranger: TestTsa;
}

async function setup(): Promise<Setup> {
  const dir = await tempDir('sigil-v2-tsa-');
  return { dir, ...(await createTimestampingSigstore(dir)) };
}

const verifier = (s: PrivateSigstore, thresholds = { tlogThreshold: 1, ctlogThreshold: 1, timestampThreshold: 1 }): Verifier =>
  new Verifier(toTrustMaterial(TrustedRoot.fromJSON(JSON.parse(s.trustedRootJson))), thresholds);
const entity = (bundle: Buffer) => toSignedEntity(bundleFromJSON(JSON.parse(bundle.toString('utf8'))));
type BundleJson = { verificationMaterial: { tlogEntries: Array<Record<string, unknown> & { inclusionProof: { checkpoint: { envelope: string }; hashes: string[] } }> } };

describe('the private Rekor v2 log and TSA, checked by @sigstore/verify', async () => {
  const s = await setup();

  test('the trusted root lists the v2 log (Ed25519, log ID = signed-note key ID) and the TSA', () => {
    const root = TrustedRoot.fromJSON(JSON.parse(s.sigstore.trustedRootJson));
    assert.equal(root.tlogs.length, 2);
    assert.equal(root.tlogs[1].publicKey?.keyDetails, PublicKeyDetails.PKIX_ED25519);
    assert.deepEqual(root.tlogs[1].logId?.keyId, s.log.logId);
    assert.equal(root.timestampAuthorities.length, 1);
    assert.equal(root.timestampAuthorities[0].certChain?.certificates.length, 2);
  });

  for (const kind of ['dsse', 'hashedrekord'] as const) {
    test(`a keyless bundle with a ${kind} 0.0.2 entry (no SET) and an RFC 3161 timestamp verifies`, () => {
      const id = s.sigstore.issueIdentity(SUBJECT, ISSUER);
      const bundle = bundleFor(id, digest, { rekorV2: { log: s.log, kind }, timestamp: s.tsa });
      const json = JSON.parse(bundle.toString()) as BundleJson;
      const entry = json.verificationMaterial.tlogEntries[0];
      assert.equal(entry.inclusionPromise, undefined);
      assert.equal(entry.integratedTime, undefined);
      assert.deepEqual(entry.kindVersion, { kind, version: '0.0.2' });
      assert.match(entry.inclusionProof.checkpoint.envelope, /^log2\.rekor\.sigil\.test\n\d+\n/);
      assert.equal(verifier(s.sigstore).verify(entity(bundle), policy).identity?.subjectAlternativeName, SUBJECT);
    });
  }

  test('a key-signed bundle with a Rekor v2 entry verifies too, in a tree of several leaves', () => {
    const key = generateKey('p256');
    const json = JSON.parse(bundleFor(key, digest, { rekorV2: { log: s.log, kind: 'dsse' } }).toString()) as BundleJson;
    const entry = json.verificationMaterial.tlogEntries[0];
    assert.ok(entry.inclusionProof.hashes.length > 0, 'the earlier tests appended entries');
    const body = JSON.parse(Buffer.from(entry.canonicalizedBody as string, 'base64').toString()) as { spec: { dsseV002: { signatures: Array<{ verifier: unknown }> } } };
    assert.deepEqual(body.spec.dsseV002.signatures[0].verifier, { keyDetails: 'PKIX_ECDSA_P256_SHA_256', publicKey: { rawBytes: key.publicKey.export({ type: 'spki', format: 'der' }).toString('base64') } });
    const material = toTrustMaterial(TrustedRoot.fromJSON(JSON.parse(s.sigstore.trustedRootJson)), (hint) => {
      if (hint !== key.hint) throw new Error(`no key ${hint}`);
      return { publicKey: key.publicKey, validFor: () => true };
    });
    assert.ok(new Verifier(material, { tlogThreshold: 1, ctlogThreshold: 0, timestampThreshold: 0 }).verify(toSignedEntity(bundleFromJSON(json))).key);
  });

  test('without a timestamp, a Rekor v2 entry gives no signing time', () => {
    const id = s.sigstore.issueIdentity(SUBJECT, ISSUER);
    assert.throws(() => verifier(s.sigstore).verify(entity(bundleFor(id, digest, { rekorV2: { log: s.log, kind: 'dsse' } })), policy), /expected 1 timestamps, got 0/);
  });

  test('a timestamp of a TSA the root does not list, or over other bytes, does not verify', () => {
    const id = s.sigstore.issueIdentity(SUBJECT, ISSUER);
    assert.throws(() => verifier(s.sigstore).verify(entity(bundleFor(id, digest, { rekorV2: { log: s.log, kind: 'dsse' }, timestamp: s.stranger })), policy), /timestamp could not be verified/);
    const other = JSON.parse(bundleFor(id, digest, { rekorV2: { log: s.log, kind: 'dsse' } }).toString()) as Record<string, { timestampVerificationData?: unknown }>;
    other.verificationMaterial.timestampVerificationData = { rfc3161Timestamps: [{ signedTimestamp: s.tsa.timestamp(Buffer.from('other bytes')).toString('base64') }] };
    assert.throws(() => verifier(s.sigstore).verify(toSignedEntity(bundleFromJSON(other)), policy), /timestamp could not be verified/);
  });

  test('sigstore-js does not look at the TSA certificate\'s EKU (sigil does: src/verify/rfc3161.ts)', async () => {
    const lookAlike = await createPrivateSigstore(join(s.dir, 'eku'), { tlogs: [s.log], timestampAuthorities: [{ trustedRootEntry: () => s.tsa.trustedRootEntry({ eku: 'codeSigning' }) }] });
    const id = lookAlike.issueIdentity(SUBJECT, ISSUER);
    assert.ok(verifier(lookAlike).verify(entity(bundleFor(id, digest, { rekorV2: { log: s.log, kind: 'dsse' }, timestamp: s.tsa })), policy));
  });

  test('a certificate expired at the timestamp\'s time does not verify', () => {
    const past = new Date(Math.floor((Date.now() - 2 * HOUR_MS) / 1000) * 1000);
    const id = s.sigstore.issueIdentity(SUBJECT, ISSUER, { notBefore: past });
    const e = entity(bundleFor(id, digest, { rekorV2: { log: s.log, kind: 'dsse' }, timestamp: s.tsa }));
    assert.throws(() => verifier(s.sigstore).verify(e, policy), (err: Error) => /not valid or expired/.test(String((err.cause as Error | undefined)?.message)));
  });

  test('a changed checkpoint or inclusion path does not verify', () => {
    const id = s.sigstore.issueIdentity(SUBJECT, ISSUER);
    const json = JSON.parse(bundleFor(id, digest, { rekorV2: { log: s.log, kind: 'dsse' }, timestamp: s.tsa }).toString()) as BundleJson;
    const badCheckpoint = structuredClone(json);
    const cp = badCheckpoint.verificationMaterial.tlogEntries[0].inclusionProof.checkpoint;
    cp.envelope = cp.envelope.replace(/\n(\d+)\n/, (_m, n: string) => `\n${Number(n) + 1}\n`);
    assert.throws(() => verifier(s.sigstore).verify(toSignedEntity(bundleFromJSON(badCheckpoint)), policy), /invalid checkpoint signature/);
    const badPath = structuredClone(json);
    badPath.verificationMaterial.tlogEntries[0].inclusionProof.hashes[0] = Buffer.alloc(32).toString('base64');
    assert.throws(() => verifier(s.sigstore).verify(toSignedEntity(bundleFromJSON(badPath)), policy), /calculated root hash does not match/);
  });

  test('the legacy annotation holds cosign\'s JSON; its token is over the raw signature bytes (sigstore-js and openssl agree)', () => {
    const id = s.sigstore.issueIdentity(SUBJECT, ISSUER);
    const layer = legacyLayer(id, digest, { timestamp: s.tsa });
    const annotation = JSON.parse(layer.annotations[ANNOTATION.RFC3161_TIMESTAMP]) as Record<string, string>;
    assert.deepEqual(Object.keys(annotation), ['SignedRFC3161Timestamp']);
    const token = Buffer.from(annotation.SignedRFC3161Timestamp, 'base64');
    const rawSignature = Buffer.from(layer.annotations[ANNOTATION.SIGNATURE], 'base64');
    // sigstore-js: a message-signature bundle carrying the token, with no log entry (thresholds: the timestamp only).
    const bundle = {
      mediaType: 'application/vnd.dev.sigstore.bundle.v0.3+json',
      verificationMaterial: { certificate: { rawBytes: id.certDer.toString('base64') }, tlogEntries: [], timestampVerificationData: { rfc3161Timestamps: [{ signedTimestamp: token.toString('base64') }] } },
      messageSignature: { messageDigest: { algorithm: 'SHA2_256', digest: sha256(layer.payload).slice('sha256:'.length) }, signature: rawSignature.toString('base64') },
    };
    bundle.messageSignature.messageDigest.digest = Buffer.from(bundle.messageSignature.messageDigest.digest, 'hex').toString('base64');
    const signer = verifier(s.sigstore, { tlogThreshold: 0, ctlogThreshold: 1, timestampThreshold: 1 }).verify(toSignedEntity(bundleFromJSON(bundle), layer.payload), policy);
    assert.equal(signer.identity?.subjectAlternativeName, SUBJECT);
    // openssl: the token verifies over exactly those bytes, with the TSA's chain, and not over the base64 text.
    const files = { data: join(s.dir, 'sig.bin'), b64: join(s.dir, 'sig.b64'), tsr: join(s.dir, 'legacy.tsr'), ca: join(s.dir, 'tsa-root.pem'), leaf: join(s.dir, 'tsa-leaf.pem') };
    writeFileSync(files.data, rawSignature);
    writeFileSync(files.b64, layer.annotations[ANNOTATION.SIGNATURE]);
    writeFileSync(files.tsr, token);
    writeFileSync(files.ca, certPem(s.tsa.rootDer));
    writeFileSync(files.leaf, certPem(s.tsa.leafDer));
    const verify = (data: string): string => execFileSync('openssl', ['ts', '-verify', '-in', files.tsr, '-data', data, '-CAfile', files.ca, '-untrusted', files.leaf], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    assert.match(verify(files.data), /Verification: OK/);
    assert.throws(() => verify(files.b64));
  });
});
