import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import { OFF_THREAD_MIN_BYTES, type HashPool } from './hash-pool.js';
import type { StreamHash } from './hash-pool.js';
import { RING_BYTES } from './ring.js';
import { isSigilError } from '../errors.js';
import { hashPools, testHashWorker } from '../../test/helpers/hash-pools.js';

// The pool of hash workers: digests computed off the event loop over shared rings.

const pool = hashPools();

async function feed(h: StreamHash, data: Buffer, chunkSizes: readonly number[]): Promise<void> {
  let off = 0;
  for (let i = 0; off < data.length; i++) {
    const n = chunkSizes[i % chunkSizes.length];
    const room = h.update(data.subarray(off, off + n));
    if (room !== undefined) await room;
    off += n;
  }
}

const hex = (alg: string, data: Buffer): string => createHash(alg).update(data).digest('hex');

test('off-thread digests equal node:crypto for sizes around the ring and chunks bigger than it', async () => {
  const p = pool({ size: 1 });
  const sizes = [0, 1, RING_BYTES - 1, RING_BYTES, RING_BYTES + 1, 3 * RING_BYTES + 12_345];
  const chunkings = [[65_536], [1, 7, 65_536, 3], [RING_BYTES + 5], [5 * 1024 * 1024]];
  for (const alg of ['sha256', 'sha512'] as const) {
    for (const size of sizes) {
      const data = randomBytes(size);
      for (const chunks of chunkings) {
        const h = p.start(alg); // unknown length: off-thread
        assert.deepEqual(p.load(), [1], 'the stream is on the worker');
        await feed(h, data, chunks);
        assert.equal(await h.digest(), hex(alg, data), `${alg}, ${size} bytes, chunks ${chunks.join('/')}`);
        assert.deepEqual(p.load(), [0]);
      }
    }
  }
});

test('the bytes are copied: a caller reusing its buffer once update() is through does not change the digest', async () => {
  const p = pool({ size: 1 });
  const h = p.start('sha256');
  const whole = createHash('sha256');
  const buf = Buffer.alloc(256 * 1024);
  for (let i = 0; i < 40; i++) {
    buf.fill(i);
    whole.update(buf);
    const room = h.update(buf);
    if (room !== undefined) await room;
    buf.fill(0xff); // before the worker can have hashed it: 40 × 256 KiB is five rings

  }
  assert.equal(await h.digest(), whole.digest('hex'));
});

test('a different byte anywhere gives a different digest (what the blob check compares)', async () => {
  const p = pool({ size: 1 });
  const data = randomBytes(3 * RING_BYTES);
  const want = hex('sha256', data);
  for (const at of [0, RING_BYTES - 1, RING_BYTES, data.length - 1]) {
    const other = Buffer.from(data);
    other[at] ^= 1;
    const h = p.start('sha256');
    await feed(h, other, [65_536]);
    assert.notEqual(await h.digest(), want, `flipped byte ${at}`);
  }
});

test('concurrent streams spread over the workers and each gets its own digest', async () => {
  const p = pool({ size: 2 });
  const datas = Array.from({ length: 6 }, (_v, i) => randomBytes(RING_BYTES + i * 100_003));
  const hashes = datas.map(() => p.start('sha256'));
  assert.deepEqual(p.load().sort(), [3, 3]);
  await Promise.all(hashes.map((h, i) => feed(h, datas[i], [16_384 + i * 1000])));
  const got = await Promise.all(hashes.map((h) => h.digest()));
  assert.deepEqual(got, datas.map((d) => hex('sha256', d)));
  assert.deepEqual(p.load(), [0, 0]);
});

test('small known sizes, and a pool of size 0, hash inline (no worker)', async () => {
  const p = pool({ size: 1 });
  const data = randomBytes(OFF_THREAD_MIN_BYTES - 1);
  const h = p.start('sha256', data.length);
  assert.deepEqual(p.load(), [], 'no worker started');
  assert.equal(h.update(data), undefined);
  assert.equal(await h.digest(), hex('sha256', data));
  const none = pool({ size: 0 });
  assert.equal(none.offThread(), false);
  const big = randomBytes(OFF_THREAD_MIN_BYTES * 2);
  const h0 = none.start('sha512', big.length);
  await feed(h0, big, [65_536]);
  assert.equal(await h0.digest(), hex('sha512', big));
});

test('an aborted stream frees its worker; the next one is right', async () => {
  const p = pool({ size: 1 });
  const h = p.start('sha256');
  await feed(h, randomBytes(RING_BYTES * 2), [65_536]);
  h.abort();
  assert.deepEqual(p.load(), [0]);
  await assert.rejects(h.digest(), (e: unknown) => isSigilError(e));
  const data = randomBytes(RING_BYTES + 3);
  const next = p.start('sha256');
  await feed(next, data, [100_000]);
  assert.equal(await next.digest(), hex('sha256', data));
});

test('a worker that dies fails its streams (never a digest); after repeated deaths the pool hashes inline', async () => {
  const p = pool({ size: 1, workerUrl: testHashWorker('broken') });
  for (let i = 0; i < 3; i++) {
    const h = p.start('sha256');
    const fed = feed(h, randomBytes(RING_BYTES * 3), [65_536]);
    await assert.rejects(
      fed.then(() => h.digest()),
      (e: unknown) => isSigilError(e) && e.code === 'INTERNAL' && /hash worker stopped/.test(e.message),
    );
  }
  assert.equal(p.offThread(), false);
  const data = randomBytes(RING_BYTES * 2);
  const h = p.start('sha256');
  await feed(h, data, [65_536]);
  assert.equal(await h.digest(), hex('sha256', data));
});

test('a worker that makes no progress fails the stream after the stall timeout, no hang', async () => {
  const p = pool({ size: 1, stallTimeoutMs: 200, workerUrl: testHashWorker('stuck') });
  const small = p.start('sha256');
  small.update(Buffer.alloc(1000));
  const t0 = Date.now();
  await assert.rejects(small.digest(), (e: unknown) => isSigilError(e) && /no progress for 200 ms/.test(e.message));
  const full = p.start('sha256');
  await assert.rejects(feed(full, Buffer.alloc(RING_BYTES + 1), [65_536]), (e: unknown) => isSigilError(e) && /no progress/.test(e.message));
  assert.ok(Date.now() - t0 < 5_000);
});

describe('abort() ends the waits of the aborted stream', () => {
  // RingHash.abort() moves STATE to ABORTED and rings the worker; the producer's own
  // Atomics.waitAsync on READ (ring full) or STATE (digest() waiting for DONE) must end too. A
  // worker drops an ABORTED job without touching READ or STATE, so without that the pending
  // wait would only end at the stall timeout (30 s in production): every client that goes away
  // while its ring is full would pin the 2 MiB ring, the held chunk and the BlobCheck that long.
  // A stuck worker stands in for "a worker that will not touch this job again"; its stall
  // timeout is far longer than the bound below, so an answer within the bound can only come
  // from abort().
  const STALL_MS = 120_000;
  const PROMPT_MS = 5_000;

  const stuckPool = (): HashPool => pool({ size: 1, stallTimeoutMs: STALL_MS, workerUrl: testHashWorker('stuck') });

  /** Whether `p` settles (either way) within PROMPT_MS. */
  async function settlesPromptly(p: Promise<unknown>): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), PROMPT_MS);
    });
    const settled = p.then(
      () => true as const,
      () => true as const,
    );
    try {
      return await Promise.race([settled, late]);
    } finally {
      clearTimeout(timer);
    }
  }

  test('abort() during a ring-full wait ends the pending update promptly (not at the stall timeout)', async () => {
    const h = stuckPool().start('sha256');
    const room = h.update(Buffer.alloc(RING_BYTES + 1));
    assert.ok(room !== undefined, 'the ring is full: update() waits');
    room.catch(() => {});
    h.abort();
    assert.ok(await settlesPromptly(room), `the aborted stream's update() stayed pending past ${PROMPT_MS} ms (stall timeout ${STALL_MS} ms)`);
  });

  test('abort() during digest() ends the pending digest promptly (not at the stall timeout)', async () => {
    const h = stuckPool().start('sha512');
    assert.equal(h.update(Buffer.alloc(1000)), undefined);
    const d = h.digest();
    d.catch(() => {});
    h.abort();
    assert.ok(await settlesPromptly(d), `the aborted stream's digest() stayed pending past ${PROMPT_MS} ms (stall timeout ${STALL_MS} ms)`);
    await assert.rejects(d);
  });
});

describe('a hash that gave its digest is settled', () => {
  // A RingHash hands its SharedArrayBuffer back to the pool's free list at digest(). A second
  // digest() (or an update()) on the settled hash must not act on whichever stream reuses that
  // ring next (finalize the other stream's job early and return the digest of its bytes): a
  // digest reported for bytes that are not this stream's is exactly what the ring must never
  // produce. (BlobCheck calls digest() once and never update() after it, so no HTTP path
  // reaches this today.)
  test('a hash that already gave its digest refuses a second digest(), it never reports another stream\'s bytes', async () => {
    const p = pool({ size: 1 });
    const mine = randomBytes(RING_BYTES + 10);
    const first = p.start('sha256');
    await first.update(mine);
    assert.equal(await first.digest(), hex('sha256', mine));

    const theirs = randomBytes(100_000);
    const second = p.start('sha256'); // takes the ring `first` released
    assert.equal(second.update(theirs), undefined);

    const again = await first.digest().then(
      (digest) => ({ digest }),
      (err: unknown) => ({ err }),
    );
    const theirHex = hex('sha256', theirs);
    assert.ok('err' in again, `the settled hash answered ${'digest' in again ? again.digest : ''}${'digest' in again && again.digest === theirHex ? " (the other stream's digest)" : ''}`);
    assert.equal(await second.digest(), theirHex, 'the other stream is unaffected');
  });
});

describe('a worker that stalled is retired', () => {
  // A worker that made no progress for the stall timeout has its stalled jobs dropped, so it
  // has 0 jobs and would be picked first: every later big blob would be handed to the same
  // wedged thread, wait the stall timeout and fail, until restart. It must be retired, like a
  // dead worker is replaced (and after WORKER_DEATHS_MAX the pool hashes inline).
  test('a worker that stalled is retired: later streams are not handed to it again', async () => {
    const p = pool({ size: 1, stallTimeoutMs: 150, workerUrl: testHashWorker('stuck') });
    const data = randomBytes(64 * 1024);
    const want = hex('sha256', data);
    const outcomes: string[] = [];
    for (let i = 0; i < 6; i++) {
      const h = p.start('sha256');
      await feed(h, data, [65_536]);
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
});
