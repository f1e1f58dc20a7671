// What cosign v3 writes against a Rekor v2 log, pulled through sigil: a Sigstore bundle whose log
// entry has an inclusion proof and no SET, its signing time from an RFC 3161 timestamp; and
// cosign's legacy `.sig` with the `dev.sigstore.cosign/rfc3161timestamp` annotation. The private
// log and TSA are cross-checked with @sigstore/verify in test/unit/signer-rekor-v2-tsa.test.ts.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { pushBundleReferrer, pushLegacySignature } from '../helpers/publish.js';
import { ANNOTATION, bundleFor, legacyLayer, type KeylessIdentity } from '../helpers/signer.js';
import { CHECKPOINT_SIGNATURES_MAX } from '../../src/verify/limits.js';
import { createTimestampingSigstore, writeCaTsaRoot, type TimestampingSigstore } from '../helpers/timestamping.js';
import { ISSUER, SUBJECT, pull, startVerifyEnv, type VerifyEnv } from '../helpers/verify-env.js';
import type { SigilHandle } from '../helpers/sigil.js';

const HOUR_MS = 3_600_000;
let env: VerifyEnv;
/** Trusts the whole private Sigstore (Fulcio, CT log, Rekor v1 and v2, TSA). */
let sigil: SigilHandle;
/** Trusts its CA and TSA only (a root without logs: cosign --insecure-ignore-tlog for that CA). */
let sigilCaTsa: SigilHandle;
let t: TimestampingSigstore;

before(async () => {
  env = await startVerifyEnv();
  t = await createTimestampingSigstore(join(env.dir, 'v2'));
  const caOnly = writeCaTsaRoot(t.sigstore, join(env.dir, 'ca-tsa.json'));
  const policies = `
  - name: keyless
    match: ["reg.test/**"]
    mode: enforce
    authorities:
      - keyless:
          issuer: ${ISSUER}
          subjectRegExp: ^https://github\\.com/acme/.+$
`;
  sigil = await env.sigil(policies, { trustedRoots: [t.sigstore.trustedRootPath] });
  sigilCaTsa = await env.sigil(policies, { trustedRoots: [caOnly] });
});
after(async () => {
  await env?.stop();
});

const signer = (opts: { agoMs?: number; sct?: boolean } = {}): KeylessIdentity =>
  t.sigstore.issueIdentity(SUBJECT, ISSUER, { sct: opts.sct, ...(opts.agoMs ? { notBefore: new Date(Math.floor((Date.now() - opts.agoMs) / 1000) * 1000) } : {}) });

async function pushWithBundle(repo: string, bundle: (digest: string) => Buffer): Promise<void> {
  const img = await env.push(repo, 'v1');
  await pushBundleReferrer(env.target, repo, { digest: img.digest, size: img.manifest.length, mediaType: img.mediaType }, bundle(img.digest));
}

/** The one signature's reason in a 403's detail. */
async function deniedReason(repo: string, by = sigil): Promise<string> {
  const r = await pull(by, repo, 'v1');
  assert.equal(r.status, 403, r.body.toString());
  const signatures = r.json().errors[0].detail?.signatures as Array<{ result: string; reason: string }>;
  assert.equal(signatures.length, 1);
  return signatures[0].reason;
}

describe('cosign v3 bundles with a Rekor v2 entry', () => {
  for (const kind of ['dsse', 'hashedrekord'] as const) {
    test(`a ${kind} 0.0.2 entry with an RFC 3161 timestamp: served verified`, async () => {
      await pushWithBundle(`v2/${kind}`, (d) => bundleFor(signer(), d, { rekorV2: { log: t.log, kind }, timestamp: t.tsa }));
      const r = await pull(sigil, `v2/${kind}`, 'v1');
      assert.equal(r.status, 200, r.body.toString());
      assert.equal(r.headers['sigil-verification'], 'verified');
      assert.equal(r.headers['sigil-signer'], `${SUBJECT} (issuer ${ISSUER})`);
    });
  }

  test('no timestamp: 403, no verified signing time', async () => {
    await pushWithBundle('v2/no-time', (d) => bundleFor(signer(), d, { rekorV2: { log: t.log, kind: 'dsse' } }));
    assert.match(await deniedReason('v2/no-time'), /no verified signing time: the Rekor entry has an inclusion proof but no SET/);
  });

  test('a timestamp of a TSA no trusted root lists: 403, saying so', async () => {
    await pushWithBundle('v2/stranger', (d) => bundleFor(signer(), d, { rekorV2: { log: t.log, kind: 'dsse' }, timestamp: t.stranger }));
    assert.match(await deniedReason('v2/stranger'), /the RFC 3161 timestamp is signed by a timestamp authority no trusted root lists/);
  });

  test('a checkpoint padded with more signature lines than CHECKPOINT_SIGNATURES_MAX: 403, refused before any is checked', async () => {
    await pushWithBundle('v2/padded', (d) => {
      const json = JSON.parse(bundleFor(signer(), d, { rekorV2: { log: t.log, kind: 'dsse' }, timestamp: t.tsa }).toString()) as {
        verificationMaterial: { tlogEntries: { inclusionProof: { checkpoint: { envelope: string } } }[] };
      };
      const checkpoint = json.verificationMaterial.tlogEntries[0].inclusionProof.checkpoint;
      const [note, signatures] = checkpoint.envelope.split('\n\n');
      checkpoint.envelope = `${note}\n\n${signatures.repeat(CHECKPOINT_SIGNATURES_MAX)}${signatures}`;
      return Buffer.from(JSON.stringify(json));
    });
    assert.equal(
      await deniedReason('v2/padded'),
      `the checkpoint of transparency-log entry 0 has ${CHECKPOINT_SIGNATURES_MAX + 1} signature lines, more than CHECKPOINT_SIGNATURES_MAX (${CHECKPOINT_SIGNATURES_MAX})`,
    );
  });

  test('a timestamp outside the certificate\'s validity: 403, saying so', async () => {
    await pushWithBundle('v2/expired', (d) => bundleFor(signer({ agoMs: 2 * HOUR_MS }), d, { rekorV2: { log: t.log, kind: 'dsse' }, timestamp: t.tsa }));
    assert.match(await deniedReason('v2/expired'), /is not valid at the time of its RFC 3161 timestamp/);
  });
});

describe('legacy .sig with a Rekor SET and the rfc3161timestamp annotation', () => {
  test('an annotation that does not parse: 403, naming it, although the SET alone would verify', async () => {
    const img = await env.push('legacy/malformed', 'v1');
    const layer = legacyLayer(signer(), img.digest, { rekor: t.sigstore });
    layer.annotations[ANNOTATION.RFC3161_TIMESTAMP] = JSON.stringify({ SignedRFC3161Timestamp: Buffer.from('not a timestamp').toString('base64') });
    await pushLegacySignature(env.target, 'legacy/malformed', img.digest, [layer]);
    assert.match(await deniedReason('legacy/malformed'), /^dev\.sigstore\.cosign\/rfc3161timestamp: the RFC 3161 timestamp does not parse: /);
  });
});

describe('legacy .sig with the rfc3161timestamp annotation, no Rekor bundle, under a CA and TSA without logs', () => {
  test('a trusted TSA: served verified', async () => {
    const img = await env.push('legacy/tsa', 'v1');
    await pushLegacySignature(env.target, 'legacy/tsa', img.digest, [legacyLayer(signer({ sct: false }), img.digest, { timestamp: t.tsa })]);
    const r = await pull(sigilCaTsa, 'legacy/tsa', 'v1');
    assert.equal(r.status, 200, r.body.toString());
    assert.equal(r.headers['sigil-signer'], `${SUBJECT} (issuer ${ISSUER})`);
  });

  test('a TSA no trusted root lists: 403 (fails closed, whatever else would pass)', async () => {
    const img = await env.push('legacy/stranger', 'v1');
    await pushLegacySignature(env.target, 'legacy/stranger', img.digest, [legacyLayer(signer({ sct: false }), img.digest, { timestamp: t.stranger })]);
    assert.match(await deniedReason('legacy/stranger', sigilCaTsa), /the RFC 3161 timestamp is signed by a timestamp authority no trusted root lists/);
  });
});
