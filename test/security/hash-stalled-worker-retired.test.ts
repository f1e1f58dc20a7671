import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, test } from 'node:test';
import { HashPool } from '../../src/hash/hash-pool.js';
import type { StreamHash } from '../../src/hash/hash-pool.js';
import { isSigilError } from '../../src/errors.js';
import { sha256Hex } from '../helpers/digest.js';

// Guards: a worker that made no progress for the stall timeout is left in the
// pool. Its stalled jobs are dropped, so it has 0 jobs and #pick() prefers it: every later
// big blob is handed to the same wedged thread, waits HASH_STALL_TIMEOUT_MS (30 s) and
// fails. Nothing retires it (no terminate, no death counted), so the pool never falls back
// to another worker or to inline hashing: blob pulls over 1 MiB fail until restart.
// A dead worker, by contrast, is replaced and after WORKER_DEATHS_MAX the pool hashes inline.

const STALL_MS = 150;

const pools: HashPool[] = [];
after(async () => {
  for (const p of pools) await p.close();
});

async function feed(h: StreamHash, data: Buffer): Promise<void> {
  for (let off = 0; off < data.length; off += 65_536) {
    const room = h.update(data.subarray(off, off + 65_536));
    if (room !== undefined) await room;
  }
}

test('a worker that stalled is retired: later streams are not handed to it again', async () => {
  const p = new HashPool({ size: 1, stallTimeoutMs: STALL_MS, workerUrl: new URL('../helpers/hash-workers/stuck.js', import.meta.url) });
  pools.push(p);
  const data = randomBytes(64 * 1024);
  const want = sha256Hex(data);
  const outcomes: string[] = [];
  for (let i = 0; i < 6; i++) {
    const h = p.start('sha256');
    await feed(h, data);
    try {
      assert.equal(await h.digest(), want);
      outcomes.push('ok');
    } catch (e) {
      assert.ok(isSigilError(e) && /no progress|worker stopped/.test(e.message), String(e));
      outcomes.push('stalled');
    }
  }
  // Fail-closed on the first stalls is right; stalling forever is not.
  assert.equal(outcomes.at(-1), 'ok', `outcomes: ${outcomes.join(', ')}`);
});
