/**
 * cosign's legacy attestation layout (`sha256-<hex>.att`): each layer blob is a DSSE envelope
 * (`application/vnd.dsse.envelope.v1+json`) whose payload is an in-toto statement, signed over
 * DSSE's pre-authentication encoding; the layer annotations carry the certificate and chain and
 * the Rekor SET of an intoto entry, as a `.sig` layer's do (its signature annotation is empty:
 * the signature is in the envelope). `prepareEnvelope` checks limits, decoding and binding once
 * per candidate; the signature is then verified like a `.sig` layer's (legacy.ts verifyLegacy).
 */
import type { Subject } from './types.js';
import type { CandidateSignature } from './types.js';
import { attestedStatement, type AttestedStatement } from './binding.js';
import { annotatedEvidence, oversizedAnnotation, type PreparedLegacy } from './legacy.js';
import { BUNDLE_MAX_BYTES } from './limits.js';
import { parseAttestationRekorAnnotation } from './rekor-entry.js';
import { envelopeSignatureContent } from './sigstore-run.js';
import { parseJson } from '../oci/json.js';

type AttestationCandidate = Extract<CandidateSignature, { format: 'attestation' }>;

/** Standard base64 (RFC 4648 §4, padded), what Go's encoding/json writes for []byte. */
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** A `.att` envelope whose statement binds to the served digest, ready for every authority. */
export interface PreparedEnvelope extends PreparedLegacy {
  readonly attested: AttestedStatement;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function decoded(v: unknown, what: string): Buffer | string {
  if (typeof v !== 'string' || !BASE64.test(v)) return `envelope ${what} is not base64`;
  return Buffer.from(v, 'base64');
}

/** Returns why the candidate cannot count, or the envelope parsed and bound. */
export function prepareEnvelope(c: AttestationCandidate, subject: Subject): PreparedEnvelope | string {
  if (c.envelope.length > BUNDLE_MAX_BYTES) return `envelope of ${c.envelope.length} bytes exceeds BUNDLE_MAX_BYTES (${BUNDLE_MAX_BYTES})`;
  const oversized = oversizedAnnotation(c.annotations);
  if (oversized !== undefined) return oversized;
  let doc: unknown;
  try {
    doc = parseJson(c.envelope, 'the DSSE envelope');
  } catch (e) {
    return (e as Error).message;
  }
  if (!isObject(doc)) return 'the DSSE envelope is not a JSON object';
  if (typeof doc.payloadType !== 'string') return 'envelope has no payloadType';
  // cosign signs one signature per envelope, and its Rekor intoto entry records that one.
  if (!Array.isArray(doc.signatures) || doc.signatures.length !== 1 || !isObject(doc.signatures[0])) {
    return `envelope has ${Array.isArray(doc.signatures) ? doc.signatures.length : 'no'} signatures; cosign writes one`;
  }
  const payload = decoded(doc.payload, 'payload');
  if (typeof payload === 'string') return payload;
  const signature = decoded(doc.signatures[0].sig, 'signature');
  if (typeof signature === 'string') return signature;
  if (signature.length === 0) return 'envelope signature is empty';
  const attested = attestedStatement(doc.payloadType, payload, subject.digest);
  if (typeof attested === 'string') return attested;
  const evidence = annotatedEvidence(c.annotations, parseAttestationRekorAnnotation);
  if (typeof evidence === 'string') return evidence;
  return { payload, signature, content: envelopeSignatureContent(doc.payloadType, payload, signature), ...evidence, attested };
}
