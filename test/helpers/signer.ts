import { constants, createHash, createPublicKey, generateKeyPairSync, sign } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { canonicalJson, toBundleTlogEntry, toLegacyBundleAnnotation } from './private-sigstore.js';
import type { KeylessIdentity, PrivateSigstore, RekorEntry } from './private-sigstore.js';
import { toBundleTlogEntryV2, type EntryVerifier, type RekorV2Log } from './rekor-v2.js';
import { rfc3161Annotation, type TestTsa } from './tsa.js';
import { sha256, sha256Hex } from './digest.js';
import { ed25519phSign } from './ed25519ph.js';

// The project's own cosign-format signer, for tests of sigil's signature verification.
// It writes what cosign writes: the legacy `sha256-<hex>.sig` manifest of simple-signing
// layers, and cosign v3's Sigstore bundle v0.3 attached as an OCI 1.1 referrer. It shares no
// code with src/ on purpose (a bug in src/ must not be mirrored here).

export type { KeylessIdentity, PrivateSigstore } from './private-sigstore.js';
export { ed25519KeyFromSeed, ed25519PublicFromSeed } from './ed25519ph.js';

export const MEDIA = Object.freeze({
  OCI_MANIFEST: 'application/vnd.oci.image.manifest.v1+json',
  OCI_CONFIG: 'application/vnd.oci.image.config.v1+json',
  OCI_EMPTY: 'application/vnd.oci.empty.v1+json',
  SIMPLE_SIGNING: 'application/vnd.dev.cosign.simplesigning.v1+json',
  BUNDLE_V03: 'application/vnd.dev.sigstore.bundle.v0.3+json',
  IN_TOTO: 'application/vnd.in-toto+json',
});
export const ANNOTATION = Object.freeze({
  SIGNATURE: 'dev.cosignproject.cosign/signature',
  CERTIFICATE: 'dev.sigstore.cosign/certificate',
  CHAIN: 'dev.sigstore.cosign/chain',
  BUNDLE: 'dev.sigstore.cosign/bundle',
  RFC3161_TIMESTAMP: 'dev.sigstore.cosign/rfc3161timestamp',
  // cosign v3 referrer manifest annotations
  BUNDLE_CONTENT: 'dev.sigstore.bundle.content',
  BUNDLE_PREDICATE_TYPE: 'dev.sigstore.bundle.predicateType',
  CREATED: 'org.opencontainers.image.created',
});
export const COSIGN_SIGNATURE_TYPE = 'cosign container image signature';
export const COSIGN_SIGN_PREDICATE_TYPE = 'https://sigstore.dev/cosign/sign/v1';
const IN_TOTO_STATEMENT_V1 = 'https://in-toto.io/Statement/v1';
const DEFAULT_DOCKER_REFERENCE = 'registry.sigil.test/image';
const RSA_BITS = 2048; // smallest size cosign accepts; keeps key generation fast
const GO_ZERO_TIME = '0001-01-01T00:00:00Z'; // what go-containerregistry writes for an unset time
const EMPTY_JSON = Buffer.from('{}'); // the OCI empty descriptor's blob

export type KeyKind = 'p256' | 'p384' | 'rsa' | 'ed25519' | 'ed25519ph';
export interface TestKey {
  kind: KeyKind;
  publicPem: string;
  privateKey: KeyObject;
  publicKey: KeyObject;
  /** `sha256:<hex of SHA-256 of the SPKI DER>` */
  keyId: string;
  /** base64 SHA-256 of the SPKI DER: what cosign v3 puts in a bundle's `publicKey.hint`. */
  hint: string;
}

/** Anything that can sign: a static key or a keyless identity from a PrivateSigstore. */
export type Signer = TestKey | KeylessIdentity;
const isKeyless = (s: Signer): s is KeylessIdentity => 'certPem' in s;

export function generateKey(kind: KeyKind): TestKey {
  switch (kind) {
    case 'p256':
      return keyFromPrivate(kind, generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey);
    case 'p384':
      return keyFromPrivate(kind, generateKeyPairSync('ec', { namedCurve: 'secp384r1' }).privateKey);
    case 'rsa':
      return keyFromPrivate(kind, generateKeyPairSync('rsa', { modulusLength: RSA_BITS }).privateKey);
    case 'ed25519':
    case 'ed25519ph':
      return keyFromPrivate(kind, generateKeyPairSync('ed25519').privateKey);
  }
}

/** Wraps an existing private key (e.g. a fixed test vector) as a TestKey. */
export function keyFromPrivate(kind: KeyKind, privateKey: KeyObject): TestKey {
  const publicKey = createPublicKey(privateKey);
  const spki = publicKey.export({ type: 'spki', format: 'der' });
  return {
    kind,
    publicPem: publicKey.export({ type: 'spki', format: 'pem' }) as string,
    privateKey,
    publicKey,
    keyId: `sha256:${sha256Hex(spki)}`,
    hint: createHash('sha256').update(spki).digest('base64'),
  };
}

/**
 * The same EC public key as an SPKI PEM with its point compressed (SEC 1 §2.3.3): other bytes,
 * another sha256 of the SPKI, the same key. OpenSSL keeps the form it was given.
 */
export function compressedPublicPem(key: TestKey): string {
  if (key.kind !== 'p256' && key.kind !== 'p384') throw new TypeError(`${key.kind} has no compressed form`);
  const spki = key.publicKey.export({ type: 'spki', format: 'der' });
  // SEQUENCE { AlgorithmIdentifier, BIT STRING { 0x00, 0x04 || X || Y } }, all lengths short-form
  const algorithm = spki.subarray(2, 4 + spki[3]);
  const point = spki.subarray(4 + spki[3] + 3);
  const half = (point.length - 1) / 2;
  const compressed = Buffer.concat([Buffer.from([0x02 | (point[point.length - 1] & 1)]), point.subarray(1, 1 + half)]);
  const bits = Buffer.concat([Buffer.from([0x03, compressed.length + 1, 0x00]), compressed]);
  const der = Buffer.concat([Buffer.from([0x30, algorithm.length + bits.length]), algorithm, bits]);
  return createPublicKey({ key: der, format: 'der', type: 'spki' }).export({ type: 'spki', format: 'pem' }) as string;
}

/** Go's encoding/json escapes these even inside strings; cosign's payloads come from it. */
function goJson(v: unknown): string {
  return JSON.stringify(v).replace(/[<>&\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

function sortedRecord(r: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.keys(r).sort().map((k) => [k, r[k]]));
}

/** The simple-signing payload exactly as cosign marshals it (struct field order, sorted map keys, Go escaping). */
export function cosignPayload(digest: string, dockerReference: string, annotations?: Record<string, string> | null): Buffer {
  return Buffer.from(
    goJson({
      critical: { identity: { 'docker-reference': dockerReference }, image: { 'docker-manifest-digest': digest }, type: COSIGN_SIGNATURE_TYPE },
      optional: annotations ? sortedRecord(annotations) : null,
    }),
    'utf8',
  );
}

/** The hash each key kind signs with (and that a hashedrekord entry records). */
export function hashFor(kind: KeyKind): 'sha256' | 'sha384' | 'sha512' {
  if (kind === 'p384') return 'sha384';
  if (kind === 'ed25519' || kind === 'ed25519ph') return 'sha512';
  return 'sha256';
}

/** base64 signature: p256 ECDSA/SHA-256, p384 ECDSA/SHA-384, rsa PKCS#1 v1.5/SHA-256, ed25519 pure, ed25519ph RFC 8032 prehash. */
export function signPayload(key: TestKey, payload: Buffer): string {
  return signRaw(key.kind, key.privateKey, payload).toString('base64');
}

function signRaw(kind: KeyKind, privateKey: KeyObject, data: Buffer): Buffer {
  switch (kind) {
    case 'p256':
      return sign('sha256', data, privateKey);
    case 'p384':
      return sign('sha384', data, privateKey);
    case 'rsa':
      return sign('sha256', data, { key: privateKey, padding: constants.RSA_PKCS1_PADDING });
    case 'ed25519':
      return sign(null, data, privateKey);
    case 'ed25519ph':
      return ed25519phSign(privateKey, data);
  }
}

/** Signs `data` as `signer` would: its key's scheme, or a keyless identity's P-256 key. */
export function signWith(signer: Signer, data: Buffer): Buffer {
  return isKeyless(signer) ? signRaw('p256', signer.privateKey, data) : signRaw(signer.kind, signer.privateKey, data);
}

// --- legacy .sig layers --------------------------------------------------------------------

export interface LegacySignatureLayer {
  payload: Buffer;
  annotations: Record<string, string>;
  /** The Rekor entry behind the `dev.sigstore.cosign/bundle` annotation, when one was made. */
  rekorEntry?: RekorEntry;
}

export interface LegacyLayerOptions {
  dockerReference?: string;
  annotations?: Record<string, string> | null;
  /** Log a hashedrekord entry and add its SET as the `dev.sigstore.cosign/bundle` annotation. */
  rekor?: PrivateSigstore;
  /** Unix seconds for the Rekor entry (default now). */
  integratedTime?: number;
  /** Add cosign's `dev.sigstore.cosign/rfc3161timestamp` annotation: this TSA's token over the raw signature bytes. */
  timestamp?: TestTsa;
  /**
   * Break the layer after signing and logging: 'payload' swaps in a payload for the same digest
   * with other `optional` annotations (so only the signature check can catch it); 'signature'
   * flips a bit of the signature. The Rekor entry, if any, stays the honest one.
   */
  tamper?: 'payload' | 'signature';
}

/** The signer's public key PEM, or a keyless identity's certificate: what a Rekor entry records. */
export function pemOf(signer: Signer): string {
  return isKeyless(signer) ? signer.certPem : signer.publicPem;
}

function entryVerifier(signer: Signer): EntryVerifier {
  return isKeyless(signer) ? { certDer: signer.certDer } : { publicKey: signer.publicKey, prehash: signer.kind === 'ed25519ph' };
}

/** A hashedrekord v0.0.1 body as Rekor stores it for a signature over `payload`. */
export function hashedRekordBody(signer: Signer, payload: Buffer, signatureB64: string): Record<string, unknown> {
  const algorithm = isKeyless(signer) ? 'sha256' : hashFor(signer.kind);
  return {
    apiVersion: '0.0.1',
    kind: 'hashedrekord',
    spec: {
      data: { hash: { algorithm, value: createHash(algorithm).update(payload).digest('hex') } },
      signature: { content: signatureB64, publicKey: { content: Buffer.from(pemOf(signer), 'utf8').toString('base64') } },
    },
  };
}

function flipLastBit(b64: string): string {
  const b = Buffer.from(b64, 'base64');
  b[b.length - 1] ^= 0x01;
  return b.toString('base64');
}

/** One layer of a legacy `.sig` manifest: the payload blob and the layer annotations cosign writes. */
export function legacyLayer(signer: Signer, digest: string, opts: LegacyLayerOptions = {}): LegacySignatureLayer {
  const dockerReference = opts.dockerReference ?? DEFAULT_DOCKER_REFERENCE;
  let payload = cosignPayload(digest, dockerReference, opts.annotations ?? null);
  let signature = signWith(signer, payload).toString('base64');
  const annotations: Record<string, string> = {};
  if (isKeyless(signer)) {
    annotations[ANNOTATION.CERTIFICATE] = signer.certPem;
    annotations[ANNOTATION.CHAIN] = signer.chainPem;
  }
  let rekorEntry: RekorEntry | undefined;
  if (opts.rekor) {
    rekorEntry = opts.rekor.rekorEntry(hashedRekordBody(signer, payload, signature), { integratedTime: opts.integratedTime });
    annotations[ANNOTATION.BUNDLE] = toLegacyBundleAnnotation(rekorEntry);
  }
  if (opts.timestamp) annotations[ANNOTATION.RFC3161_TIMESTAMP] = rfc3161Annotation(opts.timestamp.timestamp(Buffer.from(signature, 'base64')));
  if (opts.tamper === 'payload') payload = cosignPayload(digest, dockerReference, { ...(opts.annotations ?? {}), tampered: 'true' });
  if (opts.tamper === 'signature') signature = flipLastBit(signature);
  annotations[ANNOTATION.SIGNATURE] = signature;
  return { payload, annotations: sortedRecord(annotations), ...(rekorEntry ? { rekorEntry } : {}) };
}

export interface Descriptor {
  mediaType: string;
  size: number;
  digest: string;
  annotations?: Record<string, string>;
  artifactType?: string;
}

const descriptor = (mediaType: string, blob: Buffer, annotations?: Record<string, string>): Descriptor => ({
  mediaType,
  size: blob.length,
  digest: sha256(blob),
  ...(annotations ? { annotations: sortedRecord(annotations) } : {}),
});

/** One layer of a cosign tag manifest: its blob, media type and annotations. */
export interface CosignTagLayer {
  blob: Buffer;
  mediaType: string;
  annotations?: Record<string, string> | undefined;
}

/**
 * A cosign tag manifest (`.sig`, `.att`) and its blobs, ready to push (blobs[0] is the config,
 * then one blob per layer): go-containerregistry's ConfigFile of an empty.Image with these
 * layers appended, as cosign writes it.
 */
export function cosignTagManifest(layers: readonly CosignTagLayer[]): { manifest: Buffer; mediaType: string; blobs: Buffer[] } {
  const config = Buffer.from(
    JSON.stringify({
      architecture: '',
      created: GO_ZERO_TIME,
      history: layers.map(() => ({ created: GO_ZERO_TIME })),
      os: '',
      rootfs: { type: 'layers', diff_ids: layers.map((l) => sha256(l.blob)) },
      config: {},
    }),
    'utf8',
  );
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MEDIA.OCI_MANIFEST,
      config: descriptor(MEDIA.OCI_CONFIG, config),
      layers: layers.map((l) => descriptor(l.mediaType, l.blob, l.annotations)),
    }),
    'utf8',
  );
  return { manifest, mediaType: MEDIA.OCI_MANIFEST, blobs: [config, ...layers.map((l) => l.blob)] };
}

/** The `.sig` manifest and its blobs, ready to push (blobs[0] is the config, then one blob per layer). */
export function sigManifest(layers: LegacySignatureLayer[]): { manifest: Buffer; mediaType: string; blobs: Buffer[] } {
  return cosignTagManifest(layers.map((l) => ({ blob: l.payload, mediaType: MEDIA.SIMPLE_SIGNING, annotations: l.annotations })));
}

/** cosign's legacy tag for the signatures of `digest`: `sha256-<hex>.sig`. */
export function sigTag(digest: string): string {
  return `${digest.replace(':', '-')}.sig`;
}

// --- cosign v3: Sigstore bundle v0.3 as an OCI 1.1 referrer --------------------------------

export interface BundleOptions {
  predicateType?: string;
  /** The in-toto statement to sign instead of cosign's sign/v1 one (an attestation: test/helpers/attester.ts). */
  statement?: Buffer;
  /** The in-toto subject's annotations (cosign v3 puts `-a k=v` here). */
  annotations?: Record<string, string>;
  /** Log a dsse v0.0.1 entry (SET + inclusion proof + checkpoint). Without it, tlogEntries is empty. */
  rekor?: PrivateSigstore;
  /** Log a Rekor v2 entry (0.0.2: inclusion proof + checkpoint, no SET): `dsse`, or `hashedrekord` over the PAE. */
  rekorV2?: { log: RekorV2Log; kind: 'dsse' | 'hashedrekord' };
  /** Add an RFC 3161 timestamp of this TSA over the signature bytes (`timestampVerificationData`). */
  timestamp?: TestTsa;
  /** Unix seconds for the Rekor entry (default now). */
  integratedTime?: number;
  /** Break the bundle after signing and logging ('payload': other subject annotations; 'signature': flip a bit). */
  tamper?: 'payload' | 'signature';
}

/** The DSSE pre-authentication encoding (DSSE v1 protocol). */
export function preAuthEncoding(payloadType: string, payload: Buffer): Buffer {
  return Buffer.concat([
    Buffer.from(`DSSEv1 ${Buffer.byteLength(payloadType)} ${payloadType} ${payload.length} `, 'utf8'),
    payload,
  ]);
}

/** The in-toto v1 statement cosign v3's `sign` writes (protojson field order). */
export function signStatement(digest: string, predicateType = COSIGN_SIGN_PREDICATE_TYPE, annotations: Record<string, string> = {}): Buffer {
  const [algorithm, hex] = digest.split(':');
  return Buffer.from(
    JSON.stringify({
      _type: IN_TOTO_STATEMENT_V1,
      subject: [{ digest: { [algorithm]: hex }, annotations: sortedRecord(annotations) }],
      predicateType,
      predicate: {},
    }),
    'utf8',
  );
}

/** A v0.3 Sigstore bundle (DSSE in-toto statement) for `digest`, as cosign v3 attaches it. */
export function bundleFor(signer: Signer, digest: string, opts: BundleOptions = {}): Buffer {
  let payload = opts.statement ?? signStatement(digest, opts.predicateType, opts.annotations);
  let sig = signWith(signer, preAuthEncoding(MEDIA.IN_TOTO, payload)).toString('base64');
  const envelope = (): Record<string, unknown> => ({ payload: payload.toString('base64'), payloadType: MEDIA.IN_TOTO, signatures: [{ sig }] });
  const tlogEntries: Array<Record<string, unknown>> = [];
  if (opts.rekor) {
    const body = {
      apiVersion: '0.0.1',
      kind: 'dsse',
      spec: {
        envelopeHash: { algorithm: 'sha256', value: sha256Hex(Buffer.from(canonicalJson(envelope()), 'utf8')) },
        payloadHash: { algorithm: 'sha256', value: sha256Hex(payload) },
        signatures: [{ signature: sig, verifier: Buffer.from(pemOf(signer), 'utf8').toString('base64') }],
      },
    };
    tlogEntries.push(toBundleTlogEntry(opts.rekor.rekorEntry(body, { integratedTime: opts.integratedTime })));
  }
  if (opts.rekorV2) {
    const { log, kind } = opts.rekorV2;
    const signed = kind === 'dsse' ? payload : preAuthEncoding(MEDIA.IN_TOTO, payload);
    tlogEntries.push(toBundleTlogEntryV2(log.append(kind, { signature: Buffer.from(sig, 'base64'), signed, verifier: entryVerifier(signer) }), log.logId));
  }
  const timestamps = opts.timestamp ? { timestampVerificationData: { rfc3161Timestamps: [{ signedTimestamp: opts.timestamp.timestamp(Buffer.from(sig, 'base64')).toString('base64') }] } } : {};
  if (opts.tamper === 'payload') payload = signStatement(digest, opts.predicateType, { ...(opts.annotations ?? {}), tampered: 'true' });
  if (opts.tamper === 'signature') sig = flipLastBit(sig);
  const verificationMaterial = isKeyless(signer)
    ? { certificate: { rawBytes: signer.certDer.toString('base64') }, tlogEntries, ...timestamps }
    : { publicKey: { hint: signer.hint }, tlogEntries, ...timestamps };
  return Buffer.from(JSON.stringify({ mediaType: MEDIA.BUNDLE_V03, verificationMaterial, dsseEnvelope: envelope() }), 'utf8');
}

/** The OCI 1.1 referrer manifest cosign v3 pushes for a bundle, and its blobs (empty config, bundle). */
export function bundleReferrer(
  bundle: Buffer,
  subject: { digest: string; size: number; mediaType: string },
  opts: { created?: Date } = {},
): { manifest: Buffer; mediaType: string; artifactType: string; blobs: Buffer[] } {
  const parsed = JSON.parse(bundle.toString('utf8')) as { dsseEnvelope?: { payload?: string } };
  const annotations: Record<string, string> = {};
  if (parsed.dsseEnvelope?.payload) {
    annotations[ANNOTATION.BUNDLE_CONTENT] = 'dsse-envelope';
    const statement = JSON.parse(Buffer.from(parsed.dsseEnvelope.payload, 'base64').toString('utf8')) as { predicateType?: string };
    if (statement.predicateType) annotations[ANNOTATION.BUNDLE_PREDICATE_TYPE] = statement.predicateType;
  } else {
    annotations[ANNOTATION.BUNDLE_CONTENT] = 'message-signature';
  }
  annotations[ANNOTATION.CREATED] = (opts.created ?? new Date()).toISOString().replace(/\.\d{3}Z$/, 'Z');
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MEDIA.OCI_MANIFEST,
      artifactType: MEDIA.BUNDLE_V03,
      config: descriptor(MEDIA.OCI_EMPTY, EMPTY_JSON),
      layers: [descriptor(MEDIA.BUNDLE_V03, bundle)],
      subject: { mediaType: subject.mediaType, size: subject.size, digest: subject.digest },
      annotations: sortedRecord(annotations),
    }),
    'utf8',
  );
  return { manifest, mediaType: MEDIA.OCI_MANIFEST, artifactType: MEDIA.BUNDLE_V03, blobs: [EMPTY_JSON, bundle] };
}
