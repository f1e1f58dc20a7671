import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { HashPool } from '../../src/hash/hash-pool.js';
import { RING_BYTES } from '../../src/hash/ring.js';

// Guards: RingHash.abort() moves STATE to ABORTED and rings the worker, but
// does not notify the producer's own Atomics.waitAsync on READ (ring full) or STATE
// (digest() waiting for DONE). A worker drops an ABORTED job without touching READ or
// STATE, so the pending wait only ends at the stall timeout (30 s in production): every
// client that goes away while its ring is full pins the 2 MiB ring, the held chunk and
// the BlobCheck for 30 s. A stuck worker stands in for "a worker that will not touch
// this job again" so that the wait is deterministic.

const STALL_MS = 4_000;
const PROMPT_MS = 1_000;

const pools: HashPool[] = [];
after(async () => {
  for (const p of pools) await p.close();
});

function stuckPool(): HashPool {
  const p = new HashPool({ size: 1, stallTimeoutMs: STALL_MS, workerUrl: new URL('../helpers/hash-workers/stuck.js', import.meta.url) });
  pools.push(p);
  return p;
}

async function settleTime(p: Promise<unknown>): Promise<number> {
  const t0 = Date.now();
  await p.then(
    () => undefined,
    () => undefined,
  );
  return Date.now() - t0;
}

test('abort() during a ring-full wait ends the pending update promptly (not at the stall timeout)', async () => {
  const h = stuckPool().start('sha256');
  const room = h.update(Buffer.alloc(RING_BYTES + 1));
  assert.ok(room !== undefined, 'the ring is full: update() waits');
  room.catch(() => {});
  h.abort();
  const ms = await settleTime(room);
  assert.ok(ms < PROMPT_MS, `the aborted stream's update() stayed pending ${ms} ms (stall timeout ${STALL_MS} ms)`);
});

test('abort() during digest() ends the pending digest promptly (not at the stall timeout)', async () => {
  const h = stuckPool().start('sha512');
  assert.equal(h.update(Buffer.alloc(1000)), undefined);
  const d = h.digest();
  d.catch(() => {});
  h.abort();
  const ms = await settleTime(d);
  assert.ok(ms < PROMPT_MS, `the aborted stream's digest() stayed pending ${ms} ms (stall timeout ${STALL_MS} ms)`);
  await assert.rejects(d);
});
