import assert from 'node:assert/strict';
import { test } from 'node:test';
import { peerOrigin, sameSecret, signHolder, verifyHolder } from './peer-auth.js';

const token = 'a-peer-token-of-32-characters-xx';
const key = 'blob:sha256:0000000000000000000000000000000000000000000000000000000000000001';

test('a holder value signed with the token verifies to its address', () => {
  const value = signHolder(token, key, 'https://replica-1.sigil.svc:5001');
  assert.equal(verifyHolder(token, key, value), 'https://replica-1.sigil.svc:5001');
  assert.equal(verifyHolder(token, key, signHolder(token, key, 'http://10.0.0.7:5001')), 'http://10.0.0.7:5001');
});

test('a value signed with another token, or for another lease key, names no address', () => {
  const value = signHolder(token, key, 'https://replica-1:5001');
  assert.equal(verifyHolder('another-token-of-32-characters-x', key, value), undefined);
  assert.equal(verifyHolder(token, key.replace(/1$/, '2'), value), undefined, 'replayed under another key');
});

test('an address written into Redis next to a MAC of another address is refused (no steering to an arbitrary host)', () => {
  const value = signHolder(token, key, 'https://replica-1:5001');
  const mac = value.split(' ')[1]!;
  assert.equal(verifyHolder(token, key, `https://attacker.example:443 ${mac}`), undefined);
  assert.equal(verifyHolder(token, key, `https://replica-1:5001/steal ${mac}`), undefined);
  assert.equal(verifyHolder(token, key, `https://replica-1:5001`), undefined, 'no MAC at all');
  assert.equal(verifyHolder(token, key, `https://replica-1:5001 ${mac.toUpperCase()}`), undefined);
  assert.equal(verifyHolder(token, key, `https://replica-1:5001 ${mac.slice(2)}`), undefined, 'a short MAC');
  assert.equal(verifyHolder(token, key, `https://replica-1:5001 ${mac}00`), undefined, 'a long MAC');
  assert.equal(verifyHolder(token, key, ''), undefined);
});

test('a correctly signed value whose address is not a bare http(s)://host:port is refused all the same', () => {
  // what a replica would sign only if its own config were wrong: verification does not rely on it
  const forge = (address: string): string => {
    const good = signHolder(token, key, 'http://x:1');
    return `${address} ${good.split(' ')[1]!}`;
  };
  for (const bad of ['http://user:pw@x:1', 'file:///etc/passwd', 'http://x:1/path', 'http://x:1?q', 'http://X:1']) {
    assert.equal(verifyHolder(token, key, forge(bad)), undefined, bad);
  }
});

test('signing takes only a bare http(s)://host:port and signs its canonical spelling', () => {
  assert.throws(() => signHolder(token, key, 'ftp://replica:21'), /not http\(s\):\/\/host:port/);
  assert.throws(() => signHolder(token, key, 'https://replica:5001/v2'), /not http\(s\):\/\/host:port/);
  assert.throws(() => signHolder(token, key, 'https://u:p@replica:5001'), /not http\(s\):\/\/host:port/);
  assert.throws(() => signHolder(token, key, 'replica:5001 x'), /not http\(s\):\/\/host:port/);
  assert.equal(verifyHolder(token, key, signHolder(token, key, 'https://Replica:443/')), 'https://replica');
  assert.equal(peerOrigin('http://[::1]:5001'), 'http://[::1]:5001');
  assert.equal(peerOrigin('not a url'), undefined);
});

test('a presented secret matches only the expected one', () => {
  assert.equal(sameSecret(token, token), true);
  assert.equal(sameSecret(`${token}x`, token), false);
  assert.equal(sameSecret('', token), false);
  assert.equal(sameSecret(token.toUpperCase(), token), false);
});
