import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Redis } from 'iovalkey';
import type { AppDeps } from '../../src/app.js';
import type { Config } from '../../src/config/types.js';
import { isSigilError } from '../../src/errors.js';
import { ManifestGate } from '../../src/gate/manifest-gate.js';
import { SharedVerdicts, VERDICT_FOLLOW_MS, sharedVerdictKey } from '../../src/gate/shared-verdicts.js';
import type { SignatureVerifier } from '../../src/gate/verifier.js';
import { KEY_PREFIX } from '../../src/shared/coordinator.js';
import { seal } from '../../src/shared/sealed.js';
import { pushLegacySignature } from '../helpers/publish.js';
import { startSharedGateEnv, type SharedGateEnv } from '../helpers/shared-gates.js';
import { legacyLayer } from '../helpers/signer.js';
import { UPSTREAM, type VerifyEnv } from '../helpers/verify-env.js';

// Prevents: Redis deciding what is served. Processes of one cache share verdicts through Redis;
// anyone who can write to Redis could otherwise store "verified" under the key of an image no
// trusted key signed, and every process would serve it under enforce. A shared verdict counts only when its
// HMAC under cache.shared.peer.token checks for its exact key (upstream, repository, digest,
// policy and trust fingerprints); a genuine one spares the other processes the verification.
//
// Real registry, real signatures, the real gates and verifier of two "processes", a real
// redis-server.

const TOKEN = 'peer-token-shared-by-the-replicas';

let shared: SharedGateEnv;
let env: VerifyEnv;
let raw: Redis;
let config: Config;
let deps: AppDeps;

before(async () => {
  shared = await startSharedGateEnv();
  ({ env, config, deps } = shared);
  raw = new Redis(shared.redis.url);
});

after(async () => {
  raw?.disconnect();
  await shared?.stop();
});

/** One process's gate, sharing verdicts through the Redis, with a verifier that counts its verifications. */
async function gate(token = TOKEN, verificationDeadlineMs?: number) {
  const coordinator = await shared.connect();
  const counted = { runs: 0 };
  const verifier: SignatureVerifier = {
    get trustFingerprint() {
      return deps.verifier.trustFingerprint;
    },
    verify(candidates, subject, policy) {
      counted.runs++;
      return deps.verifier.verify(candidates, subject, policy);
    },
  };
  const sharedVerdicts = new SharedVerdicts({ coordinator, token, ttlMs: config.cache.verifications.ttlMs, metrics: deps.metrics, logger: deps.logger });
  return { gate: new ManifestGate({ config, clients: deps.clients, metrics: deps.metrics, logger: deps.logger, verifier, sharedVerdicts, verificationDeadlineMs }), counted };
}

const denied = (e: unknown): boolean => isSigilError(e) && e.code === 'POLICY_DENIED';

test('a signed image one process verified is let through by another without verifying it again', async () => {
  const img = await env.push('shared/signed', 'v1');
  await pushLegacySignature(env.target, 'shared/signed', img.digest, [legacyLayer(env.keys.p256, img.digest)]);
  const a = await gate();
  const b = await gate();
  const target = { upstream: UPSTREAM, repository: 'shared/signed', reference: 'v1' };
  assert.equal((await a.gate.decide(target)).verification, 'verified');
  assert.equal((await b.gate.decide(target)).verification, 'verified');
  assert.equal(a.counted.runs, 1);
  assert.equal(b.counted.runs, 0, 'b took a\'s verdict');
});

test('an image signed by no trusted key stays denied whatever allow is written into Redis for it', async () => {
  const img = await env.push('shared/untrusted', 'v1');
  await pushLegacySignature(env.target, 'shared/untrusted', img.digest, [legacyLayer(env.stranger, img.digest)]);
  const target = { upstream: UPSTREAM, repository: 'shared/untrusted', reference: 'v1' };
  const a = await gate();
  await assert.rejects(a.gate.decide(target), denied);
  const [key] = await raw.keys(`${KEY_PREFIX}value:verdict:*${encodeURIComponent('shared/untrusted')}*`);
  assert.ok(key, 'the deny was shared');
  assert.match(key, new RegExp(img.digest.replace(':', '%3A')));
  const logical = key.slice(`${KEY_PREFIX}value:`.length);
  const allow = { key: logical, outcome: { kind: 'verified', signer: { kind: 'key', keyId: 'sha256:forged' }, checks: [] }, expiresAt: Date.now() + 60_000 };
  const forgeries = [
    allow, // no MAC
    seal('a-token-the-replicas-do-not-have', logical, allow), // the wrong token
  ];
  // a genuine allow of the signed image, moved to the untrusted one's key
  const [signedKey] = await raw.keys(`${KEY_PREFIX}value:verdict:*${encodeURIComponent('shared/signed')}*`);
  assert.ok(signedKey);
  forgeries.push(JSON.parse((await raw.get(signedKey)) ?? 'null'));
  for (const [i, f] of forgeries.entries()) {
    await raw.set(key, JSON.stringify(f), 'PX', 60_000);
    const b = await gate();
    await assert.rejects(b.gate.decide(target), denied, `forgery ${i}`);
    assert.equal(b.counted.runs, 1, `verified by the process itself (forgery ${i})`);
  }
  const rejected = (await deps.metrics.sharedVerdicts.get()).values.find((v) => v.labels.result === 'rejected')?.value;
  assert.equal(rejected, forgeries.length);
});

test('a process with another token shares nothing with the others', async () => {
  const img = await env.push('shared/other-token', 'v1');
  await pushLegacySignature(env.target, 'shared/other-token', img.digest, [legacyLayer(env.keys.p256, img.digest)]);
  const target = { upstream: UPSTREAM, repository: 'shared/other-token', reference: 'v1' };
  const a = await gate();
  const b = await gate('another-token-of-the-right-size');
  assert.equal((await a.gate.decide(target)).verification, 'verified');
  assert.equal((await b.gate.decide(target)).verification, 'verified');
  assert.equal(b.counted.runs, 1);
});

// A lease on a verdict's key says another process is verifying it: the others wait for its
// verdict. One written into Redis by someone else (or left by a process that died while it
// verified) never answers; waiting for it costs a decision some time, never the decision itself.
test('a verdict lease written into Redis by someone else slows a signed image down, and never gets it denied', async () => {
  const img = await env.push('shared/lease-planted', 'v1');
  await pushLegacySignature(env.target, 'shared/lease-planted', img.digest, [legacyLayer(env.keys.p256, img.digest)]);
  const deadlineMs = 2_500; // also the deadline of its own verification, after the wait: room for a loaded machine
  const parts = { upstream: UPSTREAM, repository: 'shared/lease-planted', digest: img.digest, policyFingerprint: config.policies[0]!.fingerprint, trustFingerprint: deps.verifier.trustFingerprint };
  await raw.set(`${KEY_PREFIX}lease:verifying:${sharedVerdictKey(parts)}`, '0123456789abcdef someone-else', 'PX', 60_000);
  const b = await gate(TOKEN, deadlineMs);
  const t0 = performance.now();
  const d = await b.gate.decide({ upstream: UPSTREAM, repository: 'shared/lease-planted', reference: img.digest });
  const ms = performance.now() - t0;
  assert.equal(d.verification, 'verified', JSON.stringify(d.outcome));
  assert.equal(b.counted.runs, 1, 'verified by the process itself');
  assert.ok(ms >= deadlineMs - 100, `it waited for the lease's holder (${Math.round(ms)} ms)`);
  assert.ok(ms < VERDICT_FOLLOW_MS, `for no longer than its own deadline (${deadlineMs} ms), not VERDICT_FOLLOW_MS: ${Math.round(ms)} ms`);
});
