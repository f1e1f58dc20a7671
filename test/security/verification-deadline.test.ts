import assert from 'node:assert/strict';
import { request as httpRequest, type ServerResponse } from 'node:http';
import { after, before, test } from 'node:test';
import { defaultDeps, type AppDeps } from '../../src/app.js';
import { createLogger } from '../../src/audit/logger.js';
import { FAILURE_TTL_MS } from '../../src/gate/verdicts.js';
import { isSigilError } from '../../src/errors.js';
import { MAX_CONCURRENT_VERIFICATIONS, MAX_CONCURRENT_VERIFICATIONS_PER_UPSTREAM, ManifestGate, VERIFICATION_DEADLINE_MS, type ManifestDecision } from '../../src/gate/manifest-gate.js';
import { STALE_DEADLINE_MS } from '../../src/registry/stale-deadline.js';
import { fakeClock, type FakeClock } from '../helpers/clock.js';
import { startFaultServer, type FaultServer } from '../helpers/fault-server.js';
import { tempDir } from '../helpers/temp.js';
import { pushBundleReferrer, pushLegacySignature } from '../helpers/publish.js';
import { pushBlob, pushManifest } from '../helpers/push.js';
import { bundleFor, legacyLayer, sigManifest } from '../helpers/signer.js';
import { compileConfig } from '../helpers/sigil.js';
import { pull, startVerifyEnv, type VerifyEnv } from '../helpers/verify-env.js';

// Prevents: one upstream starving signature verification for all. An upstream that drips its
// signature payloads (one byte per 10 s: under every per-request timeout) held every global
// verification slot, so a validly signed image on another, healthy upstream was never answered.
// Now every decision has a deadline (waiting for a slot included) after which it is indeterminate
// and its reads are destroyed, and one upstream can hold only its share of the slots. The same
// holds for the blobs of a manifest shaped like a signature artifact, read to judge it.
//
// The hostile upstream is an in-process proxy in front of the real registry (a real registry cannot
// drip); the images and their signatures are real, pushed and signed as cosign does. The gate runs
// with the real upstream clients, caches, content store and verifier, and a short deadline.
const DEADLINE_MS = 3_000;
/**
 * The stored-image tests run sigil with both deadlines scaled down by this much, in the ratio of
 * the shipped ones (STALE_DEADLINE_MS within VERIFICATION_DEADLINE_MS), and move a fake clock
 * past the tag and verdict lifetimes instead of waiting them out.
 */
const SCALE = 0.5;
/** More hostile decisions than there are slots in all: some hold slots, the rest wait. */
const HOSTILE = MAX_CONCURRENT_VERIFICATIONS + 2;
const ACCEPT = 'application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json';

let env: VerifyEnv;
let hostile: FaultServer;
let deps: AppDeps;
let gate: ManifestGate;
let clockOffset = 0;
/** Blob answers the hostile upstream is dripping right now, and their URLs. */
const dripping = new Map<ServerResponse, string>();
let dripsStarted = 0;
/** Repositories the hostile upstream serves normally again. */
const healed = new Set<string>();

before(async () => {
  env = await startVerifyEnv();
  const target = new URL(env.registry.url);
  hostile = await startFaultServer((req, res) => {
    const url = req.url ?? '';
    const repo = /^\/v2\/(drip\/[^/]+)\/blobs\//.exec(url)?.[1];
    if (repo !== undefined && req.method === 'GET' && !healed.has(repo)) {
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      dripsStarted++;
      dripping.set(res, url);
      const drip = setInterval(() => res.write(Buffer.from('{')), 10_000);
      res.write(Buffer.from('{'));
      res.once('close', () => {
        clearInterval(drip);
        dripping.delete(res);
      });
      return;
    }
    const fwd = httpRequest(new URL(url, target), { method: req.method, headers: { ...req.headers, host: target.host } }, (up) => {
      res.writeHead(up.statusCode ?? 502, up.headers);
      up.pipe(res);
    });
    fwd.on('error', () => res.destroy());
    req.pipe(fwd);
  });
  const storeDir = await tempDir('sigil-verify-deadline-');
  const config = await compileConfig(
    [
      'server:',
      '  listen: 127.0.0.1:0',
      'upstreams:',
      `  - name: hostile.test`,
      `    url: ${hostile.url}`,
      `  - name: reg.test`,
      `    url: ${env.registry.url}`,
      'defaultUpstream: reg.test',
      'trust:',
      `  trustedRoot: [public-good, ${env.sigstore.trustedRootPath}]`,
      'policies:',
      '  - name: warned',
      '    match: ["hostile.test/drip/warn-*"]',
      '    mode: warn',
      '    authorities:',
      `      - { key: ${env.keys.p256.path}, tlog: ignore }`,
      '  - name: signed',
      '    match: ["**"]',
      '    mode: enforce',
      '    authorities:',
      `      - { key: ${env.keys.p256.path}, tlog: ignore }`,
      'cache:',
      '  store:',
      `    dir: ${storeDir}`,
      '    maxBytes: 104857600',
    ].join('\n'),
  );
  deps = await defaultDeps(config, { logger: createLogger('silent') });
  gate = new ManifestGate({
    config,
    clients: deps.clients,
    metrics: deps.metrics,
    logger: deps.logger,
    verifier: deps.verifier,
    keeper: deps.store?.keeper,
    now: () => performance.now() + clockOffset,
    verificationDeadlineMs: DEADLINE_MS,
  });
});

after(async () => {
  await hostile?.stop();
  if (deps) {
    await Promise.all([...deps.clients.values()].map((c) => c.close()));
    await deps.store?.content.close();
    await deps.hashes.close();
  }
  await env?.stop();
});

async function pushSigned(repo: string): Promise<string> {
  const img = await env.push(repo, 'v1');
  await pushLegacySignature(env.target, repo, img.digest, [legacyLayer(env.keys.p256, img.digest)]);
  return img.digest;
}

const decide = (upstream: string, repository: string): Promise<ManifestDecision> =>
  gate.decide({ upstream, repository, reference: 'v1', accept: ACCEPT });

const sleep = (ms: number): Promise<'late'> => new Promise((r) => setTimeout(() => r('late'), ms));

/** Polls `cond` every 50 ms; false when it did not hold within `ms`. */
async function eventually(cond: () => boolean, ms: number): Promise<boolean> {
  for (const end = Date.now() + ms; Date.now() < end; await sleep(50)) if (cond()) return true;
  return cond();
}

/** How a decision ended: verified, or the denial's outcome and cause. */
function ending(r: PromiseSettledResult<ManifestDecision>): string {
  if (r.status === 'fulfilled') return `${r.value.verification}${r.value.warning ? ` (${r.value.warning})` : ''}`;
  const e = r.reason as unknown;
  if (!isSigilError(e)) return `error: ${String(e)}`;
  const d = e.detail as { outcome?: string; cause?: string } | undefined;
  return `${e.code} ${d?.outcome ?? ''}: ${d?.cause ?? e.message}`;
}

test('a validly signed image on a healthy upstream is verified while a dripping upstream holds its verifications', async () => {
  const repos = Array.from({ length: HOSTILE }, (_, i) => `drip/r${i}`);
  for (const r of repos) await pushSigned(r);
  await pushSigned('good/app');

  const settled: string[] = [];
  const firedAt = Date.now();
  let lastEnded = 0;
  const hostileDecisions = repos.map((r) =>
    decide('hostile.test', r).finally(() => {
      settled.push(r);
      lastEnded = Date.now();
    }),
  );
  for (const p of hostileDecisions) p.catch(() => undefined);
  // Let the hostile decisions take what they can: drips started, then no new upstream request for a while.
  assert.ok(await eventually(() => dripsStarted > 0, 20_000), 'the hostile upstream started dripping');
  let seen = -1;
  let since = Date.now();
  await eventually(() => {
    if (hostile.requests.length !== seen) [seen, since] = [hostile.requests.length, Date.now()];
    return Date.now() - since >= 500;
  }, 20_000);
  assert.equal(settled.length, 0, 'no hostile decision ended before the healthy request');

  const healthy = decide('reg.test', 'good/app').finally(() => settled.push('good/app'));
  const first = await Promise.race([healthy.then(() => 'good/app', () => 'good/app'), sleep(DEADLINE_MS + 10_000)]);
  assert.equal(first, 'good/app', `the healthy decision did not end while ${dripping.size} hostile blob reads dripped`);
  assert.equal(settled[0], 'good/app', `decisions in the order they ended: ${settled.join(', ')}`);
  // Meanwhile every hostile decision holds a slot or waits for one, and they do not hold them all.
  const slots = gate.verificationSlots;
  assert.equal(settled.length, 1, `ended so far: ${settled.join(', ')}`);
  assert.equal(slots.running + slots.waiting, HOSTILE, JSON.stringify(slots));
  assert.ok(slots.waiting > 0 && slots.running < MAX_CONCURRENT_VERIFICATIONS, JSON.stringify(slots));
  const d = await healthy;
  assert.equal(d.verification, 'verified');
  assert.equal(d.signer, env.keys.p256.keyId);

  // Every hostile decision ends within its deadline — the waiting ones too — denied as indeterminate.
  const all = Promise.allSettled(hostileDecisions);
  const done = await Promise.race([all, sleep(2 * DEADLINE_MS + 10_000)]);
  assert.notEqual(done, 'late', `hostile decisions still pending: ${repos.filter((r) => !settled.includes(r)).join(', ')}`);
  const endings = (done as PromiseSettledResult<ManifestDecision>[]).map(ending);
  for (const e of endings) assert.match(e, /^POLICY_DENIED indeterminate: .*deadline/, e);
  // Waiting counts against the deadline: the decisions that waited for a slot did not get a
  // deadline of their own once they had one (that would end them near 2 × DEADLINE_MS).
  assert.ok(lastEnded - firedAt < 1.5 * DEADLINE_MS, `the last hostile decision ended ${lastEnded - firedAt} ms after they were asked`);

  // Nothing is left behind: no slot held or waited for, no upstream body still open.
  assert.deepEqual(gate.verificationSlots, { running: 0, waiting: 0 });
  assert.ok(await eventually(() => dripping.size === 0, 5_000), `dripping blob reads left open: ${[...dripping.values()].join(', ')}`);

  // The indeterminate verdict is kept only FAILURE_TTL_MS: once the upstream behaves, the image verifies.
  healed.add('drip/r0');
  const cachedEv = await gate.evaluate({ upstream: 'hostile.test', repository: 'drip/r0', reference: 'v1', accept: ACCEPT });
  assert.equal(cachedEv.cached, true);
  assert.equal(cachedEv.outcome?.kind, 'indeterminate');
  clockOffset += FAILURE_TTL_MS + 1;
  await sleep(10); // lru-cache reads its clock at most once a millisecond
  const again = await gate.evaluate({ upstream: 'hostile.test', repository: 'drip/r0', reference: 'v1', accept: ACCEPT });
  assert.equal(again.cached, false);
  assert.equal(again.outcome?.kind, 'verified', JSON.stringify(again.outcome));
  assert.deepEqual(gate.verificationSlots, { running: 0, waiting: 0 });
});

test('warn: a decision past its deadline is served marked unverified, never verified', async () => {
  await pushSigned('drip/warn-a');
  const t = decide('hostile.test', 'drip/warn-a');
  const r = await Promise.race([t, sleep(DEADLINE_MS + 10_000)]);
  assert.notEqual(r, 'late', 'the warn decision ended');
  const d = r as ManifestDecision;
  assert.equal(d.verification, 'unverified');
  assert.equal(d.outcome?.kind, 'indeterminate');
  assert.match(d.warning ?? '', /deadline/);
  assert.deepEqual(gate.verificationSlots, { running: 0, waiting: 0 });
});

/** Sigil through a fake upstream that forwards to the real registry until told to go silent (accept, never answer). */
async function silenceable(): Promise<{ up: FaultServer; silence(): void }> {
  const target = new URL(env.registry.url);
  let silent = false;
  const up = await startFaultServer((req, res) => {
    if (silent) return; // accepts, never answers
    const fwd = httpRequest(new URL(req.url ?? '/', target), { method: req.method, headers: { ...req.headers, host: target.host } }, (r) => {
      res.writeHead(r.statusCode ?? 502, r.headers);
      r.pipe(res);
    });
    fwd.on('error', () => res.destroy());
    req.pipe(fwd);
  });
  return {
    up,
    silence: () => {
      silent = true;
    },
  };
}

const storedSigil = async (upstreamUrl: string, clock: FakeClock): Promise<Awaited<ReturnType<VerifyEnv['sigil']>>> =>
  env.sigil(`  - name: signed\n    match: ["**"]\n    mode: enforce\n    authorities:\n      - { key: ${env.keys.p256.path}, tlog: ignore }`, {
    upstreamUrl,
    now: clock.now,
    staleDeadlineMs: STALE_DEADLINE_MS * SCALE,
    verificationDeadlineMs: VERIFICATION_DEADLINE_MS * SCALE,
    extra: `cache:\n  store:\n    dir: ${await tempDir('sigil-verify-deadline-stale-')}\n    maxBytes: 104857600\n  tags:\n    ttl: 1s\n  verifications:\n    ttl: 1s`,
  });

// With a content store, each lookup on a silent upstream is cut at STALE_DEADLINE_MS (4 s) and
// answered from the store; the stored signatures of an image are reached through up to three
// lookups (referrers, referrers tag, `.sig` tag). Once one lookup found the upstream failing, the
// others are answered from the store at once, so a stored image re-verifies within the deadline.
// Run with both deadlines scaled down in the shipped ratio.
test('one stale-if-error cut-off fits inside the decision deadline, with room for the rest of the verification', () => {
  assert.ok(STALE_DEADLINE_MS < VERIFICATION_DEADLINE_MS, `STALE_DEADLINE_MS ${STALE_DEADLINE_MS} ms, VERIFICATION_DEADLINE_MS ${VERIFICATION_DEADLINE_MS} ms`);
  assert.equal((STALE_DEADLINE_MS * SCALE) / (VERIFICATION_DEADLINE_MS * SCALE), STALE_DEADLINE_MS / VERIFICATION_DEADLINE_MS);
});

test('a stored signed image still re-verifies from the store within the deadline while its upstream is silent', async () => {
  const { up, silence } = await silenceable();
  try {
    await pushSigned('stored/app');
    const clock = fakeClock();
    const sigil = await storedSigil(up.url, clock);
    const first = await pull(sigil, 'stored/app', 'v1');
    assert.equal(first.headers['sigil-verification'], 'verified');
    clock.advance(1500); // past the tag and verdict lifetimes: both are asked of the upstream again
    silence();
    const asked = up.requests.length;
    const r = await pull(sigil, 'stored/app', 'v1');
    assert.equal(r.status, 200, r.body.toString());
    assert.equal(r.headers['sigil-stale'], 'true');
    assert.equal(r.headers['sigil-verification'], 'verified');
    const since = up.requests.slice(asked).map((q) => `${q.method} ${q.url}`);
    assert.ok(since.some((u) => u.includes('/manifests/v1')), `the tag lookup went to the silent upstream first: ${since.join(', ')}`);
    // The stored `.sig` tag was then answered from the store, without waiting for the upstream.
    assert.ok(!since.some((u) => u.endsWith('.sig')), `asked of the silent upstream: ${since.join(', ')}`);
  } finally {
    await up.stop();
  }
});

// Pulled by digest, nothing asks the upstream before the signature lookups: they are the first to
// find it silent, side by side (referrers, `.sig` tag), and the referrers tag that holds the bundle
// then comes from the store at once. A cosign v3 bundle (no `.sig` tag at all) on a registry
// without the referrers API.
test('a stored image signed with a bundle re-verifies by digest from the store within the deadline while its upstream is silent', async () => {
  const { up, silence } = await silenceable();
  try {
    const img = await env.push('stored/bundled', 'v1');
    const bundle = bundleFor(env.keys.p256, img.digest);
    await pushBundleReferrer(env.target, 'stored/bundled', { digest: img.digest, size: img.manifest.length, mediaType: img.mediaType }, bundle);
    const clock = fakeClock();
    const sigil = await storedSigil(up.url, clock);
    const first = await pull(sigil, 'stored/bundled', img.digest);
    assert.equal(first.headers['sigil-verification'], 'verified', first.body.toString());
    clock.advance(1500); // past the verdict lifetime
    silence();
    const asked = up.requests.length;
    const r = await pull(sigil, 'stored/bundled', img.digest);
    assert.equal(r.status, 200, r.body.toString());
    assert.equal(r.headers['sigil-verification'], 'verified');
    const since = up.requests.slice(asked).map((q) => `${q.method} ${q.url}`);
    assert.ok(since.some((u) => u.includes('/referrers/')), `the referrers lookup went to the silent upstream: ${since.join(', ')}`);
    // The stored referrers tag (the bundle's index) then came from the store, without waiting for the upstream.
    const referrersTag = `/manifests/${img.digest.replace(':', '-')}`;
    assert.ok(!since.some((u) => u.endsWith(referrersTag)), `asked of the silent upstream: ${since.join(', ')}`);
  } finally {
    await up.stop();
  }
});

// Prevents: the blobs of a manifest shaped like a signature artifact (read to judge whether it is
// one) being read outside the deadline and the slots: a hostile upstream that drips them held the
// manifest request open for as long as it liked.
test('a manifest shaped like a signature artifact whose blobs drip is denied within the deadline, without starving a healthy upstream', async () => {
  const repos = Array.from({ length: HOSTILE }, (_, i) => `drip/art${i}`);
  for (const [i, r] of repos.entries()) {
    // Signature data (a simple signing payload of some digest), pushed as an artifact under `v1`.
    const sig = sigManifest([legacyLayer(env.keys.p256, `sha256:${String(i).padStart(64, 'a')}`)]);
    for (const b of sig.blobs) await pushBlob(env.target, r, b);
    await pushManifest(env.target, r, 'v1', sig.manifest, sig.mediaType);
  }
  await pushSigned('good/other');
  const started = dripsStarted;

  const settled: string[] = [];
  const firedAt = Date.now();
  let lastEnded = 0;
  const hostileDecisions = repos.map((r) =>
    decide('hostile.test', r).finally(() => {
      settled.push(r);
      lastEnded = Date.now();
    }),
  );
  for (const p of hostileDecisions) p.catch(() => undefined);
  assert.ok(await eventually(() => dripsStarted > started, 20_000), 'the hostile upstream started dripping');
  // Their checks hold at most the hostile upstream's share of the slots; the rest wait.
  const all = (): number => gate.verificationSlots.running + gate.verificationSlots.waiting;
  assert.ok(await eventually(() => all() === HOSTILE, 20_000), `checks holding or waiting for a slot: ${all()}`);
  const slots = gate.verificationSlots;
  assert.ok(slots.running <= MAX_CONCURRENT_VERIFICATIONS_PER_UPSTREAM && slots.waiting > 0, JSON.stringify(slots));

  const healthy = decide('reg.test', 'good/other').finally(() => settled.push('good/other'));
  const first = await Promise.race([healthy.then(() => 'good/other', () => 'good/other'), sleep(DEADLINE_MS + 10_000)]);
  assert.equal(first, 'good/other', 'the healthy decision did not end while the artifact checks dripped');
  assert.equal(settled[0], 'good/other', `decisions in the order they ended: ${settled.join(', ')}`);
  assert.equal((await healthy).verification, 'verified');

  const done = await Promise.race([Promise.allSettled(hostileDecisions), sleep(2 * DEADLINE_MS + 10_000)]);
  assert.notEqual(done, 'late', `hostile decisions still pending: ${repos.filter((r) => !settled.includes(r)).join(', ')}`);
  for (const e of (done as PromiseSettledResult<ManifestDecision>[]).map(ending)) assert.match(e, /^POLICY_DENIED indeterminate: .*deadline/, e);
  assert.ok(lastEnded - firedAt < 1.5 * DEADLINE_MS, `the last hostile decision ended ${lastEnded - firedAt} ms after they were asked`);
  assert.deepEqual(gate.verificationSlots, { running: 0, waiting: 0 });
  const open = (): string[] => [...dripping.values()].filter((u) => u.startsWith('/v2/drip/art'));
  assert.ok(await eventually(() => open().length === 0, 5_000), `dripping blob reads left open: ${open().join(', ')}`);

  // Running out of time did not judge it: once its blobs come, it is the signature artifact it is.
  healed.add('drip/art0');
  const again = await decide('hostile.test', 'drip/art0');
  assert.equal(again.basis, 'signature-artifact', again.notArtifact);
  assert.equal(again.verification, 'skipped');
});
