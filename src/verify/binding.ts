/**
 * Binding: what a signed payload says about the image. sigstore-js checks
 * neither format's subject, so a valid signature over a payload for another
 * digest (a replayed signature) is stopped here. Each function returns the
 * reason the payload does not bind, or undefined when it does.
 */
import type { Digest } from '../oci/digest.js';
import type { Policy } from '../config/types.js';
import { parseJson as parseOutsideJson } from '../oci/json.js';
import { STATEMENT_MAX_BYTES } from './limits.js';

/** cosign's simple-signing `critical.type` (sigstore/sigstore payload.CosignSignatureType). */
export const COSIGN_SIGNATURE_TYPE = 'cosign container image signature';
/** DSSE payload type of an in-toto statement. */
export const IN_TOTO_PAYLOAD_TYPE = 'application/vnd.in-toto+json';
/** The in-toto statement types cosign writes (v0.1 for attest, v1 for sign/v1). */
const STATEMENT_TYPES: ReadonlySet<string> = new Set(['https://in-toto.io/Statement/v0.1', 'https://in-toto.io/Statement/v1']);

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function parseJson(bytes: Uint8Array, what: string): Record<string, unknown> | string {
  let value: unknown;
  try {
    value = parseOutsideJson(bytes, what);
  } catch (e) {
    return (e as Error).message;
  }
  return isObject(value) ? value : `${what} is not a JSON object`;
}

/** Every policy annotation must be in `signed` with an equal string value; extra ones are fine. */
export function missingAnnotation(required: Policy['annotations'], signed: unknown, where: string): string | undefined {
  for (const [key, want] of Object.entries(required)) {
    const have = isObject(signed) ? signed[key] : undefined;
    if (have === undefined) return `annotation ${JSON.stringify(key)} is missing from ${where} (policy wants ${JSON.stringify(want)})`;
    if (have !== want) return `annotation ${JSON.stringify(key)} is ${JSON.stringify(have)} in ${where}, policy wants ${JSON.stringify(want)}`;
  }
  return undefined;
}

/**
 * A legacy simple-signing payload: `critical.type` must be cosign's,
 * `critical.image.docker-manifest-digest` the served digest, and the policy
 * annotations must be in `optional` (null/absent counts as empty).
 * `critical.identity.docker-reference` is not checked: the proxy serves the
 * same digest under many names, and cosign verifies it only on request.
 */
export function legacyBindingProblem(payload: Uint8Array, served: Digest, policy: Pick<Policy, 'annotations'>): string | undefined {
  const doc = parseJson(payload, 'payload');
  if (typeof doc === 'string') return doc;
  const critical = doc.critical;
  if (!isObject(critical)) return 'payload has no "critical" object';
  if (critical.type !== COSIGN_SIGNATURE_TYPE) {
    return `payload type is ${JSON.stringify(critical.type)}, not ${JSON.stringify(COSIGN_SIGNATURE_TYPE)}`;
  }
  const image = critical.image;
  const named = isObject(image) ? image['docker-manifest-digest'] : undefined;
  if (typeof named !== 'string') return 'payload has no critical.image.docker-manifest-digest';
  if (named !== served) return `payload names ${named} not the served ${served}`;
  const optional = doc.optional;
  if (optional !== undefined && optional !== null && !isObject(optional)) return 'payload "optional" is neither an object nor null';
  return missingAnnotation(policy.annotations, optional ?? {}, 'the signed payload');
}

/** The in-toto statement of a DSSE payload (payload type, JSON, `_type`), or why it is not one. */
function readStatement(payloadType: string, payload: Uint8Array): Record<string, unknown> | string {
  if (payloadType !== IN_TOTO_PAYLOAD_TYPE) return `DSSE payload type is ${JSON.stringify(payloadType)}, not ${IN_TOTO_PAYLOAD_TYPE}`;
  const doc = parseJson(payload, 'in-toto statement');
  if (typeof doc === 'string') return doc;
  if (typeof doc._type !== 'string' || !STATEMENT_TYPES.has(doc._type)) return `statement _type ${JSON.stringify(doc._type)} is not an in-toto statement`;
  return doc;
}

/**
 * Subjects a reason lists, and the hex digits shown of each: a statement (up to 1 MiB) may name
 * thousands, of any length, and the reason goes into a denial's body, its log line and headers.
 */
const SUBJECTS_SHOWN = 4;
const DIGEST_HEX_SHOWN = 128;

/** The statement's subject that carries the served digest, or why none does. */
function servedSubject(doc: Record<string, unknown>, served: Digest): Record<string, unknown> | string {
  if (!Array.isArray(doc.subject)) return 'statement has no subject list';
  const [alg, hex] = served.split(':') as [string, string];
  const subject: unknown = doc.subject.find((s: unknown) => isObject(s) && isObject(s.digest) && s.digest[alg] === hex);
  if (isObject(subject)) return subject;
  const named = doc.subject
    .map((s: unknown) => (isObject(s) && isObject(s.digest) && typeof s.digest[alg] === 'string' ? `${alg}:${s.digest[alg].slice(0, DIGEST_HEX_SHOWN)}` : undefined))
    .filter((s): s is string => s !== undefined);
  const shown = named.length > SUBJECTS_SHOWN ? `${named.slice(0, SUBJECTS_SHOWN).join(', ')} and ${named.length - SUBJECTS_SHOWN} more` : named.join(', ');
  return `statement names ${named.length === 0 ? `no ${alg} subject` : shown} not the served ${served}`;
}

/**
 * A DSSE in-toto statement (what cosign v3 signs and attests): its
 * predicateType must be one the policy accepts and one of its subjects must
 * carry the served digest; the policy annotations must be in that subject's
 * `annotations` (where cosign v3 puts `cosign sign -a` values).
 */
export function statementBindingProblem(
  payloadType: string,
  payload: Uint8Array,
  served: Digest,
  policy: Pick<Policy, 'annotations' | 'predicateTypes'>,
): string | undefined {
  const doc = readStatement(payloadType, payload);
  if (typeof doc === 'string') return doc;
  const predicateType = doc.predicateType;
  if (typeof predicateType !== 'string' || !policy.predicateTypes.includes(predicateType)) {
    return `predicate type ${JSON.stringify(predicateType)} is not one of the policy's predicateTypes (${policy.predicateTypes.join(', ')})`;
  }
  const subject = servedSubject(doc, served);
  if (typeof subject === 'string') return subject;
  return missingAnnotation(policy.annotations, subject.annotations ?? {}, 'the statement subject');
}

/** An attested in-toto statement: the whole statement and its predicate type. */
export interface AttestedStatement {
  readonly statement: Readonly<Record<string, unknown>>;
  readonly predicateType: string;
}

/**
 * An attestation's statement (cosign's `.att` envelope, or a bundle among the referrers): a
 * DSSE payload of type in-toto, at most STATEMENT_MAX_BYTES, with a string predicateType and a
 * subject that carries the served digest — an attestation made for another image says nothing
 * about this one. Returns the statement, or why it cannot count.
 */
export function attestedStatement(payloadType: string, payload: Uint8Array, served: Digest): AttestedStatement | string {
  if (payload.length > STATEMENT_MAX_BYTES) return `statement of ${payload.length} bytes exceeds STATEMENT_MAX_BYTES (${STATEMENT_MAX_BYTES})`;
  const doc = readStatement(payloadType, payload);
  if (typeof doc === 'string') return doc;
  if (typeof doc.predicateType !== 'string') return 'statement has no predicateType';
  const subject = servedSubject(doc, served);
  if (typeof subject === 'string') return subject;
  return { statement: doc, predicateType: doc.predicateType };
}
