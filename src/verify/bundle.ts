/**
 * Sigstore bundles (what cosign v3 attaches as OCI 1.1 referrers): a DSSE
 * envelope holding an in-toto statement, a certificate or key hint, and
 * transparency-log / timestamp evidence. `prepareBundle` parses and binds once
 * per candidate; `verifyBundle` runs one authority and returns the signer or
 * throws the reason.
 */
import { bundleFromJSON, type Bundle } from '@sigstore/bundle';
import { X509Certificate } from '@sigstore/core';
import { toSignedEntity, type SignedEntity } from '@sigstore/verify';
import type { Authority, Policy } from '../config/types.js';
import { attestedStatement, statementBindingProblem, type AttestedStatement } from './binding.js';
import { certificateIdentity, matchIdentity } from './identity.js';
import type { PublicKey } from './key-signature.js';
import { BUNDLE_MAX_BYTES, CERT_CHAIN_MAX_LENGTH, CHECKPOINT_SIGNATURES_MAX, RFC3161_TIMESTAMPS_MAX, TLOG_ENTRIES_MAX } from './limits.js';
import { requireSignatureBy } from './precheck.js';
import { dsseSignatureContent, verifyCertificateEntity, verifyKeyEntity } from './sigstore-run.js';
import type { TrustBundle } from './trust.js';
import type { CandidateSignature, Signer, Subject } from './types.js';
import { parseJson } from '../oci/json.js';

type BundleCandidate = Extract<CandidateSignature, { format: 'bundle' }>;

/** A bundle whose statement binds to the served digest, ready for every authority. */
export interface PreparedBundle {
  readonly entity: SignedEntity;
  /** The signing certificate, for certificate-signed bundles. */
  readonly certificate?: X509Certificate;
  /** The key hint of a key-signed bundle: it only orders the attempts. */
  readonly keyHint?: string;
}

function certificatesOf(bundle: Bundle): Uint8Array[] {
  const content = bundle.verificationMaterial.content;
  switch (content.$case) {
    case 'x509CertificateChain':
      return content.x509CertificateChain.certificates.map((c) => c.rawBytes);
    case 'certificate':
      return [content.certificate.rawBytes];
    case 'publicKey':
      return [];
  }
}

/** A signed note's signature lines, as sigstore-js finds them (after the blank line, "— <name> <base64>"). */
const NOTE_SIGNATURE_LINE = /\u2014 \S+ \S+\n/g;

/** Why the bundle's log entries would cost too much to check, or undefined. */
function tlogCostProblem(bundle: Bundle): string | undefined {
  const entries = bundle.verificationMaterial.tlogEntries;
  if (entries.length > TLOG_ENTRIES_MAX) return `${entries.length} transparency-log entries exceed TLOG_ENTRIES_MAX (${TLOG_ENTRIES_MAX})`;
  for (const [i, entry] of entries.entries()) {
    const note = entry.inclusionProof?.checkpoint?.envelope ?? '';
    const lines = note.slice(note.indexOf('\n\n') + 1).match(NOTE_SIGNATURE_LINE)?.length ?? 0;
    if (lines > CHECKPOINT_SIGNATURES_MAX) return `the checkpoint of transparency-log entry ${i} has ${lines} signature lines, more than CHECKPOINT_SIGNATURES_MAX (${CHECKPOINT_SIGNATURES_MAX})`;
  }
  return undefined;
}

type Envelope = Extract<Bundle['content'], { $case: 'dsseEnvelope' }>['dsseEnvelope'];

/** The bundle parsed, with its DSSE envelope; `notDsse` is the reason when it holds something else. */
function openBundle(c: BundleCandidate, notDsse: string): { bundle: Bundle; envelope: Envelope } | string {
  if (c.bundle.length > BUNDLE_MAX_BYTES) return `bundle of ${c.bundle.length} bytes exceeds BUNDLE_MAX_BYTES (${BUNDLE_MAX_BYTES})`;
  let bundle: Bundle;
  try {
    bundle = bundleFromJSON(parseJson(c.bundle, 'the bundle'));
  } catch (e) {
    return `not a valid Sigstore bundle: ${(e as Error).message}`;
  }
  if (bundle.content.$case !== 'dsseEnvelope') return `bundle holds a ${bundle.content.$case}, not a DSSE in-toto statement${notDsse}`;
  return { bundle, envelope: bundle.content.dsseEnvelope };
}

/** The signed entity of an opened bundle, ready for every authority. */
function ready(bundle: Bundle, envelope: Envelope): PreparedBundle | string {
  const certs = certificatesOf(bundle);
  if (certs.length > CERT_CHAIN_MAX_LENGTH) return `${certs.length} certificates exceed CERT_CHAIN_MAX_LENGTH (${CERT_CHAIN_MAX_LENGTH})`;
  const stamps = bundle.verificationMaterial.timestampVerificationData?.rfc3161Timestamps.length ?? 0;
  if (stamps > RFC3161_TIMESTAMPS_MAX) return `${stamps} RFC 3161 timestamps exceed RFC3161_TIMESTAMPS_MAX (${RFC3161_TIMESTAMPS_MAX})`;
  const tlogCost = tlogCostProblem(bundle);
  if (tlogCost !== undefined) return tlogCost;

  const entity = toSignedEntity(bundle);
  const wrapped: SignedEntity = { ...entity, signature: dsseSignatureContent(entity.signature, envelope.payloadType, envelope.payload) };
  const key = entity.key;
  return key.$case === 'certificate' ? { entity: wrapped, certificate: key.certificate } : { entity: wrapped, keyHint: key.hint };
}

/** Checks size, structure and binding; returns the reason the candidate cannot count, or the prepared bundle. */
export function prepareBundle(c: BundleCandidate, subject: Subject, policy: Policy): PreparedBundle | string {
  // A message signature names no predicate type, and the contract counts a bundle only by its predicate type.
  const opened = openBundle(c, " with one of the policy's predicateTypes");
  if (typeof opened === 'string') return opened;
  const { bundle, envelope } = opened;
  const binding = statementBindingProblem(envelope.payloadType, envelope.payload, subject.digest, policy);
  if (binding !== undefined) return binding;
  return ready(bundle, envelope);
}

/** A bundle attesting the served digest: its statement, and the bundle ready for every authority. */
export function prepareBundleAttestation(c: BundleCandidate, subject: Subject): { prepared: PreparedBundle; attested: AttestedStatement } | string {
  const opened = openBundle(c, '');
  if (typeof opened === 'string') return opened;
  const { bundle, envelope } = opened;
  const attested = attestedStatement(envelope.payloadType, envelope.payload, subject.digest);
  if (typeof attested === 'string') return attested;
  const prepared = ready(bundle, envelope);
  return typeof prepared === 'string' ? prepared : { prepared, attested };
}

/**
 * Verifies a prepared bundle with one authority; returns the signer or throws
 * an Error whose message is the reason. A key authority also accepts a
 * certificate-signed bundle whose certificate holds exactly its key (cosign
 * --key on such a bundle), then verified as a key signature.
 */
export function verifyBundle(p: PreparedBundle, authority: Authority, key: PublicKey | undefined, trust: TrustBundle, now: Date): Signer {
  if (authority.kind === 'key') {
    if (key === undefined) throw new Error(`key ${authority.source} is not usable`);
    if (p.certificate !== undefined && !p.certificate.publicKey.equals(key.spki)) {
      throw new Error(`bundle is signed by a certificate whose key is not ${key.keyId}`);
    }
    requireSignatureBy(p.entity, key.key, `key ${key.keyId}`);
    verifyKeyEntity(p.entity, key, trust, authority.tlog);
    return { kind: 'key', keyId: key.keyId };
  }
  if (p.certificate === undefined) throw new Error('bundle is signed by a key, not a certificate: a keyless authority needs one');
  const identity = matchIdentity(authority, certificateIdentity(p.certificate));
  if (!identity.ok) throw new Error(identity.reason);
  requireSignatureBy(p.entity, p.certificate.publicKey, "the certificate's key");
  verifyCertificateEntity(p.entity, trust, now);
  return { kind: 'keyless', subject: identity.subject, issuer: identity.issuer };
}
