import assert from 'node:assert/strict';
import { test } from 'node:test';
import { READ_BUDGET_BYTES, SLAB_MAX_BYTES, SLAB_MIN_BYTES, SLABS_PER_STREAM, SlabPool, storeReadSlabs } from './read-slabs.js';

const KIB = 1024;
const pool = (idleBytesKept = 0): SlabPool => new SlabPool({ budgetBytes: 1024 * KIB, minBytes: 64 * KIB, maxBytes: 256 * KIB, slabsPerStream: 2, idleBytesKept });

test('slabs are sized from the streams reading: a lone stream gets the largest, many share the budget, none smaller than the least', () => {
  const p = pool();
  assert.equal(p.take().length, 256 * KIB, 'no stream entered yet: as for one');
  const leaves = [p.enter()];
  assert.equal(p.take().length, 256 * KIB, '1 MiB ÷ (1 × 2) = 512 KiB, held to the largest');
  leaves.push(p.enter());
  assert.equal(p.take().length, 256 * KIB, '1 MiB ÷ (2 × 2)');
  leaves.push(p.enter());
  assert.equal(p.take().length, 128 * KIB, '1 MiB ÷ (3 × 2) ≈ 171 KiB, rounded down to a power of two');
  for (let i = 0; i < 13; i++) leaves.push(p.enter());
  assert.equal(p.streams, 16);
  assert.equal(p.take().length, 64 * KIB, '1 MiB ÷ (16 × 2) = 32 KiB, held to the least');
  for (const leave of leaves.splice(1)) leave();
  assert.equal(p.take().length, 256 * KIB, 'alone again');
});

test('a stream that leaves twice is counted out once', () => {
  const p = pool();
  const a = p.enter();
  const b = p.enter();
  a();
  a();
  assert.equal(p.streams, 1);
  b();
  assert.equal(p.streams, 0);
});

test('slabs given back are taken again by size, and idle slabs are kept up to idleBytesKept', () => {
  const p = pool(320 * KIB);
  const big = p.take(); // 256 KiB
  const leaves = Array.from({ length: 8 }, () => p.enter());
  const small = [p.take(), p.take()]; // 64 KiB each
  p.give(big);
  p.give(small[0]!);
  p.give(small[1]!); // 256 + 64 + 64 > 320: not kept
  assert.equal(p.idle, 2);
  assert.equal(p.take(), small[0], 'a small one, for a stream among many');
  for (const leave of leaves) leave();
  assert.equal(p.take(), big, 'the big one, for a lone stream');
  assert.equal(p.idle, 0);
});

test('only the pool\'s own slabs come back, once each: not a view of one, not another buffer of a slab\'s size, not one given twice', () => {
  const p = pool(4 * 1024 * KIB);
  const slab = p.take();
  p.give(slab.subarray(0, 64 * KIB)); // a chunk's view, not the slab
  p.give(Buffer.allocUnsafeSlow(64 * KIB)); // a slab's size, not the pool's
  p.give(Buffer.from(slab)); // a copy
  assert.equal(p.idle, 0);
  p.give(slab);
  assert.equal(p.idle, 1);
  p.give(slab); // twice: two streams would read into it at once
  assert.equal(p.idle, 1, 'taken back once');
  assert.equal(p.take(), slab);
  assert.notEqual(p.take(), slab, 'the next stream gets another');
});

test('slab sizes must be powers of two with the least no larger than the largest', () => {
  assert.throws(() => new SlabPool({ budgetBytes: 1, minBytes: 100, maxBytes: 256, slabsPerStream: 2, idleBytesKept: 0 }), RangeError);
  assert.throws(() => new SlabPool({ budgetBytes: 1, minBytes: 512, maxBytes: 256, slabsPerStream: 2, idleBytesKept: 0 }), RangeError);
});

test('the store\'s pool: a lone stream reads SLAB_MAX_BYTES, 64 streams stay within the budget or the least slab each', () => {
  assert.equal(storeReadSlabs.slabBytes(), SLAB_MAX_BYTES);
  const leaves = Array.from({ length: 64 }, () => storeReadSlabs.enter());
  try {
    const each = storeReadSlabs.slabBytes() * SLABS_PER_STREAM;
    assert.ok(each * 64 <= Math.max(READ_BUDGET_BYTES, 64 * SLAB_MIN_BYTES * SLABS_PER_STREAM), `${each} bytes out per stream`);
    assert.ok(each <= 1024 * KIB, 'within the ~1 MiB a stream may add');
  } finally {
    for (const leave of leaves) leave();
  }
});

test('idle slabs of a size no longer taken make room for the size taken now (a lone stream\'s big slabs do not keep many streams from reusing theirs)', () => {
  const p = pool(1024 * KIB);
  const big = [p.take(), p.take(), p.take(), p.take(), p.take()]; // a lone stream's: 256 KiB each
  for (const slab of big.slice(0, 4)) p.give(slab);
  assert.equal(p.idle, 4, 'idle: 1 MiB of big slabs, all that is kept');
  const leaves = Array.from({ length: 16 }, () => p.enter());
  const small = p.take(); // 64 KiB, for a stream among many
  assert.equal(small.length, 64 * KIB);
  p.give(small);
  assert.equal(p.take(), small, 'the slab just written is taken again, not allocated anew');
  p.give(small);
  p.give(big[4]!); // a big slab a stream still had out, written late
  assert.equal(p.take(), small, 'a big slab given back late does not push out the size taken now');
  for (const leave of leaves) leave();
});
