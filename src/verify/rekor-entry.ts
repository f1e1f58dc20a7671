/**
 * cosign's legacy Rekor evidence: the `dev.sigstore.cosign/bundle` layer
 * annotation, `{"SignedEntryTimestamp": b64, "Payload": {"body": b64,
 * "integratedTime": n, "logIndex": n, "logID": hex}}`. It becomes a Sigstore
 * TransparencyLogEntry whose SET (inclusion promise) @sigstore/verify checks:
 * a signature by the log's key over the canonical JSON of {body,
 * integratedTime, logIndex, logID}. sigstore-js compares the body's signature
 * and digest with the signed content but not its key, so that is done here.
 */
import { X509Certificate as NodeX509, createPublicKey } from 'node:crypto';
import type { TransparencyLogEntry } from '@sigstore/bundle';
import { parseJson } from '../oci/json.js';

/** The hash algorithms a hashedrekord body may name, as node:crypto spells them. */
export type RekorHash = 'sha256' | 'sha384' | 'sha512';
const REKOR_HASHES: ReadonlySet<string> = new Set(['sha256', 'sha384', 'sha512']);
const HEX = /^[0-9a-f]+$/;
const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;

/** A verified-later Rekor entry and the hashedrekord fields sigil checks itself. */
export interface LegacyRekorEntry {
  readonly entry: TransparencyLogEntry;
  /** spec.data.hash.algorithm: the digest of the payload the log recorded. */
  readonly hash: RekorHash;
  /** spec.signature.publicKey.content, decoded: a PEM certificate or public key. */
  readonly publicKeyPem: string;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function base64(value: unknown, what: string): Buffer {
  if (typeof value !== 'string' || !BASE64.test(value)) throw new Error(`${what} is not base64`);
  return Buffer.from(value, 'base64');
}

function integer(value: unknown, what: string): string {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) throw new Error(`${what} is not a non-negative integer`);
  return String(value);
}

/** The annotation's log entry, kind aside, and its parsed body. Throws an Error saying what is malformed. */
function parseAnnotation(annotation: string): { entry: Omit<TransparencyLogEntry, 'kindVersion'>; body: Record<string, unknown> } {
  const doc = parseJson(annotation, 'Rekor bundle annotation');
  const payload = isObject(doc) ? doc.Payload : undefined;
  if (!isObject(doc) || !isObject(payload)) throw new Error('Rekor bundle annotation has no Payload object');
  const set = base64(doc.SignedEntryTimestamp, 'Rekor SignedEntryTimestamp');
  const canonicalizedBody = base64(payload.body, 'Rekor entry body');
  if (typeof payload.logID !== 'string' || !HEX.test(payload.logID)) throw new Error('Rekor logID is not hex');
  const integratedTime = integer(payload.integratedTime, 'Rekor integratedTime');
  const logIndex = integer(payload.logIndex, 'Rekor logIndex');

  const body = parseJson(canonicalizedBody, 'Rekor entry body');
  if (!isObject(body)) throw new Error('Rekor entry body is not a JSON object');
  const entry = {
    logIndex,
    logId: { keyId: Buffer.from(payload.logID, 'hex') },
    integratedTime,
    inclusionPromise: { signedEntryTimestamp: set },
    inclusionProof: undefined,
    canonicalizedBody,
  };
  return { entry, body };
}

/** Parses the annotation of a `.sig` layer; throws an Error saying what is malformed. */
export function parseRekorBundleAnnotation(annotation: string): LegacyRekorEntry {
  const { entry, body } = parseAnnotation(annotation);
  const { kind, apiVersion, spec } = body;
  // cosign has logged image signatures as hashedrekord entries since 1.x.
  if (kind !== 'hashedrekord' || apiVersion !== '0.0.1') {
    throw new Error(`Rekor entry is ${String(kind)} ${String(apiVersion)}, not hashedrekord 0.0.1`);
  }
  const data = isObject(spec) && isObject(spec.data) ? spec.data : undefined;
  const hash = data !== undefined && isObject(data.hash) ? data.hash : undefined;
  const signature = isObject(spec) && isObject(spec.signature) ? spec.signature : undefined;
  const publicKey = signature !== undefined && isObject(signature.publicKey) ? signature.publicKey : undefined;
  if (hash === undefined || typeof hash.algorithm !== 'string' || !REKOR_HASHES.has(hash.algorithm)) {
    throw new Error(`Rekor entry hash algorithm ${JSON.stringify(hash?.algorithm)} is not sha256, sha384 or sha512`);
  }
  const publicKeyPem = base64(publicKey?.content, 'Rekor entry public key').toString('utf8');
  return { entry: { ...entry, kindVersion: { kind, version: apiVersion } }, hash: hash.algorithm as RekorHash, publicKeyPem };
}

/**
 * Parses the annotation of a `.att` layer: cosign logs attestations as intoto 0.0.2 entries,
 * whose envelope records the one signature (sigstore-js compares it, and the payload hash, with
 * the envelope) and the signer's key or certificate (compared here: rekorKeyProblem). Throws an
 * Error saying what is malformed.
 */
export function parseAttestationRekorAnnotation(annotation: string): LegacyRekorEntry {
  const { entry, body } = parseAnnotation(annotation);
  const { kind, apiVersion, spec } = body;
  if (kind !== 'intoto' || apiVersion !== '0.0.2') throw new Error(`Rekor entry is ${String(kind)} ${String(apiVersion)}, not intoto 0.0.2`);
  const content = isObject(spec) && isObject(spec.content) ? spec.content : undefined;
  const envelope = content !== undefined && isObject(content.envelope) ? content.envelope : undefined;
  const signatures = envelope !== undefined && Array.isArray(envelope.signatures) ? envelope.signatures : [];
  if (signatures.length !== 1 || !isObject(signatures[0])) throw new Error(`Rekor entry records ${signatures.length} signatures, not one`);
  const publicKeyPem = base64(signatures[0].publicKey, 'Rekor entry public key').toString('utf8');
  return { entry: { ...entry, kindVersion: { kind, version: apiVersion } }, hash: 'sha256', publicKeyPem };
}

/**
 * Whether the key or certificate the log recorded is the signer's: for a
 * certificate signer the same certificate (or its key), for a key signer a
 * PEM with the same SubjectPublicKeyInfo.
 */
export function rekorKeyProblem(rekor: LegacyRekorEntry, signer: { readonly spki: Buffer; readonly certDer?: Buffer }): string | undefined {
  const pem = rekor.publicKeyPem;
  try {
    if (pem.includes('-----BEGIN CERTIFICATE-----') && signer.certDer !== undefined) {
      return new NodeX509(pem).raw.equals(signer.certDer) ? undefined : 'the Rekor entry records another certificate than the signature carries';
    }
    const spki = createPublicKey(pem).export({ type: 'spki', format: 'der' });
    return spki.equals(signer.spki) ? undefined : 'the Rekor entry records another public key than the signer\'s';
  } catch (e) {
    return `the Rekor entry's public key does not parse: ${(e as Error).message}`;
  }
}
