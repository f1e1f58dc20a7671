import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { after, test } from 'node:test';
import { HashPool, OFF_THREAD_MIN_BYTES } from '../../src/hash/hash-pool.js';
import type { StreamHash } from '../../src/hash/hash-pool.js';
import { RING_BYTES } from '../../src/hash/ring.js';
import { isSigilError } from '../../src/errors.js';

const pools: HashPool[] = [];
after(async () => {
  for (const p of pools) await p.close();
});

function pool(opts: ConstructorParameters<typeof HashPool>[0]): HashPool {
  const p = new HashPool(opts);
  pools.push(p);
  return p;
}

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
  const p = pool({ size: 1, workerUrl: new URL('../helpers/hash-workers/broken.js', import.meta.url) });
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
  const p = pool({ size: 1, stallTimeoutMs: 200, workerUrl: new URL('../helpers/hash-workers/stuck.js', import.meta.url) });
  const small = p.start('sha256');
  small.update(Buffer.alloc(1000));
  const t0 = Date.now();
  await assert.rejects(small.digest(), (e: unknown) => isSigilError(e) && /no progress for 200 ms/.test(e.message));
  const full = p.start('sha256');
  await assert.rejects(feed(full, Buffer.alloc(RING_BYTES + 1), [65_536]), (e: unknown) => isSigilError(e) && /no progress/.test(e.message));
  assert.ok(Date.now() - t0 < 5_000);
});
