import assert from 'node:assert/strict';
import { after, before, beforeEach, test } from 'node:test';
import { Metrics } from '../audit/metrics.js';
import { capturingLogger, silentLogger } from '../../test/helpers/fake-registry.js';
import { freePort } from '../../test/helpers/net.js';
import { redisForSpecs } from '../../test/helpers/redis-specs.js';
import { KEY_PREFIX } from '../shared/coordinator.js';
import { seal } from '../shared/sealed.js';
import type { Outcome } from '../verify/types.js';
import { fastTimer } from '../../test/helpers/clock.js';
import { SharedVerdicts, VERDICT_FOLLOW_MS, sharedVerdictKey, sharedVerdictsOf, type SharedVerdictsOptions } from './shared-verdicts.js';
import { FAILURE_TTL_MS, type VerdictKeyParts } from './verdicts.js';

const TOKEN = 'a-peer-token-of-some-length';
const TTL_MS = 60_000;

const redis = redisForSpecs();

const parts: VerdictKeyParts = { upstream: 'reg.test', repository: 'app', digest: `sha256:${'a'.repeat(64)}`, policyFingerprint: 'p1', trustFingerprint: 't1' };
const verified: Outcome = { kind: 'verified', signer: { kind: 'key', keyId: 'sha256:k' }, checks: [{ source: 'referrer', ok: true, signer: { kind: 'key', keyId: 'sha256:k' }, authority: 0 }] };
const unsigned: Outcome = { kind: 'unsigned', checks: [] };

/** One process's shared verdicts, with a clock the test moves and its metrics and log records. */
async function proc(opts: Partial<SharedVerdictsOptions> & { url?: string } = {}) {
  const coordinator = await redis.connect(opts.url);
  const metrics = new Metrics({ defaultMetrics: false });
  const { logger, records } = capturingLogger();
  const clock = { now: 1_000_000 };
  const shared = new SharedVerdicts({ coordinator, token: TOKEN, ttlMs: TTL_MS, metrics, logger, now: () => clock.now, ...opts });
  const count = async (result: string) => (await metrics.sharedVerdicts.get()).values.find((v) => v.labels.result === result)?.value ?? 0;
  return { shared, clock, count, records };
}

/** A computation that counts how often it ran. */
function computing(outcome: Outcome) {
  const c = { runs: 0, run: async () => (c.runs++, outcome) };
  return c;
}

test('a verdict one process reached is used by another with the same key instead of verifying again', async () => {
  const a = await proc();
  const b = await proc();
  const va = computing(verified);
  assert.deepEqual(await a.shared.verdict(parts, va.run), { outcome: verified });
  const vb = computing(unsigned);
  const got = await b.shared.verdict(parts, vb.run);
  assert.deepEqual(got.outcome, verified);
  assert.equal(vb.runs, 0, 'not verified again');
  assert.equal(got.ttlMs, TTL_MS, 'lives no longer than it had left');
  assert.equal(await b.count('hit'), 1);
  assert.ok((await redis.raw.pttl(`${KEY_PREFIX}value:${sharedVerdictKey(parts)}`)) <= TTL_MS);
});

/** A computation that starts, then waits until released: `started` resolves once it runs. */
function heldComputing(outcome: Outcome) {
  let release!: () => void;
  let started!: () => void;
  const c = {
    runs: 0,
    started: new Promise<void>((resolve) => (started = resolve)),
    release: () => release(),
    run: async () => {
      c.runs++;
      started();
      await new Promise<void>((resolve) => (release = resolve));
      return outcome;
    },
  };
  return c;
}

test('two processes asked for one verdict at once: one verifies, the other waits for its verdict instead of verifying too', async () => {
  const a = await proc();
  const f = fastTimer();
  const b = await proc({ timer: f.timer, monotonic: f.now });
  const va = heldComputing(verified);
  const pa = a.shared.verdict(parts, va.run);
  await va.started; // a holds the key's lease
  const vb = computing(unsigned);
  const pb = b.shared.verdict(parts, vb.run);
  while (f.armed() < 3) await new Promise((r) => setImmediate(r)); // b is waiting
  va.release();
  assert.deepEqual(await pa, { outcome: verified });
  const got = await pb;
  assert.deepEqual(got.outcome, verified);
  assert.equal(vb.runs, 0, 'not verified again');
  assert.equal(await b.count('hit'), 1);
});

test('the process verifying publishes nothing (an indeterminate outcome): the one waiting verifies itself once the lease is gone', async () => {
  const a = await proc();
  const f = fastTimer();
  const b = await proc({ timer: f.timer, monotonic: f.now });
  const va = heldComputing({ kind: 'indeterminate', cause: 'upstream timed out', checks: [] });
  const pa = a.shared.verdict(parts, va.run);
  await va.started;
  const vb = computing(verified);
  const pb = b.shared.verdict(parts, vb.run);
  while (f.armed() < 3) await new Promise((r) => setImmediate(r));
  va.release();
  await pa;
  assert.deepEqual((await pb).outcome, verified);
  assert.equal(vb.runs, 1);
  assert.ok(f.now() < VERDICT_FOLLOW_MS, 'not by the deadline: when the lease went');
});

test('a process verifying for longer than VERDICT_FOLLOW_MS is not waited for further: the other verifies itself', async () => {
  const a = await proc();
  const f = fastTimer();
  const b = await proc({ timer: f.timer, monotonic: f.now });
  const va = heldComputing(verified);
  const pa = a.shared.verdict(parts, va.run);
  await va.started;
  const vb = computing(unsigned);
  assert.deepEqual((await b.shared.verdict(parts, vb.run)).outcome, unsigned);
  assert.equal(vb.runs, 1);
  assert.ok(f.now() >= VERDICT_FOLLOW_MS, `waited ${f.now()} ms of the fake clock`);
  va.release();
  await pa;
});

test("a process waiting for another's verdict stops once its own decision's deadline passed, and computes it itself", async () => {
  const a = await proc();
  const f = fastTimer();
  const b = await proc({ timer: f.timer, monotonic: f.now });
  const va = heldComputing(verified);
  const pa = a.shared.verdict(parts, va.run);
  await va.started; // a holds the key's lease, and verifies for as long as the test wants
  const decision = new AbortController();
  const vb = computing({ kind: 'indeterminate', cause: 'past the deadline', checks: [] });
  const pb = b.shared.verdict(parts, vb.run, undefined, decision.signal);
  while (f.armed() < 3) await new Promise((r) => setImmediate(r)); // b is waiting
  decision.abort();
  const got = await pb;
  assert.equal(got.outcome.kind, 'indeterminate');
  assert.equal(vb.runs, 1, 'computed here (what the caller does past its deadline is the caller\'s: manifest-gate.ts)');
  assert.ok(f.now() < VERDICT_FOLLOW_MS, `stopped waiting after ${f.now()} ms of the fake clock, not VERDICT_FOLLOW_MS`);
  assert.equal(await redis.raw.exists(`${KEY_PREFIX}value:${sharedVerdictKey(parts)}`), 0, 'an indeterminate outcome is not published');
  va.release();
  await pa;
});

test('a verdict is not shared under another policy, trust, repository or upstream', async () => {
  const a = await proc();
  await a.shared.verdict(parts, computing(verified).run);
  for (const other of [{ policyFingerprint: 'p2' }, { trustFingerprint: 't2' }, { repository: 'app2' }, { upstream: 'other.test' }]) {
    const v = computing(unsigned);
    assert.deepEqual((await a.shared.verdict({ ...parts, ...other }, v.run)).outcome, unsigned);
    assert.equal(v.runs, 1, JSON.stringify(other));
  }
});

test('a failed verdict is shared for FAILURE_TTL_MS at most; an indeterminate one is not shared', async () => {
  const a = await proc();
  await a.shared.verdict(parts, computing(unsigned).run);
  const ttl = await redis.raw.pttl(`${KEY_PREFIX}value:${sharedVerdictKey(parts)}`);
  assert.ok(ttl > 0 && ttl <= FAILURE_TTL_MS, `ttl ${ttl}`);
  const other = { ...parts, digest: `sha256:${'b'.repeat(64)}` };
  await a.shared.verdict(other, computing({ kind: 'indeterminate', cause: 'upstream timed out', checks: [] }).run);
  assert.equal(await redis.raw.exists(`${KEY_PREFIX}value:${sharedVerdictKey(other)}`), 0);
});

test('an allow forged in Redis never replaces a deny: records without our MAC, or sealed for another key, are ignored, counted and logged', async () => {
  const b = await proc();
  const key = sharedVerdictKey(parts);
  const record = { key, outcome: verified, expiresAt: b.clock.now + TTL_MS };
  const otherKey = sharedVerdictKey({ ...parts, digest: `sha256:${'c'.repeat(64)}` });
  const forged = [
    record, // plain
    seal('another-token-of-some-length', key, record), // another token
    seal(TOKEN, otherKey, { ...record, key: otherKey }), // a genuine allow of another digest, moved here
    seal(TOKEN, otherKey, record), // sealed for another key, naming this one
    { ...seal(TOKEN, key, { ...record, outcome: unsigned }), body: JSON.stringify(record) }, // a genuine deny, altered
  ];
  for (const [i, f] of forged.entries()) {
    await redis.raw.set(`${KEY_PREFIX}value:${key}`, JSON.stringify(f));
    const v = computing(unsigned);
    assert.deepEqual((await b.shared.verdict(parts, v.run)).outcome, unsigned, `forgery ${i}`);
    assert.equal(v.runs, 1, `verified here (forgery ${i})`);
  }
  assert.equal(await b.count('rejected'), forged.length);
  assert.equal(await b.count('hit'), 0);
  assert.equal(b.records.filter((r) => r.msg?.startsWith('shared verdict ignored')).length, forged.length);
});

test('a record whose MAC checks but names another key is ignored', async () => {
  const b = await proc();
  const key = sharedVerdictKey(parts);
  const otherKey = sharedVerdictKey({ ...parts, policyFingerprint: 'p0' });
  await redis.raw.set(`${KEY_PREFIX}value:${key}`, JSON.stringify(seal(TOKEN, key, { key: otherKey, outcome: verified, expiresAt: b.clock.now + TTL_MS })));
  const v = computing(unsigned);
  assert.deepEqual((await b.shared.verdict(parts, v.run)).outcome, unsigned);
  assert.equal(await b.count('rejected'), 1);
});

test('a shared verdict past its lifetime is not used', async () => {
  const a = await proc();
  const b = await proc();
  await a.shared.verdict(parts, computing(verified).run);
  b.clock.now += TTL_MS;
  const v = computing(unsigned);
  assert.deepEqual((await b.shared.verdict(parts, v.run)).outcome, unsigned);
  assert.equal(v.runs, 1);
});

test('with Redis unavailable the verdict is reached here, as by a single process', async () => {
  const a = await proc({ url: `redis://127.0.0.1:${await freePort()}` });
  const v = computing(verified);
  assert.deepEqual(await a.shared.verdict(parts, v.run), { outcome: verified });
  assert.equal(v.runs, 1);
});

test('verdicts are shared only with Redis and a peer token', async () => {
  const coordinator = await redis.connect();
  const deps = { metrics: new Metrics({ defaultMetrics: false }), logger: silentLogger() };
  const verifications = { maxEntries: 10, ttlMs: TTL_MS };
  const peer = { listen: { host: '127.0.0.1', port: 0 }, advertise: 'http://127.0.0.1:1', token: TOKEN };
  assert.ok(sharedVerdictsOf({ verifications, shared: { redis: { url: redis.server.url }, peer } }, coordinator, deps));
  assert.equal(sharedVerdictsOf({ verifications, shared: { redis: { url: redis.server.url } } }, coordinator, deps), undefined);
  assert.equal(sharedVerdictsOf({ verifications, shared: { peer } }, undefined, deps), undefined);
  assert.equal(sharedVerdictsOf({ verifications }, undefined, deps), undefined);
});

test('a verdict reached while the trust root changed is not published: a process still on the old root verifies for itself', async () => {
  const a = await proc();
  const b = await proc();
  let trust = parts.trustFingerprint;
  const refreshedMidway = { runs: 0, run: async () => ((refreshedMidway.runs++, (trust = 't2')), verified) };
  assert.deepEqual(await a.shared.verdict(parts, refreshedMidway.run, () => trust), { outcome: verified }, 'its own request still gets it');
  assert.equal(await redis.raw.exists(`${KEY_PREFIX}value:${sharedVerdictKey(parts)}`), 0, 'nothing under the old trust fingerprint');
  const vb = computing(unsigned);
  assert.deepEqual((await b.shared.verdict(parts, vb.run)).outcome, unsigned);
  assert.equal(vb.runs, 1, 'verified by the process on the old root');
  // with the trust unchanged it is published, as before
  const c = computing(verified);
  await a.shared.verdict({ ...parts, digest: `sha256:${'c'.repeat(64)}` }, c.run, () => parts.trustFingerprint);
  assert.equal(await redis.raw.exists(`${KEY_PREFIX}value:${sharedVerdictKey({ ...parts, digest: `sha256:${'c'.repeat(64)}` })}`), 1);
});
