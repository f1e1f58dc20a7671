import { createHash, generateKeyPairSync, sign } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { MerkleLog, signedCheckpoint } from './merkle.js';
import { canonicalJson } from './private-sigstore.js';

// A Rekor v2 style log for the tests' private Sigstore (a tile-backed log, as public-good's
// `log2025-1`): entries `dsse` / `hashedrekord` of apiVersion 0.0.2 with the protobuf
// (rekor/v2) body shapes, an inclusion proof and an Ed25519-signed checkpoint — and no SET and
// no integrated time, so the signing time must come from a timestamp authority. The log ID is
// the signed-note key ID, SHA-256(origin || "\n" || 0x01 || public key), as public-good's
// trusted root lists it. Nothing here talks to the network.

/** Key details as protobuf-specs name them, for a verifier of an entry. */
type KeyDetails = 'PKIX_ECDSA_P256_SHA_256' | 'PKIX_ECDSA_P384_SHA_384' | 'PKIX_RSA_PKCS1V15_2048_SHA256' | 'PKIX_ED25519' | 'PKIX_ED25519_PH';

/** Who signed an entry: a certificate (keyless) or a public key. */
export type EntryVerifier = { certDer: Buffer } | { publicKey: KeyObject; prehash?: boolean };

/** What an entry records of one signature. */
export interface SignatureRecord {
  /** The raw signature bytes. */
  signature: Buffer;
  /** dsse: the DSSE payload (its SHA-256 is recorded); hashedrekord: the signed bytes (the PAE for a DSSE envelope). */
  signed: Buffer;
  verifier: EntryVerifier;
}

export interface RekorV2Entry {
  kind: 'dsse' | 'hashedrekord';
  body: Buffer;
  logIndex: number;
  treeSize: number;
  rootHash: Buffer;
  hashes: Buffer[];
  checkpoint: string;
}

const TRUST_START = '2020-01-01T00:00:00.000Z';

function keyDetails(key: KeyObject, prehash = false): KeyDetails {
  switch (key.asymmetricKeyType) {
    case 'ec':
      return key.asymmetricKeyDetails?.namedCurve === 'secp384r1' ? 'PKIX_ECDSA_P384_SHA_384' : 'PKIX_ECDSA_P256_SHA_256';
    case 'rsa':
      return 'PKIX_RSA_PKCS1V15_2048_SHA256';
    case 'ed25519':
      return prehash ? 'PKIX_ED25519_PH' : 'PKIX_ED25519';
    default:
      throw new Error(`no key details for ${String(key.asymmetricKeyType)}`);
  }
}

function verifierJson(v: EntryVerifier): Record<string, unknown> {
  if ('certDer' in v) return { x509Certificate: { rawBytes: v.certDer.toString('base64') }, keyDetails: 'PKIX_ECDSA_P256_SHA_256' };
  return { publicKey: { rawBytes: v.publicKey.export({ type: 'spki', format: 'der' }).toString('base64') }, keyDetails: keyDetails(v.publicKey, v.prehash) };
}

/** The body Rekor v2 logs for a signature: protojson of rekor.v2.Entry, keys sorted, no whitespace. */
export function rekorV2Body(kind: RekorV2Entry['kind'], r: SignatureRecord): Record<string, unknown> {
  const digest = { algorithm: 'SHA2_256', digest: createHash('sha256').update(r.signed).digest('base64') };
  const signature = { content: r.signature.toString('base64'), verifier: verifierJson(r.verifier) };
  const spec = kind === 'dsse' ? { dsseV002: { payloadHash: digest, signatures: [signature] } } : { hashedRekordV002: { data: digest, signature } };
  return { apiVersion: '0.0.2', kind, spec };
}

export class RekorV2Log {
  readonly origin: string;
  readonly baseUrl: string;
  /** SHA-256(origin || "\n" || 0x01 || raw Ed25519 key): the signed-note key ID. */
  readonly logId: Buffer;
  readonly #key: KeyObject;
  readonly #spki: Buffer;
  readonly #tree = new MerkleLog();

  constructor(origin = 'log2.rekor.sigil.test') {
    const { privateKey, publicKey } = generateKeyPairSync('ed25519');
    this.origin = origin;
    this.baseUrl = `https://${origin}`;
    this.#key = privateKey;
    this.#spki = publicKey.export({ type: 'spki', format: 'der' });
    const raw = Buffer.from(publicKey.export({ format: 'jwk' }).x ?? '', 'base64url');
    this.logId = createHash('sha256').update(Buffer.concat([Buffer.from(`${origin}\n`, 'utf8'), Buffer.from([0x01]), raw])).digest();
  }

  /** Logs one signature as an entry of `kind`. */
  append(kind: RekorV2Entry['kind'], record: SignatureRecord): RekorV2Entry {
    const body = Buffer.from(canonicalJson(rekorV2Body(kind, record)), 'utf8');
    const inclusion = this.#tree.append(body);
    const checkpoint = signedCheckpoint(this.origin, inclusion, { name: this.origin, keyId: this.logId, sign: (note) => sign(null, note, this.#key) });
    return { kind, body, ...inclusion, checkpoint };
  }

  /** The trusted root's `tlogs[]` item for this log. */
  trustedRootLog(): Record<string, unknown> {
    return {
      baseUrl: this.baseUrl,
      hashAlgorithm: 'SHA2_256',
      publicKey: { rawBytes: this.#spki.toString('base64'), keyDetails: 'PKIX_ED25519', validFor: { start: TRUST_START } },
      logId: { keyId: this.logId.toString('base64') },
    };
  }
}

/** The entry as a Sigstore bundle carries it: inclusion proof and checkpoint, no inclusionPromise, no integratedTime. */
export function toBundleTlogEntryV2(e: RekorV2Entry, logId: Buffer): Record<string, unknown> {
  return {
    logIndex: String(e.logIndex),
    logId: { keyId: logId.toString('base64') },
    kindVersion: { kind: e.kind, version: '0.0.2' },
    inclusionProof: {
      logIndex: String(e.logIndex),
      rootHash: e.rootHash.toString('base64'),
      treeSize: String(e.treeSize),
      hashes: e.hashes.map((h) => h.toString('base64')),
      checkpoint: { envelope: e.checkpoint },
    },
    canonicalizedBody: e.body.toString('base64'),
  };
}
