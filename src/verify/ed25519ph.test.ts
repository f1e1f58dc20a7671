// Ed25519ph acceptance follows Go's crypto/ed25519 (cosign's), on @noble/curves' arithmetic:
// canonical S, RFC 8032 point decoding, and the cofactorless equation (R compared byte for
// byte) — where noble's own ed25519ph.verify would check the cofactored one. The RFC 8032 §7.3
// vector and the test signer's signatures are checked in test/unit/verify-keys.test.ts.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, test } from 'node:test';
import { ED25519_TORSION_SUBGROUP, ed25519, ed25519ph } from '@noble/curves/ed25519.js';
import { verifyEd25519ph } from './ed25519ph.js';
import { ed25519KeyFromSeed, generateKey, keyFromPrivate, signPayload } from '../../test/helpers/signer.js';

const Point = ed25519.Point;
const L = Point.CURVE().n;
const DOM2_PH = Buffer.concat([Buffer.from('SigEd25519 no Ed25519 collisions', 'ascii'), Buffer.from([1, 0])]);
const le32 = (n: bigint): Buffer => Buffer.from(n.toString(16).padStart(64, '0'), 'hex').reverse();
const fromLe = (b: Uint8Array): bigint => BigInt(`0x${Buffer.from(b).reverse().toString('hex')}`);
const sha512 = (...parts: Uint8Array[]): Buffer => parts.reduce((h, p) => h.update(p), createHash('sha512')).digest();
const rawPublic = (k: ReturnType<typeof generateKey>): Buffer => Buffer.from(k.publicKey.export({ format: 'jwk' }).x ?? '', 'base64url');

describe('Ed25519ph with Go\'s acceptance rules', () => {
  const key = keyFromPrivate('ed25519ph', ed25519KeyFromSeed(Buffer.alloc(32, 7)));
  const message = Buffer.from('cosign payload');
  const signature = Buffer.from(signPayload(key, message), 'base64');

  test('a signature of the test signer verifies; another message, a flipped bit or pure Ed25519 do not', () => {
    assert.equal(verifyEd25519ph(rawPublic(key), message, signature), true);
    assert.equal(verifyEd25519ph(rawPublic(key), Buffer.from('other payload'), signature), false);
    const flipped = Buffer.from(signature);
    flipped[10] ^= 0x01;
    assert.equal(verifyEd25519ph(rawPublic(key), message, flipped), false);
    const pure = keyFromPrivate('ed25519', key.privateKey);
    assert.equal(verifyEd25519ph(rawPublic(key), message, Buffer.from(signPayload(pure, message), 'base64')), false);
  });

  test('S + L satisfies the equation but is not canonical: refused', () => {
    const s = fromLe(signature.subarray(32));
    const bigS = Buffer.concat([signature.subarray(0, 32), le32(s + L)]);
    assert.equal(verifyEd25519ph(rawPublic(key), message, bigS), false);
  });

  test('R or A that do not decode under RFC 8032 are refused: y >= p, or x = 0 with the sign bit', () => {
    const yTooBig = Buffer.alloc(32, 0xff);
    yTooBig[31] = 0x7f; // y = 2^255 - 1 >= p
    const negativeZero = Buffer.alloc(32);
    negativeZero[0] = 1; // y = 1: x = 0 (the identity)...
    negativeZero[31] = 0x80; // ...with the sign bit set
    for (const bad of [yTooBig, negativeZero]) {
      assert.equal(verifyEd25519ph(bad, message, signature), false);
      assert.equal(verifyEd25519ph(rawPublic(key), message, Buffer.concat([bad, signature.subarray(32)])), false);
    }
  });

  test('a small-order public key (the identity, or of order 2, 4 or 8) is refused: signatures made without any private key satisfy its equation', () => {
    // [k]A is the identity whenever the order of A divides k: then R = [S]B verifies for any S.
    const s = 0x0123456789abcdefn;
    const rBytes = Point.BASE.multiplyUnsafe(s).toBytes();
    const forged = Buffer.concat([rBytes, le32(s)]);
    for (const hex of ED25519_TORSION_SUBGROUP) {
      const publicKey = Point.fromHex(hex).toBytes();
      let msg = Buffer.from('payload 0');
      for (let i = 1; !Point.fromBytes(publicKey).multiplyUnsafe(fromLe(sha512(DOM2_PH, rBytes, publicKey, sha512(msg))) % L).is0(); i++) msg = Buffer.from(`payload ${i}`);
      assert.equal(ed25519ph.verify(forged, msg, publicKey), true, `noble accepts the forgery under ${hex}`);
      assert.equal(verifyEd25519ph(publicKey, msg, forged), false, hex);
    }
  });

  test('the cofactorless equation: a key with a torsion component and a signature valid only up to the cofactor is refused', () => {
    // A = [a]B + T, T of order 8. S = r + k·a makes [S]B - [k]A = R - [k]T: R itself only when 8 | k.
    const torsion = ED25519_TORSION_SUBGROUP.map((h) => Point.fromHex(h)).find((t) => !t.multiplyUnsafe(4n).is0());
    assert.ok(torsion, 'a point of order 8');
    const a = 0x1234567890abcdef1234567890abcdefn * 8n;
    const publicKey = Point.BASE.multiplyUnsafe(a).add(torsion).toBytes();
    const r = 0xfedcba0987654321fedcba0987654321n;
    const rBytes = Point.BASE.multiplyUnsafe(r).toBytes();
    let msg = Buffer.from('payload 0');
    let k = 0n;
    for (let i = 0; k % 8n === 0n; i++) {
      msg = Buffer.from(`payload ${i}`);
      k = fromLe(sha512(DOM2_PH, rBytes, publicKey, sha512(msg))) % L;
    }
    const sig = Buffer.concat([rBytes, le32((r + k * a) % L)]);
    assert.equal(ed25519ph.verify(sig, msg, publicKey), true, 'noble accepts it (cofactored)');
    assert.equal(verifyEd25519ph(publicKey, msg, sig), false, 'Go, and sigil, do not');
  });
});
