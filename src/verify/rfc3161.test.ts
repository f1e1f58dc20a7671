// Signing times from RFC 3161 timestamps, through verifyCandidates: cosign v3 bundles whose
// Rekor v2 entry (inclusion proof, no SET) leaves the time to a timestamp authority, and cosign's
// legacy `dev.sigstore.cosign/rfc3161timestamp` annotation on keyless `.sig` layers. The private
// Rekor v2 log and TSA are checked against @sigstore/verify in test/unit/signer-rekor-v2-tsa.test.ts.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import type { Digest } from '../oci/digest.js';
import { verifyCandidates } from './candidates.js';
import { CHECKPOINT_SIGNATURES_MAX, RFC3161_TIMESTAMPS_MAX, TLOG_ENTRIES_MAX } from './limits.js';
import { loadTrust, type TrustBundle } from './trust.js';
import type { CandidateSignature, Outcome } from './types.js';
import type { PrivateSigstore } from '../../test/helpers/private-sigstore.js';
import { RekorV2Log } from '../../test/helpers/rekor-v2.js';
import { ANNOTATION, bundleFor, generateKey, legacyLayer, preAuthEncoding, type BundleOptions, type KeylessIdentity, type LegacyLayerOptions } from '../../test/helpers/signer.js';
import { rfc3161Annotation, TestTsa } from '../../test/helpers/tsa.js';
import { createTimestampingSigstore, writeCaTsaRoot } from '../../test/helpers/timestamping.js';
import { tempDir } from '../../test/helpers/temp.js';
import { PUBLIC_GOOD_ROOT, keyAuthority, keyless, onlyReason, policy } from '../../test/helpers/verify-fixtures.js';

const ISSUER = 'https://issuer.sigil.test';
const SUBJECT = 'release@acme.test';
const digest = `sha256:${'3f'.repeat(32)}` as Digest;
const HOUR_MS = 3_600_000;
const alicePolicy = policy([keyless(ISSUER, SUBJECT)]);

let dir: string;
let sigstore: PrivateSigstore;
let log: RekorV2Log;
let tsa: TestTsa;
let stranger: TestTsa;
/** The whole private Sigstore: CA, CT log, Rekor v1 and v2, TSA. */
let full: TrustBundle;

before(async () => {
  dir = await tempDir('sigil-rfc3161');
  ({ sigstore, log, tsa, stranger } = await createTimestampingSigstore(dir));
  full = trustOf(sigstore.trustedRootPath);
});

function trustOf(path: string): TrustBundle {
  return loadTrust([path], { publicGoodPath: PUBLIC_GOOD_ROOT });
}

/** A root with the private CA and `timestampAuthorities`, and no log: the signing time can only come from a TSA. */
function caRoot(name: string, timestampAuthorities: unknown[]): TrustBundle {
  return trustOf(writeCaTsaRoot(sigstore, join(dir, `${name}.json`), timestampAuthorities));
}

/** A fresh identity, its certificate valid from `agoMs` ago for 10 minutes. */
const alice = (agoMs = 0): KeylessIdentity => sigstore.issueIdentity(SUBJECT, ISSUER, agoMs === 0 ? {} : { notBefore: new Date(Math.floor((Date.now() - agoMs) / 1000) * 1000) });
/** The same, without an SCT: for the roots that list no CT log. */
const aliceWithoutSct = (): KeylessIdentity => sigstore.issueIdentity(SUBJECT, ISSUER, { sct: false });
const bundle = (signer: KeylessIdentity | ReturnType<typeof generateKey>, opts: BundleOptions): CandidateSignature => ({ format: 'bundle', source: 'referrer 0', bundle: bundleFor(signer, digest, opts) });
const legacy = (signer: KeylessIdentity | ReturnType<typeof generateKey>, opts: LegacyLayerOptions): CandidateSignature => {
  const l = legacyLayer(signer, digest, opts);
  return { format: 'legacy', source: 'layer 0', payload: l.payload, annotations: l.annotations };
};
const signerOf = (o: Outcome): unknown => (o.kind === 'verified' ? o.signer : o);
interface InclusionProofJson { logIndex: string; hashes: string[]; checkpoint: { envelope: string } }
interface TlogEntryJson { logId: { keyId: string }; canonicalizedBody: string; inclusionProof: InclusionProofJson }
interface BundleJson {
  verificationMaterial: { tlogEntries: TlogEntryJson[]; timestampVerificationData: { rfc3161Timestamps: { signedTimestamp: string }[] } };
  dsseEnvelope: { payload: string; payloadType: string };
}
const bundleOf = (json: BundleJson): CandidateSignature => ({ format: 'bundle', source: 'referrer 0', bundle: Buffer.from(JSON.stringify(json)) });
const ALICE = { kind: 'keyless', subject: SUBJECT, issuer: ISSUER };

describe('cosign v3 bundles with a Rekor v2 entry: the signing time comes from the TSA', () => {
  for (const kind of ['dsse', 'hashedrekord'] as const) {
    test(`a ${kind} 0.0.2 entry and a timestamp of a trusted TSA: verified`, () => {
      const out = verifyCandidates([bundle(alice(), { rekorV2: { log, kind }, timestamp: tsa })], { digest }, alicePolicy, full);
      assert.deepEqual(signerOf(out), ALICE);
    });
  }

  test('verified a day later: the certificate is checked at the timestamp, not now', () => {
    const out = verifyCandidates([bundle(alice(), { rekorV2: { log, kind: 'dsse' }, timestamp: tsa })], { digest }, alicePolicy, full, { now: new Date(Date.now() + 24 * HOUR_MS) });
    assert.deepEqual(signerOf(out), ALICE);
  });

  test('no timestamp: denied, no verified signing time', () => {
    const reason = onlyReason(verifyCandidates([bundle(alice(), { rekorV2: { log, kind: 'dsse' } })], { digest }, alicePolicy, full));
    assert.equal(reason, 'no verified signing time: the Rekor entry has an inclusion proof but no SET (as Rekor v2 writes them), so the time must come from an RFC 3161 timestamp, and there is none');
  });

  test('a timestamp of a TSA no trusted root lists: denied, naming it', () => {
    const reason = onlyReason(verifyCandidates([bundle(alice(), { rekorV2: { log, kind: 'dsse' }, timestamp: stranger })], { digest }, alicePolicy, full));
    assert.match(reason, /^the RFC 3161 timestamp is signed by a timestamp authority no trusted root lists \(certificate serial [0-9a-f]+\)$/);
  });

  test('a timestamp outside the certificate\'s validity: denied, with both times', () => {
    const reason = onlyReason(verifyCandidates([bundle(alice(2 * HOUR_MS), { rekorV2: { log, kind: 'dsse' }, timestamp: tsa })], { digest }, alicePolicy, full));
    assert.match(reason, /^the certificate \(valid \S+Z to \S+Z\) is not valid at the time of its RFC 3161 timestamp, \S+Z$/);
  });

  test('more timestamps than RFC3161_TIMESTAMPS_MAX: refused before any is checked', () => {
    const json = JSON.parse(bundleFor(alice(), digest, { rekorV2: { log, kind: 'dsse' }, timestamp: tsa }).toString()) as { verificationMaterial: { timestampVerificationData: { rfc3161Timestamps: unknown[] } } };
    const stamps = json.verificationMaterial.timestampVerificationData.rfc3161Timestamps;
    json.verificationMaterial.timestampVerificationData.rfc3161Timestamps = Array.from({ length: RFC3161_TIMESTAMPS_MAX + 1 }, () => stamps[0]);
    const reason = onlyReason(verifyCandidates([{ format: 'bundle', source: 'referrer 0', bundle: Buffer.from(JSON.stringify(json)) }], { digest }, alicePolicy, full));
    assert.equal(reason, `${RFC3161_TIMESTAMPS_MAX + 1} RFC 3161 timestamps exceed RFC3161_TIMESTAMPS_MAX (${RFC3161_TIMESTAMPS_MAX})`);
  });

  test('more transparency-log entries than TLOG_ENTRIES_MAX: refused before any is checked', () => {
    const json = JSON.parse(bundleFor(alice(), digest, { rekorV2: { log, kind: 'dsse' }, timestamp: tsa }).toString()) as BundleJson;
    const [entry] = json.verificationMaterial.tlogEntries;
    json.verificationMaterial.tlogEntries = Array.from({ length: TLOG_ENTRIES_MAX }, () => entry);
    assert.equal(onlyReason(verifyCandidates([bundleOf(json)], { digest }, alicePolicy, full)), 'transparency log: duplicate tlog entry', 'at the bound, checked');
    json.verificationMaterial.tlogEntries.push(entry);
    assert.equal(onlyReason(verifyCandidates([bundleOf(json)], { digest }, alicePolicy, full)), `${TLOG_ENTRIES_MAX + 1} transparency-log entries exceed TLOG_ENTRIES_MAX (${TLOG_ENTRIES_MAX})`);
  });

  test('a checkpoint with more signature lines than CHECKPOINT_SIGNATURES_MAX: refused before any is checked; other signers\' lines up to it: verified', () => {
    const json = JSON.parse(bundleFor(alice(), digest, { rekorV2: { log, kind: 'dsse' }, timestamp: tsa }).toString()) as BundleJson;
    const checkpoint = json.verificationMaterial.tlogEntries[0].inclusionProof.checkpoint;
    const [note, signatures] = checkpoint.envelope.split('\n\n');
    // Lines that name the log with its key hint but do not verify: sigstore-js checks each of them.
    const line = /^\u2014 (\S+) (\S+)\n/.exec(signatures);
    assert.ok(line);
    const bad = Buffer.from(line[2], 'base64');
    bad[bad.length - 1] ^= 1;
    const forged = (n: number): string => `${note}\n\n${`\u2014 ${line[1]} ${bad.toString('base64')}\n`.repeat(n)}${signatures}`;
    checkpoint.envelope = forged(CHECKPOINT_SIGNATURES_MAX - 1);
    assert.deepEqual(signerOf(verifyCandidates([bundleOf(json)], { digest }, alicePolicy, full)), ALICE);
    checkpoint.envelope = forged(CHECKPOINT_SIGNATURES_MAX);
    assert.equal(
      onlyReason(verifyCandidates([bundleOf(json)], { digest }, alicePolicy, full)),
      `the checkpoint of transparency-log entry 0 has ${CHECKPOINT_SIGNATURES_MAX + 1} signature lines, more than CHECKPOINT_SIGNATURES_MAX (${CHECKPOINT_SIGNATURES_MAX})`,
    );
  });

  test('a timestamp over other bytes than the envelope\'s signature (the payload, the PAE): not over its bytes', () => {
    const json = JSON.parse(bundleFor(alice(), digest, { rekorV2: { log, kind: 'dsse' }, timestamp: tsa }).toString()) as BundleJson;
    const payload = Buffer.from(json.dsseEnvelope.payload, 'base64');
    for (const [what, data] of [['the payload', payload], ['the PAE', preAuthEncoding(json.dsseEnvelope.payloadType, payload)]] as const) {
      json.verificationMaterial.timestampVerificationData.rfc3161Timestamps = [{ signedTimestamp: tsa.timestamp(data).toString('base64') }];
      assert.equal(onlyReason(verifyCandidates([bundleOf(json)], { digest }, alicePolicy, full)), "the RFC 3161 timestamp does not count: it is not over this signature's bytes", what);
    }
  });

  test('a Rekor v2 entry of a log no trusted root lists: not verified', () => {
    const elsewhere = new RekorV2Log('log2.elsewhere.sigil.test');
    const out = verifyCandidates([bundle(alice(), { rekorV2: { log: elsewhere, kind: 'dsse' }, timestamp: tsa })], { digest }, alicePolicy, full);
    assert.equal(onlyReason(out), 'Rekor inclusion proof: invalid checkpoint signature');
  });

  test('a Rekor v2 entry naming the trusted log, its checkpoint signed by another key: not verified', () => {
    const lookalike = new RekorV2Log(log.origin);
    const json = JSON.parse(bundleFor(alice(), digest, { rekorV2: { log: lookalike, kind: 'dsse' }, timestamp: tsa }).toString()) as BundleJson;
    json.verificationMaterial.tlogEntries[0].logId = { keyId: log.logId.toString('base64') };
    assert.equal(onlyReason(verifyCandidates([bundleOf(json)], { digest }, alicePolicy, full)), 'Rekor inclusion proof: invalid checkpoint signature');
  });

  test('a Rekor v2 inclusion proof that does not lead to the checkpoint\'s signed root, or is for another entry: not verified', () => {
    const tampered = (change: (proof: InclusionProofJson, entry: TlogEntryJson) => void): string => {
      log.append('dsse', { signature: Buffer.alloc(64, 1), signed: Buffer.from('another entry'), verifier: { publicKey: generateKey('p256').publicKey } });
      const json = JSON.parse(bundleFor(alice(), digest, { rekorV2: { log, kind: 'dsse' }, timestamp: tsa }).toString()) as BundleJson;
      const entry = json.verificationMaterial.tlogEntries[0];
      change(entry.inclusionProof, entry);
      return onlyReason(verifyCandidates([bundleOf(json)], { digest }, alicePolicy, full));
    };
    const flip = (b64: string): string => { const b = Buffer.from(b64, 'base64'); b[0] ^= 1; return b.toString('base64'); };
    assert.match(tampered((p) => { p.hashes[0] = flip(p.hashes[0]); }), /^Rekor inclusion proof: /);
    assert.match(tampered((p) => { p.logIndex = String(Number(p.logIndex) - 1); }), /^Rekor inclusion proof: /);
    assert.match(tampered((p, e) => { e.canonicalizedBody = Buffer.from(log.append('dsse', { signature: Buffer.alloc(64, 2), signed: Buffer.from('x'), verifier: { publicKey: generateKey('p256').publicKey } }).body).toString('base64'); }), /^Rekor/);
  });

  test('a key-signed bundle with a Rekor v2 entry: verified under tlog: require', () => {
    const key = generateKey('p256');
    const out = verifyCandidates([bundle(key, { rekorV2: { log, kind: 'dsse' } })], { digest }, policy([keyAuthority(key.publicPem, 'require')]), full);
    assert.deepEqual(signerOf(out), { kind: 'key', keyId: key.keyId });
  });
});

describe('cosign\'s legacy rfc3161timestamp annotation on keyless .sig layers', () => {
  let caAndTsa: TrustBundle;
  before(() => {
    caAndTsa = caRoot('ca-tsa', [tsa.trustedRootEntry()]);
  });
  const later = { now: new Date(Date.now() + 24 * HOUR_MS) };

  test('no Rekor bundle: the timestamp is the verified time (a day later the certificate still verifies); without it, now is', () => {
    assert.deepEqual(signerOf(verifyCandidates([legacy(aliceWithoutSct(), { timestamp: tsa })], { digest }, alicePolicy, caAndTsa, later)), ALICE);
    const reason = onlyReason(verifyCandidates([legacy(aliceWithoutSct(), {})], { digest }, alicePolicy, caAndTsa, later));
    assert.match(reason, /not valid or expired/);
  });

  test('with a Rekor SET too: both times are checked, and an untrusted TSA fails it although the SET alone would do', () => {
    assert.deepEqual(signerOf(verifyCandidates([legacy(alice(), { rekor: sigstore, timestamp: tsa })], { digest }, alicePolicy, full)), ALICE);
    const reason = onlyReason(verifyCandidates([legacy(alice(), { rekor: sigstore, timestamp: stranger })], { digest }, alicePolicy, full));
    assert.match(reason, /^the RFC 3161 timestamp is signed by a timestamp authority no trusted root lists/);
  });

  test('no Rekor bundle under a root that lists logs: the timestamp does not replace the log entry', () => {
    const reason = onlyReason(verifyCandidates([legacy(alice(), { timestamp: tsa })], { digest }, alicePolicy, full));
    assert.equal(reason, 'transparency log: expected 1 tlog entries, got 0');
  });

  test('the timestamp must be over exactly this signature\'s bytes', () => {
    const mine = legacyLayer(aliceWithoutSct(), digest, {});
    const other = legacyLayer(aliceWithoutSct(), digest, { timestamp: tsa });
    const annotations = { ...mine.annotations, [ANNOTATION.RFC3161_TIMESTAMP]: other.annotations[ANNOTATION.RFC3161_TIMESTAMP] };
    const reason = onlyReason(verifyCandidates([{ format: 'legacy', source: 'layer 0', payload: mine.payload, annotations }], { digest }, alicePolicy, caAndTsa));
    assert.equal(reason, "the RFC 3161 timestamp does not count: it is not over this signature's bytes");
  });

  test('the trusted roots list no TSA: fails closed', () => {
    const reason = onlyReason(verifyCandidates([legacy(aliceWithoutSct(), { timestamp: tsa })], { digest }, alicePolicy, caRoot('ca-only', [])));
    assert.equal(reason, 'an RFC 3161 timestamp, but no trusted root lists a timestamp authority');
  });

  test('the TSA\'s window in the trusted root has ended: fails, naming the window', () => {
    const ended = { start: new Date('2020-01-01T00:00:00Z'), end: new Date(Date.now() - HOUR_MS) };
    const reason = onlyReason(verifyCandidates([legacy(aliceWithoutSct(), { timestamp: tsa })], { digest }, alicePolicy, caRoot('tsa-ended', [tsa.trustedRootEntry({ validFor: ended })])));
    assert.match(reason, new RegExp(`is outside the validity of its timestamp authority in the trusted roots \\(2020-01-01T00:00:00.000Z to ${ended.end.toISOString()}\\)$`));
  });

  test('a TSA certificate without the timeStamping EKU does not count', () => {
    const reason = onlyReason(verifyCandidates([legacy(aliceWithoutSct(), { timestamp: tsa })], { digest }, alicePolicy, caRoot('eku', [tsa.trustedRootEntry({ eku: 'codeSigning' })])));
    assert.equal(reason, "the RFC 3161 timestamp does not count: its timestamp authority's certificate lacks the critical timeStamping extended key usage (RFC 3161 2.3)");
  });

  test('a TSA certificate with another EKU beside timeStamping, or with timeStamping not critical, does not count', () => {
    for (const eku of ['timeStampingAndCodeSigning', 'timeStampingNotCritical'] as const) {
      const reason = onlyReason(verifyCandidates([legacy(aliceWithoutSct(), { timestamp: tsa })], { digest }, alicePolicy, caRoot(eku, [tsa.trustedRootEntry({ eku })])));
      assert.equal(reason, "the RFC 3161 timestamp does not count: its timestamp authority's certificate lacks the critical timeStamping extended key usage (RFC 3161 2.3)", eku);
    }
  });

  test('a TSA certificate that expired before the timestamp: its chain is not valid at that time', () => {
    const expired = new TestTsa(join(dir, 'expired-tsa'), 'expired-tsa', { notAfter: new Date(Date.now() - HOUR_MS) });
    const reason = onlyReason(verifyCandidates([legacy(aliceWithoutSct(), { timestamp: expired })], { digest }, alicePolicy, caRoot('expired-tsa', [expired.trustedRootEntry()])));
    assert.match(reason, /^the RFC 3161 timestamp does not count: its timestamp authority's certificate chain is not valid at its time \S+Z$/);
  });

  test('a TSA listed with a chain whose root did not issue its certificate: not verified', () => {
    const entry = tsa.trustedRootEntry() as { certChain: { certificates: { rawBytes: string }[] } };
    entry.certChain.certificates[1] = { rawBytes: stranger.rootDer.toString('base64') };
    const out = verifyCandidates([legacy(aliceWithoutSct(), { timestamp: tsa })], { digest }, alicePolicy, caRoot('unlinked', [entry]));
    assert.equal(out.kind, 'invalid');
    assert.match(onlyReason(out), /timestamp/);
  });

  test('a timestamp over other bytes than the raw signature (its base64 text, the payload) is not over its bytes', () => {
    const l = legacyLayer(aliceWithoutSct(), digest, {});
    const b64 = l.annotations[ANNOTATION.SIGNATURE];
    for (const [what, data] of [['the base64 text', Buffer.from(b64, 'utf8')], ['the payload', l.payload]] as const) {
      const annotations = { ...l.annotations, [ANNOTATION.RFC3161_TIMESTAMP]: rfc3161Annotation(tsa.timestamp(data)) };
      const reason = onlyReason(verifyCandidates([{ format: 'legacy', source: 'layer 0', payload: l.payload, annotations }], { digest }, alicePolicy, caAndTsa));
      assert.equal(reason, "the RFC 3161 timestamp does not count: it is not over this signature's bytes", what);
    }
  });

  test('a malformed annotation fails the signature even when its Rekor SET alone would verify it', () => {
    const l = legacyLayer(alice(), digest, { rekor: sigstore });
    const token = tsa.timestamp(Buffer.from(l.annotations[ANNOTATION.SIGNATURE], 'base64'));
    const check = (annotation: string | undefined): Outcome =>
      verifyCandidates([{ format: 'legacy', source: 'layer 0', payload: l.payload, annotations: { ...l.annotations, ...(annotation === undefined ? {} : { [ANNOTATION.RFC3161_TIMESTAMP]: annotation }) } }], { digest }, alicePolicy, full);
    assert.deepEqual(signerOf(check(undefined)), ALICE);
    assert.deepEqual(signerOf(check(rfc3161Annotation(token))), ALICE);
    for (const bad of ['null', '[]', '{}', 'not json', JSON.stringify({ SignedRFC3161Timestamp: '' }), rfc3161Annotation(token.subarray(0, token.length - 1)), rfc3161Annotation(Buffer.concat([token, Buffer.from([0])]))]) {
      const out = check(bad);
      assert.equal(out.kind, 'invalid', bad);
      assert.match(onlyReason(out), /^dev\.sigstore\.cosign\/rfc3161timestamp: |^the RFC 3161 timestamp /, bad);
    }
  });

  test('a malformed annotation is the reason', () => {
    const l = legacyLayer(aliceWithoutSct(), digest, {});
    const reasonOf = (value: string): string =>
      onlyReason(verifyCandidates([{ format: 'legacy', source: 'layer 0', payload: l.payload, annotations: { ...l.annotations, [ANNOTATION.RFC3161_TIMESTAMP]: value } }], { digest }, alicePolicy, caAndTsa));
    assert.equal(reasonOf('{"SignedRFC3161Timestamp": 3}'), 'dev.sigstore.cosign/rfc3161timestamp: no base64 SignedRFC3161Timestamp in it');
    assert.match(reasonOf(JSON.stringify({ SignedRFC3161Timestamp: Buffer.from('not DER').toString('base64') })), /^dev\.sigstore\.cosign\/rfc3161timestamp: the RFC 3161 timestamp does not parse: /);
  });

  test('key signatures leave it aside: a key has no validity window to check', () => {
    const key = generateKey('p256');
    const out = verifyCandidates([legacy(key, { timestamp: stranger })], { digest }, policy([keyAuthority(key.publicPem, 'ignore')]), full);
    assert.deepEqual(signerOf(out), { kind: 'key', keyId: key.keyId });
  });
});
