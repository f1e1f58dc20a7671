import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { AppDeps } from '../../src/app.js';
import type { Config } from '../../src/config/types.js';
import { isSigilError } from '../../src/errors.js';
import { ManifestGate, type ManifestDecision } from '../../src/gate/manifest-gate.js';
import { SharedVerdicts } from '../../src/gate/shared-verdicts.js';
import type { SignatureVerifier } from '../../src/gate/verifier.js';
import type { Coordinator } from '../../src/shared/coordinator.js';
import type { Outcome } from '../../src/verify/types.js';
import { pushLegacySignature } from '../helpers/publish.js';
import { pushBlob, pushManifest } from '../helpers/push.js';
import { startSharedGateEnv, type SharedGateEnv } from '../helpers/shared-gates.js';
import { legacyLayer } from '../helpers/signer.js';
import { UPSTREAM, type VerifyEnv } from '../helpers/verify-env.js';

// Prevents: a decision whose deadline passed while it waited for another process's verdict
// (shared through Redis) saying it ran out of time doing something else: reading the blobs of a
// manifest shaped like a signature artifact, which it had read and judged not signature data by
// then. Such a decision (its deadline is the one its artifact check started) ends within that
// deadline, indeterminate (denied under enforce), and says what it was waiting for.
//
// Real registry, real signatures, a real redis-server; the "other process" is a SharedVerdicts on
// its own connection whose verification goes on for as long as the test wants.

const TOKEN = 'peer-token-shared-by-the-replicas';
const DEADLINE_MS = 1_500;
const SIMPLE_SIGNING = 'application/vnd.dev.cosign.simplesigning.v1+json';
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const OCI_CONFIG = 'application/vnd.oci.image.config.v1+json';

let shared: SharedGateEnv;
let env: VerifyEnv;
let config: Config;
let deps: AppDeps;

before(async () => {
  shared = await startSharedGateEnv();
  ({ env, config, deps } = shared);
});

after(() => shared?.stop());

const connected = (): Promise<Coordinator> => shared.connect();

/** Another process sharing verdicts through the Redis: it verifies `digest` until released. */
async function otherProcessVerifying(repository: string, digest: string) {
  const shared = new SharedVerdicts({ coordinator: await connected(), token: TOKEN, ttlMs: config.cache.verifications.ttlMs, metrics: deps.metrics, logger: deps.logger, holder: 'other-process' });
  const parts = { upstream: UPSTREAM, repository, digest, policyFingerprint: config.policies[0]!.fingerprint, trustFingerprint: deps.verifier.trustFingerprint };
  let release!: (o: Outcome) => void;
  let started!: () => void;
  const running = new Promise<void>((r) => (started = r));
  const done = shared.verdict(parts, () => {
    started();
    return new Promise<Outcome>((r) => (release = r));
  });
  await running; // it holds the key's lease
  return { release: (o: Outcome) => (release(o), done) };
}

/** This process's gate (short deadline), sharing verdicts through the Redis, counting its verifications. */
async function gate() {
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
  const sharedVerdicts = new SharedVerdicts({ coordinator: await connected(), token: TOKEN, ttlMs: config.cache.verifications.ttlMs, metrics: deps.metrics, logger: deps.logger });
  return { gate: new ManifestGate({ config, clients: deps.clients, metrics: deps.metrics, logger: deps.logger, verifier, sharedVerdicts, verificationDeadlineMs: DEADLINE_MS }), counted };
}

/** How a decision ended (within `ms`), and when. */
async function ending(p: Promise<ManifestDecision>): Promise<{ ms: number; outcome?: string; cause?: string; verification?: string }> {
  const t0 = performance.now();
  try {
    const d = await p;
    return { ms: performance.now() - t0, verification: d.verification };
  } catch (e) {
    const ms = performance.now() - t0;
    if (!isSigilError(e) || e.code !== 'POLICY_DENIED') throw e;
    const detail = e.detail as { outcome?: string; cause?: string } | undefined;
    return { ms, outcome: detail?.outcome, cause: detail?.cause };
  }
}

const notVerified: Outcome = { kind: 'indeterminate', cause: 'the test released it', checks: [] };

test('a manifest shaped like a signature artifact, judged an image, then out of time waiting for a verdict, is not said to have unread blobs', async () => {
  // Labelled as a cosign signature, but its layer is not signature data: judged (its blobs read) as an image.
  const repo = 'wait/disguised';
  const layer = Buffer.from('not a simple signing payload');
  const cfg = Buffer.from('{}');
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { mediaType: OCI_CONFIG, digest: await pushBlob(env.target, repo, cfg), size: cfg.length },
      layers: [{ mediaType: SIMPLE_SIGNING, digest: await pushBlob(env.target, repo, layer), size: layer.length }],
    }),
  );
  const digest = await pushManifest(env.target, repo, 'v1', manifest, OCI_MANIFEST);
  const other = await otherProcessVerifying(repo, digest);
  try {
    const b = await gate();
    const decision = b.gate.decide({ upstream: UPSTREAM, repository: repo, reference: 'v1' });
    const ev = await b.gate.evaluate({ upstream: UPSTREAM, repository: repo, reference: 'v1' }); // joins it
    assert.equal(ev.basis, 'signature', 'judged as an image');
    assert.ok(ev.notArtifact, 'its blobs were read and are not signature data');
    const got = await ending(decision);
    assert.equal(got.outcome, 'indeterminate', JSON.stringify(got));
    assert.ok(got.ms < DEADLINE_MS + 2_000, `ended ${Math.round(got.ms)} ms after it was asked (deadline ${DEADLINE_MS} ms)`);
    assert.doesNotMatch(got.cause ?? '', /blobs/, `its blobs were read: ${got.cause}`);
    assert.match(got.cause ?? '', /another process/, `the cause names what it waited for: ${got.cause}`);
  } finally {
    await other.release(notVerified);
  }
});
