/**
 * Running @sigstore/verify's Verifier over a SignedEntity: the signature
 * content sigil supplies (so every key scheme cosign writes verifies), the
 * thresholds each kind of signer needs, and readable reasons from its errors.
 */
import { createHash, timingSafeEqual, type KeyObject } from 'node:crypto';
import { dsse, type X509Certificate } from '@sigstore/core';
import type { TransparencyLogEntry } from '@sigstore/bundle';
import { Verifier, type SignedEntity, type TrustMaterial } from '@sigstore/verify';
import type { TlogMode } from '../config/types.js';
import { verifyWithKey, type PublicKey } from './key-signature.js';
import { tsaTime } from './rfc3161.js';
import type { CaProfile, TrustBundle } from './trust.js';

type SignatureContent = SignedEntity['signature'];

function equal(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

/**
 * A signature over raw payload bytes (cosign's legacy layer). `hash` is the
 * algorithm the Rekor entry recorded the payload digest with.
 */
export function payloadSignatureContent(payload: Buffer, signature: Buffer, hash = 'sha256'): SignatureContent {
  const digest = (): Buffer => createHash(hash).update(payload).digest();
  return {
    signature,
    compareSignature: (sig) => equal(sig, signature),
    compareDigest: (d) => equal(d, digest()),
    compareSignedDigest: (d) => equal(d, digest()),
    verifySignature: (key: KeyObject) => verifyWithKey(key, payload, signature),
  };
}

/**
 * A DSSE envelope's content whose signature check accepts every scheme cosign
 * writes (sigstore-js verifies with node's default hash for the key: SHA-256
 * for P-384 keys, pure Ed25519 only).
 */
export function dsseSignatureContent(inner: SignatureContent, payloadType: string, payload: Buffer): SignatureContent {
  const pae = dsse.preAuthEncoding(payloadType, payload);
  return {
    signature: inner.signature,
    compareSignature: (sig) => inner.compareSignature(sig),
    compareDigest: (d) => inner.compareDigest(d),
    compareSignedDigest: (d) => inner.compareSignedDigest(d),
    verifySignature: (key: KeyObject) => verifyWithKey(key, pae, inner.signature),
  };
}

/**
 * A DSSE envelope's one signature over its pre-authentication encoding (cosign's `.att` layer):
 * the signature and the payload digest that a Rekor intoto entry records, and the check with
 * every scheme cosign writes.
 */
export function envelopeSignatureContent(payloadType: string, payload: Buffer, signature: Buffer): SignatureContent {
  const pae = dsse.preAuthEncoding(payloadType, payload);
  const digest = (): Buffer => createHash('sha256').update(payload).digest();
  return {
    signature,
    compareSignature: (sig) => equal(sig, signature),
    compareDigest: (d) => equal(d, digest()),
    compareSignedDigest: (d) => equal(d, digest()),
    verifySignature: (key: KeyObject) => verifyWithKey(key, pae, signature),
  };
}

/** What a sigstore-js error code is about, to prefix its terse message ("signature mismatch"). */
const ERROR_CONTEXT: Readonly<Record<string, string>> = {
  TLOG_BODY_ERROR: 'Rekor entry',
  TLOG_INCLUSION_PROMISE_ERROR: 'Rekor SET',
  TLOG_INCLUSION_PROOF_ERROR: 'Rekor inclusion proof',
  TLOG_MISSING_INCLUSION_ERROR: 'Rekor entry',
  TLOG_ERROR: 'transparency log',
  CERTIFICATE_ERROR: 'certificate',
  TIMESTAMP_ERROR: 'timestamps',
  PUBLIC_KEY_ERROR: 'public key',
  UNTRUSTED_SIGNER_ERROR: 'signer',
};

/** The reason text of a sigstore-js (or any) error: context, message and cause. */
export function describeError(e: unknown): string {
  if (!(e instanceof Error)) return String(e);
  const code = (e as { code?: unknown }).code;
  const context = typeof code === 'string' ? ERROR_CONTEXT[code] : undefined;
  const cause = (e as { cause?: unknown }).cause;
  const message = cause instanceof Error && cause.message !== e.message ? `${e.message}: ${cause.message}` : e.message;
  return context === undefined ? message : `${context}: ${message}`;
}

function isSignatureError(e: unknown): boolean {
  return e instanceof Error && (e as { code?: unknown }).code === 'SIGNATURE_ERROR';
}

/**
 * The times the entity's RFC 3161 timestamps vouch for, each checked against the trusted roots'
 * timestamp authorities with its own reason (rfc3161.ts); the Verifier checks them again.
 */
function tsaTimes(entity: SignedEntity, trust: TrustBundle): Date[] {
  const authorities = trust.material.timestampAuthorities;
  return entity.timestamps.flatMap((t) => (t.$case === 'timestamp-authority' ? [tsaTime(t.timestamp, entity.signature.signature, authorities)] : []));
}

/** A Rekor v2 entry (inclusion proof, no SET) is no signing time: only a SET or a TSA gives one. */
const NO_SIGNING_TIME =
  'no verified signing time: the Rekor entry has an inclusion proof but no SET (as Rekor v2 writes them), so the time must come from an RFC 3161 timestamp, and there is none';

function hasSigningTime(entity: SignedEntity): boolean {
  return entity.timestamps.some((t) => t.$case === 'timestamp-authority' || t.tlogEntry.inclusionPromise !== undefined);
}

/**
 * Verifies an entity signed with a configured key. With `tlog: require` one
 * transparency-log entry must verify against the trusted logs; with
 * `ignore` the entity's log entries and timestamps are dropped, not checked.
 * Throws an Error with the reason.
 */
export function verifyKeyEntity(entity: SignedEntity, key: PublicKey, trust: TrustBundle, tlog: TlogMode): void {
  const material: TrustMaterial = { ...trust.material, publicKey: () => ({ publicKey: key.key, validFor: () => true }) };
  const subject: SignedEntity =
    tlog === 'require' ? { ...entity, key: { $case: 'public-key', hint: key.keyId } } : { ...entity, key: { $case: 'public-key', hint: key.keyId }, tlogEntries: [], timestamps: [] };
  if (tlog === 'require' && subject.tlogEntries.length === 0) throw new Error('no Rekor entry and tlog: require');
  tsaTimes(subject, trust);
  try {
    new Verifier(material, { tlogThreshold: tlog === 'require' ? 1 : 0, ctlogThreshold: 0, timestampThreshold: 0 }).verify(subject);
  } catch (e) {
    throw new Error(isSignatureError(e) ? `signature does not verify with key ${key.keyId}` : describeError(e));
  }
}

/** A stand-in timestamp so the certificate chain is checked at `when` (see verifyCertificateEntity). */
function verificationTime(when: Date): SignedEntity['timestamps'][number] {
  const stamp: TransparencyLogEntry = {
    logIndex: '0',
    logId: { keyId: Buffer.alloc(0) },
    kindVersion: { kind: 'sigil-verification-time', version: '0' },
    integratedTime: String(Math.floor(when.getTime() / 1000)),
    inclusionPromise: { signedEntryTimestamp: Buffer.alloc(0) },
    inclusionProof: undefined,
    canonicalizedBody: Buffer.alloc(0),
  };
  return { $case: 'transparency-log', tlogEntry: stamp };
}

/** Whether a certificate of the profile's CAs signed `leaf` (sigstore-js builds paths from trusted certificates only). */
function issues(profile: CaProfile, leaf: X509Certificate): boolean {
  return profile.material.certificateAuthorities.some((ca) =>
    ca.certChain.some((c) => {
      try {
        return c.subject.equals(leaf.issuer) && leaf.verify(c);
      } catch {
        return false;
      }
    }),
  );
}

/**
 * Verifies an entity signed with a certificate: chain to a trusted CA at the
 * time of every verified timestamp, SCTs, log entries and the signature, all
 * by @sigstore/verify, under the thresholds of the CA profile whose
 * certificate issued the leaf (see CaProfile). For a profile that requires no
 * log, an entity without any timestamp is checked at `now`, as cosign does
 * for a private PKI: sigstore-js has no option for that and, with no
 * timestamp, fails with a TypeError; the stand-in entry only feeds `now` to
 * the chain check (it is in `timestamps`, not in `tlogEntries`, so no log
 * verification is skipped), and if sigstore-js ever verified such stand-ins
 * the check would fail, not pass. A profile that requires a log requires a
 * verified time too (a SET or an RFC 3161 timestamp): a Rekor v2 entry alone
 * gives none. RFC 3161 timestamps and the certificate's validity at their time
 * are checked first, for their reasons. Throws an Error with the reason.
 */
export function verifyCertificateEntity(entity: SignedEntity, trust: TrustBundle, now: Date): void {
  if (entity.key.$case !== 'certificate') throw new TypeError('verifyCertificateEntity needs a certificate-signed entity');
  const leaf = entity.key.certificate;
  const profiles = trust.caProfiles.filter((p) => issues(p, leaf));
  if (profiles.length === 0) throw new Error('the certificate is not issued by a certificate authority of the trusted roots');
  for (const time of tsaTimes(entity, trust)) {
    if (!leaf.validForDate(time)) {
      throw new Error(`the certificate (valid ${leaf.notBefore.toISOString()} to ${leaf.notAfter.toISOString()}) is not valid at the time of its RFC 3161 timestamp, ${time.toISOString()}`);
    }
  }
  const reasons: string[] = [];
  for (const profile of profiles) {
    const required = profile.requireTlog ? 1 : 0;
    if (required > 0 && entity.tlogEntries.length > 0 && !hasSigningTime(entity)) {
      reasons.push(NO_SIGNING_TIME);
      continue;
    }
    const subject = !profile.requireTlog && entity.timestamps.length === 0 ? { ...entity, timestamps: [verificationTime(now)] } : entity;
    try {
      new Verifier(profile.material, { ctlogThreshold: profile.requireSct ? 1 : 0, tlogThreshold: required, timestampThreshold: required }).verify(subject);
      return;
    } catch (e) {
      reasons.push(isSignatureError(e) ? "signature does not verify with the certificate's key" : describeError(e));
    }
  }
  throw new Error(reasons.join('; '));
}
