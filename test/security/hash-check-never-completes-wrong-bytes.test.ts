import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import { isSigilError } from '../../src/errors.js';
import type { HashPool } from '../../src/hash/hash-pool.js';
import type { Digest } from '../../src/oci/digest.js';
import { COUNTER_START } from '../../src/hash/hash-pool.js';
import { RING_BYTES } from '../../src/hash/ring.js';
import { checkedBlobStream } from '../../src/upstream/blob-verify.js';
import { sha256, sha512 } from '../helpers/digest.js';
import { hashPools, testHashWorker } from '../helpers/hash-pools.js';

// Pins (each would catch a regression): the blob check over the off-thread hash
// never lets a consumer have every byte of a blob that does not hash to its digest, across
// the Int32 wrap of WRITTEN/READ, full rings, chunks bigger than a ring, sha256 and sha512,
// rings reused from the free list, concurrent streams on shared workers, a worker that dies
// while the digest is awaited, and a consumer that goes away while the digest is awaited.

const pool = hashPools();

const digestOf = (alg: 'sha256' | 'sha512', b: Buffer): Digest => (alg === 'sha256' ? sha256(b) : sha512(b));

function chunked(data: Buffer, sizes: readonly number[]): Buffer[] {
  const out: Buffer[] = [];
  for (let off = 0, i = 0; off < data.length; i++) {
    const n = sizes[i % sizes.length];
    out.push(Buffer.from(data.subarray(off, off + n))); // own buffers, as a socket gives them
    off += n;
  }
  return out;
}

interface Outcome {
  readonly received: number;
  readonly bytes: Buffer;
  readonly error?: unknown;
}

function consume(s: Readable): Promise<Outcome> {
  const parts: Buffer[] = [];
  let received = 0;
  return new Promise((resolve) => {
    s.on('data', (c: Buffer) => {
      received += c.length;
      parts.push(c);
    });
    s.once('end', () => resolve({ received, bytes: Buffer.concat(parts) }));
    s.once('error', (error) => resolve({ received, bytes: Buffer.concat(parts), error }));
  });
}

function run(hashes: HashPool, data: Buffer, digest: Digest, sizes: readonly number[], expectedLength?: number): Promise<Outcome> {
  const out = checkedBlobStream(Readable.from(chunked(data, sizes)), { digest, expectedLength, describe: 'test blob', hashes });
  return consume(out);
}

// Offsets where one flipped byte must be caught: the first, both sides of the Int32 wrap of
// the counters (they start at COUNTER_START), both sides of the ring's own wrap, the last.
const WRAP_AT = 0x8000_0000 - COUNTER_START; // bytes until WRITTEN crosses 2^31
const RING_WRAP_AT = RING_BYTES - (COUNTER_START & (RING_BYTES - 1)); // bytes until the ring position wraps to 0

test('a flipped byte anywhere (across the counter wrap and ring wrap) never reaches the consumer complete; right bytes pass whole', async () => {
  const hashes = pool({ size: 2 });
  const size = 3 * RING_BYTES + 12_345;
  const chunkings = [[65_536], [1, 4093, 65_536, 16_384], [RING_BYTES + 7], [5 * RING_BYTES]];
  for (const alg of ['sha256', 'sha512'] as const) {
    const good = randomBytes(size);
    const digest = digestOf(alg, good);
    const offsets = [0, WRAP_AT - 1, WRAP_AT, RING_WRAP_AT - 1, RING_WRAP_AT, RING_BYTES, size - 1];
    const runs: Array<Promise<void>> = [];
    for (const [ci, sizes] of chunkings.entries()) {
      for (const at of offsets) {
        const bad = Buffer.from(good);
        bad[at] ^= 0x80;
        runs.push(
          run(hashes, bad, digest, sizes, ci % 2 === 0 ? undefined : size).then((r) => {
            assert.ok(r.received < size, `${alg}, flip at ${at}, chunks ${sizes.join('/')}: consumer got all ${size} bytes`);
            assert.ok(isSigilError(r.error) && r.error.code === 'DIGEST_MISMATCH', `${alg} flip at ${at}: ${String(r.error)}`);
          }),
        );
      }
      runs.push(
        run(hashes, good, digest, sizes, ci % 2 === 0 ? undefined : size).then((r) => {
          assert.equal(r.error, undefined, `${alg}, good bytes, chunks ${sizes.join('/')}`);
          assert.ok(r.bytes.equals(good));
        }),
      );
    }
    const inFlight = hashes.load().reduce((a, b) => a + b, 0);
    assert.equal(inFlight, runs.length, 'every stream is hashed off-thread');
    await Promise.all(runs); // concurrent: streams share the two workers and reuse freed rings
  }
  assert.deepEqual(hashes.load(), hashes.load().map(() => 0), 'every job dropped');
});

test('a blob of the right bytes for the other algorithm, or a truncated or extended blob, is refused', async () => {
  const hashes = pool({ size: 1 });
  const data = randomBytes(2 * RING_BYTES + 1);
  const s256 = digestOf('sha256', data);
  // sha512 stream, sha256 digest of the same bytes re-labelled: a different digest string
  const relabelled = `sha512:${s256.slice('sha256:'.length)}${'0'.repeat(64)}` as Digest;
  for (const [bytes, digest] of [
    [data, relabelled],
    [data.subarray(0, data.length - 1), s256],
    [Buffer.concat([data, Buffer.from([0])]), s256],
  ] as const) {
    const r = await run(hashes, bytes, digest, [65_536]);
    assert.ok(r.error !== undefined && r.received < bytes.length, `${digest.slice(0, 12)} over ${bytes.length} bytes`);
  }
  const r = await run(hashes, data, s256, [65_536]);
  assert.equal(r.error, undefined);
  assert.ok(r.bytes.equals(data));
});

test('a ring reused from the free list never answers with the digest of its previous blob', async () => {
  const hashes = pool({ size: 1 });
  for (const alg of ['sha512', 'sha256', 'sha512'] as const) {
    const good = randomBytes(RING_BYTES + 4321);
    const digest = digestOf(alg, good);
    const ok = await run(hashes, good, digest, [65_536]);
    assert.equal(ok.error, undefined);
    // the same digest asked again, other bytes: the ring (and its digest bytes) are the last job's
    for (const at of [0, good.length - 1]) {
      const bad = Buffer.from(good);
      bad[at] ^= 1;
      const r = await run(hashes, bad, digest, [65_536]);
      assert.ok(r.received < bad.length && isSigilError(r.error) && r.error.code === 'DIGEST_MISMATCH', `${alg}, flip at ${at}`);
    }
  }
});

/**
 * A worker, as a data: URL module, that takes its jobs and exits the moment one of them
 * reaches END (the producer is then waiting in digest()): a worker dying mid-flush.
 */
const DIES_AT_END = new URL(
  `data:text/javascript,${encodeURIComponent(`
import { receiveMessageOnPort, workerData } from 'node:worker_threads';
const bell = new Int32Array(workerData.doorbell);
const jobs = [];
for (;;) {
  const seen = Atomics.load(bell, 0);
  for (let m = receiveMessageOnPort(workerData.port); m !== undefined; m = receiveMessageOnPort(workerData.port)) {
    if (m.message.job) jobs.push(new Int32Array(m.message.job, 0, 16));
  }
  for (const c of jobs) {
    Atomics.store(c, 1, Atomics.load(c, 0)); // READ = WRITTEN: "hashed" (never a digest)
    Atomics.notify(c, 1);
    if (Atomics.load(c, 2) === 1) process.exit(3); // END
  }
  Atomics.wait(bell, 0, seen);
}
`)}`,
);

test('a worker that dies while the digest is awaited fails the stream: the consumer never gets the last chunk', async () => {
  const hashes = pool({ size: 1, workerUrl: DIES_AT_END });
  const data = randomBytes(RING_BYTES + 99);
  const r = await run(hashes, data, digestOf('sha256', data), [65_536]);
  assert.ok(r.received < data.length, `consumer got ${r.received} of ${data.length}`);
  assert.ok(isSigilError(r.error) && r.error.code === 'INTERNAL' && /worker stopped/.test(r.error.message), String(r.error));
});

test('a consumer that goes away while the digest is awaited: no crash, no unhandled rejection, the job is dropped', async () => {
  const problems: unknown[] = [];
  const onProblem = (e: unknown): void => {
    problems.push(e);
  };
  process.on('uncaughtException', onProblem);
  process.on('unhandledRejection', onProblem);
  try {
    const hashes = pool({ size: 1, stallTimeoutMs: 300, workerUrl: testHashWorker('stuck') });
    const data = randomBytes(RING_BYTES / 2);
    // ring not full, so every update() returns at once; the stuck worker never answers the digest
    const out = checkedBlobStream(Readable.from(chunked(data, [65_536])), { digest: digestOf('sha512', data), describe: 'test blob', hashes });
    let received = 0;
    let ended = false;
    out.on('data', (c: Buffer) => {
      received += c.length;
    });
    out.on('end', () => {
      ended = true;
    });
    out.on('error', () => {});
    await new Promise((resolve) => setTimeout(resolve, 100)); // flushing: waiting for DONE
    assert.deepEqual(hashes.load(), [1]);
    out.destroy();
    assert.deepEqual(hashes.load(), [0], 'destroy drops the job at once');
    await new Promise((resolve) => setTimeout(resolve, 600)); // past the stall timeout of the pending digest()
    assert.equal(ended, false);
    assert.ok(received < data.length);
    assert.deepEqual(problems, []);
  } finally {
    process.off('uncaughtException', onProblem);
    process.off('unhandledRejection', onProblem);
  }
});
