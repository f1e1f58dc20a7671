import { createHash, createPrivateKey } from 'node:crypto';
import type { KeyObject } from 'node:crypto';

// Ed25519ph signing (RFC 8032 5.1) for the test signer (signer.ts). node:crypto signs pure Ed25519 only (no prehash instance, OpenSSL 3.2's "Ed25519ph" is not
// exposed), so the prehash variant is done here on the raw seed with BigInt field arithmetic.
// Checked against RFC 8032 7.3's test vector in test/unit/signer.test.ts. Not constant time:
// test keys only.

const ED_P = 2n ** 255n - 19n;
const ED_L = 2n ** 252n + 27742317777372353535851937790883648493n;
const mod = (a: bigint, m = ED_P): bigint => ((a % m) + m) % m;
function modPow(b: bigint, e: bigint, m = ED_P): bigint {
  let r = 1n;
  let x = mod(b, m);
  for (let k = e; k > 0n; k >>= 1n) {
    if (k & 1n) r = (r * x) % m;
    x = (x * x) % m;
  }
  return r;
}
const modInv = (a: bigint): bigint => modPow(a, ED_P - 2n);
const ED_D = mod(-121665n * modInv(121666n));
type EdPoint = readonly [bigint, bigint, bigint, bigint]; // extended coordinates X, Y, Z, T
const ED_BX = 15112221349535400772501151409588531511454012693041857206046113283949847762202n;
const ED_BY = 46316835694926478169428394003475163141307993866256225615783033603165251855960n;
const ED_BASE: EdPoint = [ED_BX, ED_BY, 1n, mod(ED_BX * ED_BY)];

function edAdd(p: EdPoint, q: EdPoint): EdPoint {
  // RFC 8032 5.1.4, a = -1 twisted Edwards, unified addition
  const a = mod((p[1] - p[0]) * (q[1] - q[0]));
  const b = mod((p[1] + p[0]) * (q[1] + q[0]));
  const c = mod(p[3] * 2n * ED_D * q[3]);
  const d = mod(p[2] * 2n * q[2]);
  const e = b - a;
  const f = d - c;
  const g = d + c;
  const h = b + a;
  return [mod(e * f), mod(g * h), mod(f * g), mod(e * h)];
}

function edMul(s: bigint, p: EdPoint): EdPoint {
  let q: EdPoint = [0n, 1n, 1n, 0n];
  let addend = p;
  for (let k = s; k > 0n; k >>= 1n) {
    if (k & 1n) q = edAdd(q, addend);
    addend = edAdd(addend, addend);
  }
  return q;
}

const leToBig = (b: Uint8Array): bigint => BigInt(`0x${Buffer.from(b).reverse().toString('hex') || '0'}`);
function bigToLe32(n: bigint): Buffer {
  return Buffer.from(n.toString(16).padStart(64, '0'), 'hex').reverse();
}

function edEncode(p: EdPoint): Buffer {
  const zi = modInv(p[2]);
  const x = mod(p[0] * zi);
  const y = mod(p[1] * zi);
  const out = bigToLe32(y);
  out[31] |= Number(x & 1n) << 7;
  return out;
}

const sha512 = (...parts: Uint8Array[]): Buffer => {
  const h = createHash('sha512');
  for (const p of parts) h.update(p);
  return h.digest();
};

/** RFC 8032 dom2(phflag=1, context=""). */
const DOM2_PH = Buffer.concat([Buffer.from('SigEd25519 no Ed25519 collisions', 'ascii'), Buffer.from([1, 0])]);

/** Public key (32 bytes) from an Ed25519 seed, by the same arithmetic the signer uses. */
export function ed25519PublicFromSeed(seed: Buffer): Buffer {
  return edEncode(edMul(clampedScalar(seed), ED_BASE));
}

function clampedScalar(seed: Buffer): bigint {
  const h = sha512(seed).subarray(0, 32);
  h[0] &= 248;
  h[31] &= 127;
  h[31] |= 64;
  return leToBig(h);
}

export function ed25519phSign(privateKey: KeyObject, message: Buffer): Buffer {
  const jwk = privateKey.export({ format: 'jwk' });
  if (jwk.crv !== 'Ed25519' || typeof jwk.d !== 'string') throw new Error('ed25519ph needs an Ed25519 private key');
  const seed = Buffer.from(jwk.d, 'base64url');
  const s = clampedScalar(seed);
  const prefix = sha512(seed).subarray(32);
  const publicKey = edEncode(edMul(s, ED_BASE));
  const ph = sha512(message);
  const r = mod(leToBig(sha512(DOM2_PH, prefix, ph)), ED_L);
  const rEnc = edEncode(edMul(r, ED_BASE));
  const k = mod(leToBig(sha512(DOM2_PH, rEnc, publicKey, ph)), ED_L);
  return Buffer.concat([rEnc, bigToLe32(mod(r + k * s, ED_L))]);
}

/** PKCS#8 DER prefix of an Ed25519 private key (RFC 8410), followed by the 32-byte seed. */
const ED25519_PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');
export function ed25519KeyFromSeed(seed: Buffer): KeyObject {
  return createPrivateKey({ key: Buffer.concat([ED25519_PKCS8_PREFIX, seed]), format: 'der', type: 'pkcs8' });
}
