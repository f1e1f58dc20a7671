/**
 * Public keys and raw signatures as cosign writes them: a signature over the
 * payload bytes, base64 in the layer annotation. Which hash goes with which
 * key follows cosign/sigstore's defaults, plus the variants older cosign wrote.
 */
import { constants, createHash, createPublicKey, verify as cryptoVerify, type KeyObject } from 'node:crypto';
import { verifyEd25519ph } from './ed25519ph.js';

/** A public key ready for verification, with the id the Sigil-Signer header shows. */
export interface PublicKey {
  readonly key: KeyObject;
  /** `sha256:<hex>` of the SubjectPublicKeyInfo DER (the contract's key id). */
  readonly keyId: string;
  readonly spki: Buffer;
}

/** Parses a PEM public key (or the key of a PEM certificate). Throws on anything else. */
export function parsePublicKey(pem: string): PublicKey {
  return fromKeyObject(createPublicKey(pem));
}

export function fromKeyObject(key: KeyObject): PublicKey {
  if (key.type !== 'public') throw new TypeError(`expected a public key, got a ${key.type} key`);
  const spki = key.export({ type: 'spki', format: 'der' });
  return { key, spki, keyId: keyIdOf(spki) };
}

/** The contract's key id: `sha256:<hex>` of the SPKI DER. */
export function keyIdOf(spki: Uint8Array): string {
  return `sha256:${createHash('sha256').update(spki).digest('hex')}`;
}

/**
 * Which key this is, whatever its encoding: the key id of its SPKI with an EC point uncompressed.
 * OpenSSL keeps a compressed point compressed, so one EC key has two SPKIs (two key ids); this
 * gives both the same id. Never throws: a key it cannot re-encode keeps its own SPKI's id.
 */
export function keyMaterialId(key: KeyObject): string {
  const spki = key.export({ type: 'spki', format: 'der' });
  if (key.asymmetricKeyType !== 'ec') return keyIdOf(spki);
  try {
    return keyIdOf(createPublicKey({ key: key.export({ format: 'jwk' }), format: 'jwk' }).export({ type: 'spki', format: 'der' }));
  } catch {
    return keyIdOf(spki);
  }
}

/** The hash/padding combinations tried for one key, in order. */
type Scheme =
  | { readonly kind: 'digest'; readonly hash: string; readonly padding?: number; readonly saltLength?: number }
  | { readonly kind: 'ed25519' }
  | { readonly kind: 'ed25519ph' };

/**
 * - ECDSA P-256: SHA-256. P-384: SHA-384 (cosign 2.4+), then SHA-256 (older
 *   cosign). P-521: SHA-512 (sigstore's default for that curve). DER signatures.
 * - RSA: PKCS#1 v1.5 then PSS (salt length recovered from the signature, as Go's
 *   rsa.VerifyPSS with PSSSaltLengthAuto), SHA-256; an odd public exponent of at least 3.
 * - Ed25519: pure, then Ed25519ph (cosign's default for Ed25519 keys).
 */
function schemesFor(key: KeyObject): readonly Scheme[] | string {
  const type = key.asymmetricKeyType;
  const e = key.asymmetricKeyDetails?.publicExponent;
  // RFC 8017 3.1: an odd e of at least 3. OpenSSL also verifies with e = 1, under which any
  // message's PKCS#1 encoding is its own signature.
  if ((type === 'rsa' || type === 'rsa-pss') && (e === undefined || e < 3n || e % 2n === 0n)) {
    return `RSA public exponent ${String(e)} is not an odd number of at least 3 (RFC 8017 3.1)`;
  }
  switch (type) {
    case 'ec': {
      const curve = key.asymmetricKeyDetails?.namedCurve;
      if (curve === 'prime256v1') return [{ kind: 'digest', hash: 'sha256' }];
      if (curve === 'secp384r1') return [{ kind: 'digest', hash: 'sha384' }, { kind: 'digest', hash: 'sha256' }];
      if (curve === 'secp521r1') return [{ kind: 'digest', hash: 'sha512' }];
      return `unsupported EC curve ${curve ?? '?'}`;
    }
    case 'rsa':
      return [
        { kind: 'digest', hash: 'sha256', padding: constants.RSA_PKCS1_PADDING },
        { kind: 'digest', hash: 'sha256', padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_AUTO },
      ];
    case 'rsa-pss':
      return [{ kind: 'digest', hash: 'sha256', padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_AUTO }];
    case 'ed25519':
      return [{ kind: 'ed25519' }, { kind: 'ed25519ph' }];
    default:
      return `unsupported key type ${type ?? '?'}`;
  }
}

function rawEd25519(key: KeyObject): Buffer {
  const jwk = key.export({ format: 'jwk' });
  return Buffer.from(jwk.x ?? '', 'base64url');
}

function tryScheme(scheme: Scheme, key: KeyObject, data: Uint8Array, signature: Uint8Array): boolean {
  try {
    switch (scheme.kind) {
      case 'digest':
        return cryptoVerify(scheme.hash, data, { key, padding: scheme.padding, saltLength: scheme.saltLength }, signature);
      case 'ed25519':
        return cryptoVerify(null, data, key, signature);
      case 'ed25519ph':
        return verifyEd25519ph(rawEd25519(key), data, signature);
    }
  } catch {
    // OpenSSL throws on malformed signatures (bad DER, wrong length): that is "does not verify".
    return false;
  }
}

/**
 * Whether `signature` is a valid signature of `data` under `key` in any of the
 * schemes cosign uses for that key type. Never throws for a bad signature;
 * throws a TypeError for a key type sigil does not verify.
 */
export function verifyWithKey(key: KeyObject, data: Uint8Array, signature: Uint8Array): boolean {
  const schemes = schemesFor(key);
  if (typeof schemes === 'string') throw new TypeError(schemes);
  return schemes.some((s) => tryScheme(s, key, data, signature));
}
