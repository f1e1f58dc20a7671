import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Policy } from '../config/types.js';
import { sha256 } from '../../test/helpers/fake-registry.js';
import { StoreAdmission } from './admission.js';


/** A policy matching `prod/**` of any upstream, whose matcher counts how often it is asked. */
function countedPolicy(mode: 'enforce' | 'warn'): { policy: Policy; asked: () => number } {
  let n = 0;
  const re = /^[^/]+\/prod\//;
  const matcher = { test: (s: string) => (n++, re.test(s)) };
  return { policy: { name: mode, mode, matchers: [matcher], fingerprint: mode } as unknown as Policy, asked: () => n };
}

test('blobs a manifest let through are admitted at their descriptors\' sizes, for the verdict lifetime', () => {
  const clock = { now: 1_000 }; // (lru-cache takes a start time of 0 for "no TTL")
  const { policy } = countedPolicy('enforce');
  const a = new StoreAdmission([policy], { ttlMs: 1_000, now: () => clock.now });
  const layer = sha256('layer');
  const manifest = sha256('manifest');
  assert.equal(a.blob('up.test', 'prod/app', layer), false, 'enforce: nothing named it yet');
  a.admitNamed('up.test', 'prod/app', manifest, [{ digest: layer, size: 5 }]);
  assert.deepEqual(a.blob('up.test', 'prod/app', layer), { size: 5, manifest });
  assert.equal(a.admittedBy('up.test', 'prod/app', layer), true);
  assert.equal(a.admittedBy('up.test', 'prod/other', layer), false, 'per repository');
  clock.now += 1_001;
  assert.equal(a.admittedBy('up.test', 'prod/app', layer), false, 'forgotten with the verdict');
});

test('outside enforce any blob is admitted, without a size; the policy is looked up once per repository', () => {
  const { policy, asked } = countedPolicy('warn');
  const a = new StoreAdmission([policy], { ttlMs: 1_000 });
  for (let i = 0; i < 5; i++) assert.deepEqual(a.blob('up.test', 'prod/app', sha256(`blob ${i}`)), {});
  assert.equal(a.servesUnnamed('up.test', 'prod/app'), true);
  assert.equal(asked(), 1);
});
