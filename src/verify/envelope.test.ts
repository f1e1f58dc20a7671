// cosign's `.att` layers as prepareEnvelope reads them: a DSSE envelope with one signature over
// the pre-authentication encoding of an in-toto statement about the served digest. Anything else
// is refused with its reason before any signature is checked; the signature binds the payload
// type as well as the payload.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Digest } from '../oci/digest.js';
import { MAX_JSON_DEPTH } from '../oci/json.js';
import { prepareEnvelope } from './envelope.js';
import { parsePublicKey } from './key-signature.js';
import { verifyLegacy } from './legacy.js';
import { ANNOTATION_MAX_BYTES, BUNDLE_MAX_BYTES } from './limits.js';
import { loadTrust } from './trust.js';
import type { CandidateSignature } from './types.js';
import { PREDICATE, attestationLayer, statement } from '../../test/helpers/attester.js';
import { MEDIA, generateKey, preAuthEncoding, signWith } from '../../test/helpers/signer.js';
import { PUBLIC_GOOD_ROOT, PGI_ROOT, keyAuthority } from '../../test/helpers/verify-fixtures.js';

const digest = `sha256:${'d1'.repeat(32)}` as Digest;
const other = `sha256:${'e2'.repeat(32)}` as Digest;
const key = generateKey('p256');
const stmt = statement(digest, PREDICATE.SLSA_V1, { runDetails: { builder: { id: 'x' } } });
const trust = loadTrust([PGI_ROOT], { publicGoodPath: PUBLIC_GOOD_ROOT });

const candidate = (envelope: Buffer | string | object, annotations: Record<string, string> = {}): Extract<CandidateSignature, { format: 'attestation' }> => ({
  format: 'attestation',
  source: 'att',
  envelope: Buffer.isBuffer(envelope) ? envelope : Buffer.from(typeof envelope === 'string' ? envelope : JSON.stringify(envelope)),
  annotations,
});

/** A well-formed envelope's fields, signed by `key`, to be broken one at a time. */
function fields(payloadType: string = MEDIA.IN_TOTO, payload = stmt): Record<string, unknown> {
  return { payloadType, payload: payload.toString('base64'), signatures: [{ keyid: '', sig: signWith(key, preAuthEncoding(payloadType, payload)).toString('base64') }] };
}

function problem(envelope: Buffer | string | object, annotations?: Record<string, string>): string {
  const p = prepareEnvelope(candidate(envelope, annotations), { digest });
  assert.equal(typeof p, 'string', 'expected a refusal');
  return p as string;
}

describe('a well-formed envelope', () => {
  test('is prepared with its statement and predicate type, and verifies with its key', () => {
    const p = prepareEnvelope(candidate(attestationLayer(key, stmt).envelope), { digest });
    assert.equal(typeof p, 'object');
    if (typeof p === 'string') return;
    assert.equal(p.attested.predicateType, PREDICATE.SLSA_V1);
    assert.deepEqual(p.attested.statement.subject, JSON.parse(stmt.toString()).subject);
    assert.deepEqual(verifyLegacy(p, keyAuthority(key.publicPem, 'ignore'), parsePublicKey(key.publicPem), trust, new Date()), { kind: 'key', keyId: key.keyId });
  });
});

describe('malformed envelopes are refused with their reason', () => {
  test('not JSON, not an object', () => {
    assert.match(problem('{"payloadType":'), /^the DSSE envelope is not JSON: /);
    assert.equal(problem([fields()]), 'the DSSE envelope is not a JSON object');
  });

  test(`nested deeper than MAX_JSON_DEPTH (${MAX_JSON_DEPTH}), in the envelope or its statement`, () => {
    assert.match(problem(`${'['.repeat(MAX_JSON_DEPTH + 1)}${']'.repeat(MAX_JSON_DEPTH + 1)}`), /is nested deeper than 64 levels/);
    const deep = Buffer.from(`{"_type":"https://in-toto.io/Statement/v0.1","predicateType":"t","subject":[],"predicate":${'['.repeat(MAX_JSON_DEPTH)}${']'.repeat(MAX_JSON_DEPTH)}}`);
    assert.match(problem(fields(MEDIA.IN_TOTO, deep)), /^in-toto statement is nested deeper than 64 levels/);
  });

  test('no payloadType; no, two or a non-object signature; an empty signature', () => {
    const { payloadType: _, ...untyped } = fields();
    assert.equal(problem(untyped), 'envelope has no payloadType');
    assert.equal(problem({ ...fields(), signatures: [] }), 'envelope has 0 signatures; cosign writes one');
    const two = fields().signatures as unknown[];
    assert.equal(problem({ ...fields(), signatures: [two[0], two[0]] }), 'envelope has 2 signatures; cosign writes one');
    assert.equal(problem({ ...fields(), signatures: ['sig'] }), 'envelope has 1 signatures; cosign writes one');
    assert.equal(problem({ ...fields(), signatures: undefined }), 'envelope has no signatures; cosign writes one');
    assert.equal(problem({ ...fields(), signatures: [{ sig: '' }] }), 'envelope signature is empty');
  });

  test('payload or signature that is not standard base64', () => {
    assert.equal(problem({ ...fields(), payload: stmt.toString('base64url') + '-_' }), 'envelope payload is not base64');
    assert.equal(problem({ ...fields(), payload: 42 }), 'envelope payload is not base64');
    assert.equal(problem({ ...fields(), signatures: [{ sig: 'not base64!' }] }), 'envelope signature is not base64');
  });

  test('a payload that is not an in-toto statement about the served digest', () => {
    const s = (doc: object): Buffer => Buffer.from(JSON.stringify(doc));
    const subject = [{ name: 'x', digest: { sha256: digest.slice(7) } }];
    assert.equal(problem(fields(MEDIA.IN_TOTO, s({ _type: 'https://example.com/Statement', predicateType: 't', subject }))), 'statement _type "https://example.com/Statement" is not an in-toto statement');
    assert.equal(problem(fields(MEDIA.IN_TOTO, s({ _type: 'https://in-toto.io/Statement/v1', subject }))), 'statement has no predicateType');
    assert.equal(problem(fields(MEDIA.IN_TOTO, s({ _type: 'https://in-toto.io/Statement/v1', predicateType: 't' }))), 'statement has no subject list');
    assert.equal(problem(fields(MEDIA.IN_TOTO, statement(other, 't', {}))), `statement names ${other} not the served ${digest}`);
    assert.equal(problem(fields(MEDIA.IN_TOTO, statement(undefined, 't', {}, { subjects: [{ name: 'x', digest: { sha512: 'ab' } }] }))), `statement names no sha256 subject not the served ${digest}`);
    assert.match(problem(fields(MEDIA.IN_TOTO, Buffer.from('not json'))), /^in-toto statement is not JSON/);
  });

  test('a statement naming thousands of other subjects: the reason lists four, and how many more', () => {
    const many = Array.from({ length: 5000 }, (_, i) => ({ name: `x${i}`, digest: { sha256: i.toString(16).padStart(64, '0') } }));
    const long = { name: 'long', digest: { sha256: 'f'.repeat(10_000) } };
    const reason = problem(fields(MEDIA.IN_TOTO, statement(undefined, 't', {}, { subjects: [long, ...many] })));
    assert.equal(reason, `statement names sha256:${'f'.repeat(128)}, sha256:${'0'.repeat(64)}, sha256:${'0'.repeat(63)}1, sha256:${'0'.repeat(63)}2 and 4997 more not the served ${digest}`);
  });

  test('too large: the envelope, an annotation', () => {
    assert.equal(problem(Buffer.alloc(BUNDLE_MAX_BYTES + 1, 0x20)), `envelope of ${BUNDLE_MAX_BYTES + 1} bytes exceeds BUNDLE_MAX_BYTES (${BUNDLE_MAX_BYTES})`);
    assert.equal(problem(fields(), { 'dev.sigstore.cosign/chain': 'x'.repeat(ANNOTATION_MAX_BYTES + 1) }), `annotation dev.sigstore.cosign/chain exceeds ANNOTATION_MAX_BYTES (${ANNOTATION_MAX_BYTES})`);
  });

  test('a certificate annotation that is not a certificate', () => {
    assert.match(problem(fields(), { 'dev.sigstore.cosign/certificate': '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n' }), /^dev\.sigstore\.cosign\/certificate is not a PEM certificate/);
  });
});

describe('payload type confusion', () => {
  test('only the in-toto payload type counts, even correctly signed', () => {
    assert.equal(problem(fields('application/json')), 'DSSE payload type is "application/json", not application/vnd.in-toto+json');
    assert.equal(problem(fields('application/vnd.in-toto+json; charset=utf-8')), 'DSSE payload type is "application/vnd.in-toto+json; charset=utf-8", not application/vnd.in-toto+json');
  });

  test('a signature made under another payload type does not verify once the envelope claims in-toto (DSSE signs the type too)', () => {
    const signedAsOther = { ...fields('application/vnd.other+json'), payloadType: MEDIA.IN_TOTO };
    const p = prepareEnvelope(candidate(signedAsOther), { digest });
    assert.equal(typeof p, 'object');
    if (typeof p === 'string') return;
    assert.throws(() => verifyLegacy(p, keyAuthority(key.publicPem, 'ignore'), parsePublicKey(key.publicPem), trust, new Date()), /signature does not verify with key/);
  });

  test('a signature over the bare payload (no PAE) does not verify', () => {
    const bare = { ...fields(), signatures: [{ sig: signWith(key, stmt).toString('base64') }] };
    const p = prepareEnvelope(candidate(bare), { digest });
    if (typeof p === 'string') assert.fail(p);
    assert.throws(() => verifyLegacy(p, keyAuthority(key.publicPem, 'ignore'), parsePublicKey(key.publicPem), trust, new Date()), /signature does not verify with key/);
  });
});
