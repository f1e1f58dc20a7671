import assert from 'node:assert/strict';
import { test } from 'node:test';
import { generateKey, legacyLayer, sigManifest } from '../../test/helpers/signer.js';
import { FakeRegistry, imageManifest, sha256, silentLogger } from '../../test/helpers/fake-registry.js';
import type { FetchedManifest } from '../oci/registry.js';
import { ArtifactJudge } from './artifact-judge.js';
import { DecisionDeadline } from './decision-deadline.js';
import { VerificationSlots } from './verification-slots.js';

const key = generateKey('p256');
const signed = `sha256:${'1'.repeat(64)}`;
const target = { upstream: 'up.test', repository: 'app', reference: 'v1' };

/** A cosign `.sig` manifest in `up` (its blobs too), as fetched; `payload` replaces the signing payload. */
function sigArtifact(up: FakeRegistry, payload?: Buffer): FetchedManifest {
  const layer = legacyLayer(key, signed);
  const sig = sigManifest([payload ? { ...layer, payload } : layer]);
  for (const b of sig.blobs) up.blobs.set(sha256(b), b);
  return up.put('app', { bytes: sig.manifest, digest: sha256(sig.manifest), mediaType: sig.mediaType }, 'v1');
}

function judgeWith(slots = new VerificationSlots({ total: 4, perUpstream: 2 })): ArtifactJudge {
  return new ArtifactJudge({ slots, logger: silentLogger() });
}

/** Judges `m` under a deadline of its own (cleared after). */
async function judged(judge: ArtifactJudge, up: FakeRegistry, m: FetchedManifest, ms = 60_000) {
  const deadline = new DecisionDeadline(ms, 'blobs not read');
  try {
    return await judge.judge(up, target, m, deadline);
  } finally {
    deadline.clear();
  }
}

test('a manifest is shaped like a signature artifact or not, by its media type and bytes', () => {
  const judge = judgeWith();
  assert.equal(judge.shapedLikeArtifact(sigArtifact(new FakeRegistry())), true);
  assert.equal(judge.shapedLikeArtifact(imageManifest([Buffer.from('layer')])), false);
});

test('a signature artifact whose blobs are signature data passes, its blobs served digest-checked in its repository only', async () => {
  const up = new FakeRegistry();
  const m = sigArtifact(up);
  const judge = judgeWith();
  const j = await judged(judge, up, m);
  assert.equal(j.ok, true, JSON.stringify(j));
  const blobs = j.ok ? j.blobs : [];
  assert.ok(blobs.length > 0);
  for (const b of blobs) {
    assert.equal(judge.isSignatureBlob('up.test', 'app', b.digest), true);
    assert.equal(judge.isSignatureBlob('up.test', 'other', b.digest), false);
  }
});

test('a judgement is remembered by digest: the blobs are read once', async () => {
  const up = new FakeRegistry();
  const m = sigArtifact(up);
  const judge = judgeWith();
  await judged(judge, up, m);
  const reads = up.count('openBlob');
  assert.ok(reads > 0);
  const again = await judged(judge, up, m);
  assert.equal(again.ok, true);
  assert.equal(up.count('openBlob'), reads, 'no blob read again');
});

test('shaped like one, but its content is not signature data: not passed, and remembered', async () => {
  const up = new FakeRegistry();
  const m = sigArtifact(up, Buffer.from('#!/bin/sh\necho not a signing payload\n'));
  const judge = judgeWith();
  const j = await judged(judge, up, m);
  assert.equal(j.ok, false);
  const reads = up.count('openBlob');
  assert.equal((await judged(judge, up, m)).ok, false);
  assert.equal(up.count('openBlob'), reads, 'the judgement on its content is not asked again');
});

test('blobs that cannot be read: not passed, and not remembered (read again next time)', async () => {
  const up = new FakeRegistry();
  const m = sigArtifact(up);
  up.fail.set('openBlob', 'UPSTREAM_UNREACHABLE');
  const judge = judgeWith();
  const j = await judged(judge, up, m);
  assert.equal(j.ok, false);
  assert.match(j.ok ? '' : j.reason, /^its blobs could not be read: UPSTREAM_UNREACHABLE/);
  up.fail.clear();
  assert.equal((await judged(judge, up, m)).ok, true, 'judged once the upstream answers');
});

test('the check holds a verification slot of the upstream, and a deadline that passes while waiting for one ends it unjudged', async () => {
  const slots = new VerificationSlots({ total: 2, perUpstream: 1 });
  const up = new FakeRegistry();
  const m = sigArtifact(up);
  const judge = judgeWith(slots);
  const held = await slots.acquire('up.test', new AbortController().signal);
  try {
    const j = await judged(judge, up, m, 1);
    assert.equal(j.ok, false);
    assert.match(j.ok ? '' : j.reason, /^its blobs were not read: UPSTREAM_TIMEOUT: .*, waiting for a verification slot$/);
    assert.equal(up.count('openBlob'), 0, 'nothing read without a slot');
  } finally {
    held();
  }
  assert.deepEqual([slots.running, slots.waiting], [0, 0]);
  assert.equal((await judged(judge, up, m)).ok, true, 'not remembered: judged once a slot is free');
  assert.deepEqual([slots.running, slots.waiting], [0, 0], 'the slot is given back');
});
