// verifyCandidates as the gate sees it: outcomes, per-candidate reasons,
// authority order, limits, and exceptions turned into reasons; plus the
// payload binding and identity matching rules it relies on.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { verifyCandidates } from '../../src/verify/candidates.js';
import { legacyBindingProblem, statementBindingProblem } from '../../src/verify/binding.js';
import { matchesWhole, matchIdentity } from '../../src/verify/identity.js';
import { ANNOTATION_MAX_BYTES, CERT_CHAIN_MAX_LENGTH, LEGACY_PAYLOAD_MAX_BYTES } from '../../src/verify/limits.js';
import { signerHeader, type CandidateSignature } from '../../src/verify/types.js';
import type { Authority } from '../../src/config/types.js';
import type { Digest } from '../../src/oci/digest.js';
import { cosignPayload, generateKey, legacyLayer, signStatement } from '../helpers/signer.js';
import { keyAuthority, keyless, legacyFixture, onlyReason, policy, publicGoodTrust } from '../helpers/verify-fixtures.js';

const digest = `sha256:${'d1'.repeat(32)}` as Digest;
const trust = publicGoodTrust();
const legacy = (payload: Buffer, annotations: Record<string, string>, source = 'layer 0'): CandidateSignature => ({ format: 'legacy', source, payload, annotations });

describe('outcomes', () => {
  const key = generateKey('p256');
  const good = legacyLayer(key, digest);
  const bad = legacyLayer(generateKey('p256'), digest);

  test('no candidates: unsigned', () => {
    assert.deepEqual(verifyCandidates([], { digest }, policy([keyAuthority(key.publicPem, 'ignore')]), trust), { kind: 'unsigned', checks: [] });
  });

  test('no authority: indeterminate, not invalid', () => {
    const out = verifyCandidates([legacy(good.payload, good.annotations)], { digest }, policy([]), trust);
    assert.deepEqual(out, { kind: 'indeterminate', cause: 'policy test has no authority to verify with', checks: [] });
  });

  test('verified by the first passing pair, with the failures before it', () => {
    const out = verifyCandidates(
      [legacy(bad.payload, bad.annotations, 'layer 0'), legacy(good.payload, good.annotations, 'layer 1'), legacy(good.payload, good.annotations, 'layer 2')],
      { digest },
      policy([keyAuthority(key.publicPem, 'ignore')]),
      trust,
    );
    assert.equal(out.kind, 'verified');
    assert.deepEqual(out.checks, [
      { source: 'layer 0', ok: false, reason: `signature does not verify with key ${key.keyId}` },
      { source: 'layer 1', ok: true, signer: { kind: 'key', keyId: key.keyId }, authority: 0 },
    ]);
    assert.equal(out.kind === 'verified' && signerHeader(out.signer), key.keyId);
  });

  test('invalid keeps every candidate and, with several authorities, every authority\'s reason', () => {
    const other = generateKey('p384');
    const authorities: Authority[] = [keyAuthority(key.publicPem, 'require'), keyAuthority(other.publicPem, 'ignore'), keyless('https://issuer', 'me')];
    const out = verifyCandidates([legacy(bad.payload, bad.annotations, 'a'), legacy(cosignPayload(digest, 'x'), {}, 'b')], { digest }, policy(authorities), trust);
    assert.equal(out.kind, 'invalid');
    assert.deepEqual(out.checks, [
      {
        source: 'a',
        ok: false,
        reason: [
          `authority 0 (key ${key.keyId}): signature does not verify with key ${key.keyId}`,
          `authority 1 (key ${other.keyId}): signature does not verify with key ${other.keyId}`,
          'authority 2 (keyless me (issuer https://issuer)): no dev.sigstore.cosign/certificate annotation: a keyless authority needs a certificate',
        ].join('; '),
      },
      { source: 'b', ok: false, reason: 'no dev.cosignproject.cosign/signature annotation' },
    ]);
  });

  test('a key that does not parse is that authority\'s reason', () => {
    const reason = onlyReason(verifyCandidates([legacy(good.payload, good.annotations)], { digest }, policy([keyAuthority('not a pem', 'ignore', 'bad.pub')]), trust));
    assert.match(reason, /^key bad\.pub does not parse: /);
  });
});

describe('limits and malformed input are reasons', () => {
  const key = generateKey('p256');
  const p = policy([keyAuthority(key.publicPem, 'ignore'), keyless('https://github.com/login/oauth', 'mitr@redhat.com')]);
  const good = legacyLayer(key, digest);
  const reasonOf = (c: CandidateSignature): string => onlyReason(verifyCandidates([c], { digest }, p, trust));

  test('payload, annotation and chain limits', () => {
    const huge = Buffer.alloc(LEGACY_PAYLOAD_MAX_BYTES + 1, 0x20);
    assert.equal(reasonOf(legacy(huge, good.annotations)), `payload of ${huge.length} bytes exceeds LEGACY_PAYLOAD_MAX_BYTES (${LEGACY_PAYLOAD_MAX_BYTES})`);
    const long = { ...good.annotations, 'x-note': 'a'.repeat(ANNOTATION_MAX_BYTES + 1) };
    assert.equal(reasonOf(legacy(good.payload, long)), `annotation x-note exceeds ANNOTATION_MAX_BYTES (${ANNOTATION_MAX_BYTES})`);
    const f = legacyFixture('dir-img-cosign-fulcio-rekor-valid');
    const certs = f.candidate.annotations['dev.sigstore.cosign/chain'].repeat(CERT_CHAIN_MAX_LENGTH);
    const chained = legacy(f.candidate.payload, { ...f.candidate.annotations, 'dev.sigstore.cosign/chain': certs });
    assert.equal(onlyReason(verifyCandidates([chained], { digest: f.digest }, p, trust)), `${2 * CERT_CHAIN_MAX_LENGTH + 1} certificates exceed CERT_CHAIN_MAX_LENGTH (${CERT_CHAIN_MAX_LENGTH})`);
  });

  test('garbage signature, certificate and payload', () => {
    assert.equal(reasonOf(legacy(good.payload, { 'dev.cosignproject.cosign/signature': '%%%' })), 'dev.cosignproject.cosign/signature is not base64');
    const badCert = { ...good.annotations, 'dev.sigstore.cosign/certificate': '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n' };
    assert.match(reasonOf(legacy(good.payload, badCert)), /^dev\.sigstore\.cosign\/certificate is not a PEM certificate: /);
    assert.match(reasonOf(legacy(Buffer.from('{"critical":'), good.annotations)), /^payload is not JSON: /);
    assert.equal(reasonOf(legacy(Buffer.from('[]'), good.annotations)), 'payload is not a JSON object');
  });
});

describe('legacy payload binding', () => {
  const none = { annotations: {} };
  test('type, digest and optional', () => {
    const payload = (v: unknown): Buffer => Buffer.from(JSON.stringify(v));
    const critical = { identity: { 'docker-reference': 'x' }, image: { 'docker-manifest-digest': digest }, type: 'cosign container image signature' };
    assert.equal(legacyBindingProblem(payload({ critical, optional: null }), digest, none), undefined);
    assert.equal(legacyBindingProblem(payload({ critical }), digest, none), undefined);
    assert.equal(legacyBindingProblem(payload({ critical: { ...critical, type: 'atomic container signature' } }), digest, none), 'payload type is "atomic container signature", not "cosign container image signature"');
    assert.equal(legacyBindingProblem(payload({ critical: { ...critical, image: {} } }), digest, none), 'payload has no critical.image.docker-manifest-digest');
    assert.equal(legacyBindingProblem(payload({ critical, optional: 'x' }), digest, none), 'payload "optional" is neither an object nor null');
    assert.equal(legacyBindingProblem(payload({ critical, optional: { env: 'prod', extra: 'ok' } }), digest, { annotations: { env: 'prod' } }), undefined);
    assert.equal(legacyBindingProblem(payload({ critical, optional: { env: 'dev' } }), digest, { annotations: { env: 'prod' } }), 'annotation "env" is "dev" in the signed payload, policy wants "prod"');
    assert.equal(legacyBindingProblem(payload({ critical, optional: { env: 1 } }), digest, { annotations: { env: '1' } }), 'annotation "env" is 1 in the signed payload, policy wants "1"');
  });
});

describe('statement binding', () => {
  const p = { annotations: {}, predicateTypes: ['https://sigstore.dev/cosign/sign/v1'] };
  test('payload type, predicate type, subject', () => {
    assert.equal(statementBindingProblem('application/vnd.in-toto+json', signStatement(digest), digest, p), undefined);
    assert.equal(statementBindingProblem('text/plain', signStatement(digest), digest, p), 'DSSE payload type is "text/plain", not application/vnd.in-toto+json');
    const other = `sha256:${'0f'.repeat(32)}` as Digest;
    assert.equal(statementBindingProblem('application/vnd.in-toto+json', signStatement(other), digest, p), `statement names ${other} not the served ${digest}`);
    assert.equal(statementBindingProblem('application/vnd.in-toto+json', Buffer.from('{"_type":"x"}'), digest, p), 'statement _type "x" is not an in-toto statement');
    const sha512 = `sha512:${'ee'.repeat(64)}` as Digest;
    assert.equal(statementBindingProblem('application/vnd.in-toto+json', signStatement(sha512), sha512, p), undefined);
  });
});

describe('identity matching', () => {
  test('a match must span the whole value, whatever the RegExp', () => {
    assert.equal(matchesWhole(/^mitr@redhat\.com$/, 'mitr@redhat.com'), true);
    assert.equal(matchesWhole(/mitr@redhat\.com/, 'mitr@redhat.com.evil'), false);
    assert.equal(matchesWhole(/mitr@redhat\.com/, 'evil-mitr@redhat.com'), false);
    assert.equal(matchesWhole(/^mitr@redhat\.co$/, 'mitr@redhat.com'), false);
    assert.equal(matchesWhole(/^https:\/\/github\.com\/acme\/.+$/, 'https://github.com/acme/app'), true);
    const global = /acme/g;
    assert.equal(matchesWhole(global, 'acme'), true);
    assert.equal(matchesWhole(global, 'acme'), true); // no lastIndex state carried over
  });

  test('the SAN that matched is the subject reported', () => {
    const a = keyless(/^$/, /^.*\.example\.com$/) as Extract<Authority, { kind: 'keyless' }>;
    assert.deepEqual(matchIdentity(a, { sans: ['qiwan@redhat.com', 'myhost.example.com'], issuer: '' }), { ok: true, subject: 'myhost.example.com', issuer: '' });
    assert.deepEqual(matchIdentity(a, { sans: [], issuer: '' }), { ok: false, reason: 'certificate subject none (no subject alternative name) does not match ^.*\\.example\\.com$' });
  });

  test('the containers/image keyless fixture names mitr@redhat.com and nothing like it', () => {
    const f = legacyFixture('dir-img-cosign-fulcio-rekor-valid');
    const evil = policy([keyless('https://github.com/login/oauth', 'mitr@redhat.com.evil')]);
    assert.match(onlyReason(verifyCandidates([f.candidate], { digest: f.digest }, evil, trust)), /^certificate subject "mitr@redhat\.com" does not match/);
  });
});
