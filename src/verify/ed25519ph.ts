/**
 * Ed25519ph verification (RFC 8032 §5.1, "phflag = 1"), which cosign writes for Ed25519 keys by
 * default. node:crypto verifies pure Ed25519 only (its `context` option selects neither the ph
 * instance nor the dom2 prefix with phflag 1, and OpenSSL's `instance` parameter is not exposed),
 * so the curve arithmetic is @noble/curves' (audited). Its own `ed25519ph.verify` is not used:
 * it checks the cofactored equation, and acceptance here follows Go's crypto/ed25519 (what cosign
 * signs and verifies with), which checks the cofactorless one — refusing two kinds of key Go
 * accepts, which no key generator writes:
 * - S must be canonical, below the group order L (S + L, which satisfies the equation, is refused);
 * - A and R must decode as RFC 8032 points (y < p, and not x = 0 with the sign bit set; Go
 *   accepts the non-canonical encodings of A);
 * - A must not be of small order (the identity, or of order 2, 4 or 8): under such a key,
 *   [S]B = R verifies whenever the order divides k, so anyone could sign. Go accepts it, OpenSSL
 *   (node:crypto's pure Ed25519) refuses it;
 * - the encoding of [S]B - [k]A must equal R byte for byte,
 *   with k = SHA-512(dom2(1, "") || R || A || SHA-512(M)) mod L.
 * Only public data flows through it (key, message, signature): variable-time arithmetic is fine.
 */
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import type { ed25519 as Ed25519 } from '@noble/curves/ed25519.js';

type Curve = typeof Ed25519;
type Point = ReturnType<Curve['Point']['fromBytes']>;

/**
 * @noble/curves' Ed25519 points and the order L of the prime-order subgroup, loaded the first
 * time an Ed25519ph signature is checked (~10 MiB of RSS that a process with no such key never
 * needs; require() of the ES module, synchronous like the check).
 */
let loaded: { readonly Point: Curve['Point']; readonly L: bigint } | undefined;
function curve(): { readonly Point: Curve['Point']; readonly L: bigint } {
  if (!loaded) {
    const { ed25519 } = createRequire(import.meta.url)('@noble/curves/ed25519.js') as { ed25519: Curve };
    loaded = { Point: ed25519.Point, L: ed25519.Point.CURVE().n };
  }
  return loaded;
}
const ENCODED_BYTES = 32;
/** dom2(1, "") of RFC 8032 §2: the prefix that separates Ed25519ph from pure Ed25519. */
const DOM2_PH = Buffer.concat([Buffer.from('SigEd25519 no Ed25519 collisions', 'ascii'), Buffer.from([1, 0])]);

function littleEndian(bytes: Uint8Array): bigint {
  let n = 0n;
  for (let i = bytes.length - 1; i >= 0; i--) n = (n << 8n) | BigInt(bytes[i]);
  return n;
}

/** RFC 8032 §5.1.3 decoding (noble's strict mode); undefined when the bytes are not a curve point. */
function decode(bytes: Uint8Array): Point | undefined {
  try {
    return curve().Point.fromBytes(bytes, false);
  } catch {
    return undefined;
  }
}

/**
 * Verifies an Ed25519ph signature (empty context) over `message`.
 * @param publicKey the raw 32-byte Ed25519 public key
 */
export function verifyEd25519ph(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean {
  if (publicKey.length !== ENCODED_BYTES || signature.length !== 2 * ENCODED_BYTES) return false;
  const r = signature.subarray(0, ENCODED_BYTES);
  const { Point, L } = curve();
  const s = littleEndian(signature.subarray(ENCODED_BYTES));
  if (s >= L) return false;
  const a = decode(publicKey);
  if (a === undefined || a.isSmallOrder() || decode(r) === undefined) return false;
  const ph = createHash('sha512').update(message).digest();
  const k = littleEndian(createHash('sha512').update(DOM2_PH).update(r).update(publicKey).update(ph).digest()) % L;
  const check = Point.BASE.multiplyUnsafe(s).subtract(a.multiplyUnsafe(k));
  return Buffer.from(check.toBytes()).equals(r);
}
