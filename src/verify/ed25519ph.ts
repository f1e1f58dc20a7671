/**
 * Ed25519ph verification (RFC 8032 §5.1, "phflag = 1"), which cosign writes for
 * Ed25519 keys by default. node:crypto verifies pure Ed25519 only (its `context`
 * option selects neither the ph instance nor the dom2 prefix with phflag 1, and
 * OpenSSL's `instance` parameter is not exposed), so the group arithmetic is
 * done here with BigInt. Only public data flows through it (public key,
 * message, signature): constant time is not needed.
 *
 * Acceptance follows Go's crypto/ed25519 (what cosign uses): S must be below
 * the group order, A and R must decode, and the encoding of [S]B - [k]A must
 * equal R byte for byte (the cofactorless equation).
 */
import { createHash } from 'node:crypto';

const P = 2n ** 255n - 19n;
/** The order of the prime-order subgroup. */
export const L = 2n ** 252n + 27742317777372353535851937790883648493n;
const D = mod(-121665n * inverse(121666n));
const SQRT_M1 = pow(2n, (P - 1n) / 4n);
/** dom2(1, "") of RFC 8032 §2: the prefix that separates Ed25519ph from pure Ed25519. */
const DOM2_PH = Buffer.concat([Buffer.from('SigEd25519 no Ed25519 collisions', 'ascii'), Buffer.from([1, 0])]);

/** A point in extended coordinates (X:Y:Z:T), x = X/Z, y = Y/Z, xy = T/Z. */
export interface Point {
  readonly x: bigint;
  readonly y: bigint;
  readonly z: bigint;
  readonly t: bigint;
}

function mod(a: bigint): bigint {
  const r = a % P;
  return r >= 0n ? r : r + P;
}

function pow(base: bigint, exp: bigint): bigint {
  let result = 1n;
  let b = mod(base);
  let e = exp;
  while (e > 0n) {
    if (e & 1n) result = (result * b) % P;
    b = (b * b) % P;
    e >>= 1n;
  }
  return result;
}

function inverse(a: bigint): bigint {
  return pow(a, P - 2n);
}

const IDENTITY: Point = { x: 0n, y: 1n, z: 1n, t: 0n };

/** RFC 8032 §5.1.4 addition for a = -1 twisted Edwards curves (complete: also doubles). */
function add(p: Point, q: Point): Point {
  const a = mod((p.y - p.x) * (q.y - q.x));
  const b = mod((p.y + p.x) * (q.y + q.x));
  const c = mod(2n * p.t * q.t * D);
  const d = mod(2n * p.z * q.z);
  const e = b - a;
  const f = d - c;
  const g = d + c;
  const h = b + a;
  return { x: mod(e * f), y: mod(g * h), z: mod(f * g), t: mod(e * h) };
}

function negate(p: Point): Point {
  return { x: mod(-p.x), y: p.y, z: p.z, t: mod(-p.t) };
}

/** [n]p by double-and-add. */
export function multiply(p: Point, n: bigint): Point {
  let result = IDENTITY;
  let addend = p;
  let k = n;
  while (k > 0n) {
    if (k & 1n) result = add(result, addend);
    addend = add(addend, addend);
    k >>= 1n;
  }
  return result;
}

function littleEndian(bytes: Uint8Array): bigint {
  let n = 0n;
  for (let i = bytes.length - 1; i >= 0; i--) n = (n << 8n) | BigInt(bytes[i]);
  return n;
}

/** The 32-byte encoding: y little-endian, the sign of x in the top bit. */
export function encodePoint(p: Point): Buffer {
  const zInv = inverse(p.z);
  const x = mod(p.x * zInv);
  let y = mod(p.y * zInv);
  const out = Buffer.alloc(32);
  for (let i = 0; i < 32; i++) {
    out[i] = Number(y & 0xffn);
    y >>= 8n;
  }
  if (x & 1n) out[31] |= 0x80;
  return out;
}

/** RFC 8032 §5.1.3 point decoding; undefined when the bytes are not a curve point. */
export function decodePoint(bytes: Uint8Array): Point | undefined {
  if (bytes.length !== 32) return undefined;
  const copy = Buffer.from(bytes);
  const xSign = (copy[31] & 0x80) >> 7;
  copy[31] &= 0x7f;
  const y = littleEndian(copy);
  if (y >= P) return undefined;
  const y2 = mod(y * y);
  const u = mod(y2 - 1n);
  const v = mod(D * y2 + 1n);
  // x = (u/v)^((p+3)/8) computed as u v^3 (u v^7)^((p-5)/8)
  let x = mod(u * pow(v, 3n) * pow(u * pow(v, 7n), (P - 5n) / 8n));
  const vx2 = mod(v * x * x);
  if (vx2 === mod(-u)) x = mod(x * SQRT_M1);
  else if (vx2 !== u) return undefined;
  if (x === 0n && xSign === 1) return undefined;
  if (Number(x & 1n) !== xSign) x = P - x;
  return { x, y, z: 1n, t: mod(x * y) };
}

/** The generator B of RFC 8032 §5.1. */
export const BASE: Point = (() => {
  const y = mod(4n * inverse(5n));
  const x = 15112221349535400772501151409588531511454012693041857206046113283949847762202n;
  return { x, y, z: 1n, t: mod(x * y) };
})();

/** SHA-512(dom2(1, "") || parts...) read little-endian modulo L. */
export function phScalar(...parts: Uint8Array[]): bigint {
  const h = createHash('sha512').update(DOM2_PH);
  for (const part of parts) h.update(part);
  return littleEndian(h.digest()) % L;
}

/**
 * Verifies an Ed25519ph signature (empty context) over `message`:
 * PH(M) = SHA-512(M), k = SHA-512(dom2(1,"") || R || A || PH(M)).
 * @param publicKey the raw 32-byte Ed25519 public key
 */
export function verifyEd25519ph(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean {
  if (publicKey.length !== 32 || signature.length !== 64) return false;
  const a = decodePoint(publicKey);
  const rBytes = signature.subarray(0, 32);
  if (a === undefined || decodePoint(rBytes) === undefined) return false;
  const s = littleEndian(signature.subarray(32));
  if (s >= L) return false;
  const ph = createHash('sha512').update(message).digest();
  const k = phScalar(rBytes, publicKey, ph);
  const check = add(multiply(BASE, s), multiply(negate(a), k));
  return encodePoint(check).equals(rBytes);
}
