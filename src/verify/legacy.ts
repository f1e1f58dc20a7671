/**
 * cosign's legacy signature layout (`sha256-<hex>.sig`): the layer blob is
 * the simple-signing payload, the layer annotations carry the base64
 * signature, the Fulcio certificate and chain, the Rekor SET bundle and an
 * RFC 3161 timestamp over the signature bytes (`cosign sign
 * --timestamp-server-url`). `prepareLegacy` checks limits and binding once per
 * candidate; `verifyLegacy` runs one authority and returns the signer or throws
 * the reason.
 */
import { X509Certificate, type RFC3161Timestamp } from '@sigstore/core';
import type { SignedEntity } from '@sigstore/verify';
import type { Authority, Policy } from '../config/types.js';
import { legacyBindingProblem } from './binding.js';
import { certificateIdentity, matchIdentity } from './identity.js';
import type { PublicKey } from './key-signature.js';
import { ANNOTATION_MAX_BYTES, CERT_CHAIN_MAX_LENGTH, LEGACY_PAYLOAD_MAX_BYTES } from './limits.js';
import { parseRekorBundleAnnotation, rekorKeyProblem, type LegacyRekorEntry } from './rekor-entry.js';
import { parseTimestampAnnotation, RFC3161_TIMESTAMP_ANNOTATION } from './rfc3161.js';
import { requireSignatureBy } from './precheck.js';
import { payloadSignatureContent, verifyCertificateEntity, verifyKeyEntity } from './sigstore-run.js';
import type { TrustBundle } from './trust.js';
import type { CandidateSignature, Signer, Subject } from './types.js';

export const SIGNATURE_ANNOTATION = 'dev.cosignproject.cosign/signature';
export const CERTIFICATE_ANNOTATION = 'dev.sigstore.cosign/certificate';
export const CHAIN_ANNOTATION = 'dev.sigstore.cosign/chain';
export const REKOR_BUNDLE_ANNOTATION = 'dev.sigstore.cosign/bundle';
const BASE64_WRAPPED = /^[A-Za-z0-9+/\r\n]+={0,2}\s*$/;
const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----/g;

type LegacyCandidate = Extract<CandidateSignature, { format: 'legacy' }>;

/** A legacy candidate whose payload binds to the served digest, parsed once for every authority. */
export interface PreparedLegacy {
  readonly payload: Buffer;
  readonly signature: Buffer;
  /** What the signature is over when it is not the payload itself: a `.att` envelope's DSSE encoding. */
  readonly content?: SignedEntity['signature'];
  readonly certificate?: X509Certificate;
  /** The parsed Rekor entry, or why the annotation did not parse, or undefined when absent. */
  readonly rekor?: LegacyRekorEntry | Error;
  /** The RFC 3161 timestamp annotation, parsed, or why it did not parse, or undefined when absent. */
  readonly timestamp?: RFC3161Timestamp | Error;
}

/** An optional annotation parsed; its error is kept, to be the reason only where it is used. */
function parsedAnnotation<T>(text: string | undefined, parse: (text: string) => T): T | Error | undefined {
  if (text === undefined || text === '') return undefined;
  try {
    return parse(text);
  } catch (e) {
    return e as Error;
  }
}

/** Why a layer's annotations are too large to read, or undefined. */
export function oversizedAnnotation(annotations: Readonly<Record<string, string>>): string | undefined {
  for (const [name, value] of Object.entries(annotations)) {
    if (Buffer.byteLength(value) > ANNOTATION_MAX_BYTES) return `annotation ${name} exceeds ANNOTATION_MAX_BYTES (${ANNOTATION_MAX_BYTES})`;
  }
  return undefined;
}

/**
 * The signer's evidence in a layer's annotations (`.sig` and `.att` alike): the certificate, with
 * its chain counted, the Rekor entry (parsed by `parseRekor`) and the RFC 3161 timestamp, each
 * parsed or why it does not parse.
 * Returns why the evidence cannot be read at all.
 */
export function annotatedEvidence(
  annotations: Readonly<Record<string, string>>,
  parseRekor: (annotation: string) => LegacyRekorEntry,
): Pick<PreparedLegacy, 'certificate' | 'rekor' | 'timestamp'> | string {
  const certPem = annotations[CERTIFICATE_ANNOTATION];
  const chainPem = annotations[CHAIN_ANNOTATION] ?? '';
  let certificate: X509Certificate | undefined;
  if (certPem !== undefined && certPem !== '') {
    const count = (certPem.match(PEM_CERTIFICATE)?.length ?? 0) + (chainPem.match(PEM_CERTIFICATE)?.length ?? 0);
    if (count > CERT_CHAIN_MAX_LENGTH) return `${count} certificates exceed CERT_CHAIN_MAX_LENGTH (${CERT_CHAIN_MAX_LENGTH})`;
    try {
      certificate = X509Certificate.parse(certPem);
    } catch (e) {
      return `${CERTIFICATE_ANNOTATION} is not a PEM certificate: ${(e as Error).message}`;
    }
  }
  const rekor = parsedAnnotation(annotations[REKOR_BUNDLE_ANNOTATION], parseRekor);
  const timestamp = parsedAnnotation(annotations[RFC3161_TIMESTAMP_ANNOTATION], parseTimestampAnnotation);
  return { certificate, rekor, timestamp };
}

/** Checks limits, decoding and binding; returns the reason the candidate cannot count, or the parsed candidate. */
export function prepareLegacy(c: LegacyCandidate, subject: Subject, policy: Policy): PreparedLegacy | string {
  if (c.payload.length > LEGACY_PAYLOAD_MAX_BYTES) {
    return `payload of ${c.payload.length} bytes exceeds LEGACY_PAYLOAD_MAX_BYTES (${LEGACY_PAYLOAD_MAX_BYTES})`;
  }
  const oversized = oversizedAnnotation(c.annotations);
  if (oversized !== undefined) return oversized;
  const b64 = c.annotations[SIGNATURE_ANNOTATION];
  if (b64 === undefined || b64 === '') return `no ${SIGNATURE_ANNOTATION} annotation`;
  if (!BASE64_WRAPPED.test(b64)) return `${SIGNATURE_ANNOTATION} is not base64`;
  const binding = legacyBindingProblem(c.payload, subject.digest, policy);
  if (binding !== undefined) return binding;
  const evidence = annotatedEvidence(c.annotations, parseRekorBundleAnnotation);
  if (typeof evidence === 'string') return evidence;
  return { payload: c.payload, signature: Buffer.from(b64, 'base64'), ...evidence };
}

function entityOf(p: PreparedLegacy, rekor: LegacyRekorEntry | undefined, key: SignedEntity['key'], timestamp?: RFC3161Timestamp): SignedEntity {
  const timestamps: SignedEntity['timestamps'] = rekor === undefined ? [] : [{ $case: 'transparency-log', tlogEntry: rekor.entry }];
  if (timestamp !== undefined) timestamps.push({ $case: 'timestamp-authority', timestamp });
  return {
    signature: p.content ?? payloadSignatureContent(p.payload, p.signature, rekor?.hash),
    key,
    tlogEntries: rekor === undefined ? [] : [rekor.entry],
    timestamps,
  };
}

function usableRekor(p: PreparedLegacy): LegacyRekorEntry | undefined {
  if (p.rekor instanceof Error) throw new Error(`${REKOR_BUNDLE_ANNOTATION}: ${p.rekor.message}`);
  return p.rekor;
}

/** The timestamp annotation of a keyless signature: one that does not parse fails it (fail closed). */
function usableTimestamp(p: PreparedLegacy): RFC3161Timestamp | undefined {
  if (p.timestamp instanceof Error) throw new Error(`${RFC3161_TIMESTAMP_ANNOTATION}: ${p.timestamp.message}`);
  return p.timestamp;
}

/**
 * Verifies a prepared legacy candidate (or `.att` envelope, envelope.ts) with one authority;
 * returns the signer or throws an Error whose message is the reason. `key` is the authority's
 * parsed key (key authorities only).
 */
export function verifyLegacy(p: PreparedLegacy, authority: Authority, key: PublicKey | undefined, trust: TrustBundle, now: Date): Signer {
  if (authority.kind === 'key') {
    if (key === undefined) throw new Error(`key ${authority.source} is not usable`);
    const rekor = authority.tlog === 'require' ? usableRekor(p) : undefined;
    const entity = entityOf(p, rekor, { $case: 'public-key', hint: key.keyId });
    requireSignatureBy(entity, key.key, `key ${key.keyId}`);
    const problem = rekor === undefined ? undefined : rekorKeyProblem(rekor, { spki: key.spki });
    if (problem !== undefined) throw new Error(problem);
    verifyKeyEntity(entity, key, trust, authority.tlog);
    return { kind: 'key', keyId: key.keyId };
  }
  if (p.certificate === undefined) throw new Error(`no ${CERTIFICATE_ANNOTATION} annotation: a keyless authority needs a certificate`);
  const identity = matchIdentity(authority, certificateIdentity(p.certificate));
  if (!identity.ok) throw new Error(identity.reason);
  const rekor = usableRekor(p);
  const entity = entityOf(p, rekor, { $case: 'certificate', certificate: p.certificate }, usableTimestamp(p));
  requireSignatureBy(entity, p.certificate.publicKey, "the certificate's key");
  const problem = rekor === undefined ? undefined : rekorKeyProblem(rekor, { spki: p.certificate.publicKey, certDer: p.certificate.root.toDER() });
  if (problem !== undefined) throw new Error(problem);
  verifyCertificateEntity(entity, trust, now);
  return { kind: 'keyless', subject: identity.subject, issuer: identity.issuer };
}
