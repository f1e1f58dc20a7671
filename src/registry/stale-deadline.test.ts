import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isSigilError } from '../errors.js';
import { FakeRegistry, capturingLogger, imageManifest, manualTimer } from '../../test/helpers/fake-registry.js';
import { UpstreamBreaker } from './stale-breaker.js';
import { STALE_DEADLINE_MS, StaleDeadline } from './stale-deadline.js';

function rig() {
  const below = new FakeRegistry();
  const m = below.put('app', imageManifest([Buffer.from('layer')]), 'v1');
  below.blobs.set(m.digest, m.bytes);
  const breaker = new UpstreamBreaker({ now: () => 0 });
  const timer = manualTimer();
  const { logger, records } = capturingLogger();
  const layer = new StaleDeadline(below, { breaker, logger, timer: timer.timer });
  const logged = (re: RegExp) => records.filter((r) => re.test(r.msg ?? '')).length;
  return { below, m, breaker, timer, layer, logged };
}

test('a metadata request the upstream does not answer within the deadline fails UPSTREAM_TIMEOUT, and the breaker hears of it once', async () => {
  const { below, breaker, timer, layer, logged } = rig();
  below.hold.add('resolveTag');
  below.hold.add('listTags');
  const lookups = [layer.resolveTag('app', 'v1'), layer.listTags('app', {})];
  assert.deepEqual(timer.armed, [STALE_DEADLINE_MS, STALE_DEADLINE_MS]);
  timer.fire();
  for (const p of lookups) await assert.rejects(p, (e) => isSigilError(e) && e.code === 'UPSTREAM_TIMEOUT' && /no answer within 4000 ms/.test(e.message));
  assert.equal(breaker.failing, true);
  assert.equal(logged(/upstream failing/), 1, 'logged when it started failing, not per request');
  below.release();
});

test('an answer, or an answer such as "not found", closes the breaker (logged once)', async () => {
  const { below, m, breaker, timer, layer, logged } = rig();
  breaker.failed();
  below.fail.set('fetchManifest app:nope', 'MANIFEST_UNKNOWN');
  await assert.rejects(layer.fetchManifest('app', 'nope'), (e) => isSigilError(e) && e.code === 'MANIFEST_UNKNOWN');
  assert.equal(breaker.failing, false);
  breaker.failed();
  await layer.fetchManifest('app', m.digest);
  assert.equal(breaker.failing, false);
  assert.equal(logged(/answering again/), 2);
  assert.deepEqual(timer.armed, [], 'the deadline is cancelled once answered');
});

test('a failure stale-if-error does not cover is passed on without opening the breaker', async () => {
  const { below, breaker, layer } = rig();
  below.fail.set('referrers', 'UPSTREAM_DENIED');
  await assert.rejects(layer.referrers('app', `sha256:${'a'.repeat(64)}`), (e) => isSigilError(e) && e.code === 'UPSTREAM_DENIED');
  assert.equal(breaker.failing, false);
});

test('blobs are not bounded: they stream for as long as they take', async () => {
  const { m, timer, layer } = rig();
  const res = await layer.openBlob('app', m.digest, { method: 'GET' });
  res.body?.destroy();
  assert.deepEqual(timer.armed, []);
});
