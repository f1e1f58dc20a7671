import assert from 'node:assert/strict';
import { lstat, utimes, writeFile } from 'node:fs/promises';
import { describe, test } from 'node:test';
import { tempDir } from '../../test/helpers/temp.js';
import type { Digest } from '../oci/digest.js';
import { evictLru, pruneOlderThan } from './eviction.js';
import { Layout } from './layout.js';
import { ObjectIndex } from './object-index.js';
import { sha256 } from '../../test/helpers/digest.js';

// Eviction order: least recently used first, ties by digest; a use moves an object back in the
// queue, a removal takes it out; each of these is one O(log n) step of the index, not a sort.

const digest = (n: number): Digest => sha256(String(n));

/** Takes every object out in eviction order. */
function drain(index: ObjectIndex): Digest[] {
  const out: Digest[] = [];
  for (let next = index.leastUsed(); next !== undefined; next = index.leastUsed()) {
    out.push(next.digest);
    index.delete(next.digest);
  }
  return out;
}

/** A small deterministic generator (the same sequence on every run). */
function random(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1_664_525) + 1_013_904_223) >>> 0;
    return s / 2 ** 32;
  };
}

describe('eviction order', () => {
  test('least recently used first, whatever the order objects were added in', () => {
    const index = new ObjectIndex();
    const uses = [50, 10, 40, 30, 20];
    uses.forEach((t, i) => index.set(digest(i), 1, t, t));
    assert.deepEqual(drain(index), [1, 4, 3, 2, 0].map(digest));
  });

  test('ties are taken by digest', () => {
    const index = new ObjectIndex();
    const ds = [0, 1, 2, 3, 4].map(digest);
    for (const d of ds) index.set(d, 1, 100, 100);
    assert.deepEqual(drain(index), [...ds].sort());
  });

  test('a use moves an object behind those used before it; an older time does not move it back', () => {
    const index = new ObjectIndex();
    for (let i = 0; i < 4; i++) index.set(digest(i), 1, i, i);
    index.used(digest(0), 10);
    index.used(digest(2), 1); // older than its last use: no change
    assert.equal(index.get(digest(0))?.lastUsed, 10);
    assert.equal(index.get(digest(2))?.lastUsed, 2);
    assert.deepEqual(drain(index), [1, 2, 3, 0].map(digest));
  });

  test('a removed object is out of the order and of the total; a replaced one counts once', () => {
    const index = new ObjectIndex();
    for (let i = 0; i < 4; i++) index.set(digest(i), 10, i, i);
    index.delete(digest(1));
    index.set(digest(2), 30, 0.5, 0.5); // written again: its new size and last use
    assert.equal(index.bytes, 10 + 30 + 10);
    assert.equal(index.count, 3);
    assert.deepEqual(drain(index), [0, 2, 3].map(digest));
    assert.equal(index.bytes, 0);
  });

  test('objects to skip are passed over, the rest keep their order', () => {
    const index = new ObjectIndex();
    for (let i = 0; i < 8; i++) index.set(digest(i), 1, i, i);
    assert.equal(index.leastUsed(new Set([digest(0), digest(1), digest(3)]))?.digest, digest(2));
    assert.equal(index.leastUsed(new Set([0, 1, 2, 3, 4, 5, 6, 7].map(digest))), undefined);
  });

  test('after any mix of additions, uses and removals, the order is the sorted order', () => {
    const rnd = random(7);
    const index = new ObjectIndex();
    const model = new Map<Digest, number>();
    for (let step = 0; step < 5_000; step++) {
      const d = digest(Math.floor(rnd() * 300));
      const op = rnd();
      const t = Math.floor(rnd() * 1_000);
      if (op < 0.4) {
        index.set(d, 1, t, t);
        model.set(d, t);
      } else if (op < 0.8) {
        index.used(d, t);
        if (model.has(d)) model.set(d, Math.max(model.get(d) as number, t));
      } else {
        index.delete(d);
        model.delete(d);
      }
    }
    const expected = [...model].sort((a, b) => a[1] - b[1] || (a[0] < b[0] ? -1 : 1)).map(([d]) => d);
    assert.deepEqual(index.byLastUsed().map((e) => e.digest), expected);
    assert.deepEqual(drain(index), expected);
  });
});

describe('eviction of stored objects', () => {
  /** A store directory with objects of `size` bytes last used at the given times (ms). */
  async function stored(uses: number[], size = 100): Promise<{ layout: Layout; index: ObjectIndex; ds: Digest[] }> {
    const layout = new Layout(await tempDir('sigil-evict-'));
    await layout.create();
    const index = new ObjectIndex();
    const ds = uses.map((_t, i) => digest(i));
    for (const [i, t] of uses.entries()) {
      await writeFile(layout.objectPath(ds[i]), Buffer.alloc(size));
      await utimes(layout.objectPath(ds[i]), t / 1000, t / 1000);
      index.set(ds[i], size, t, t);
    }
    return { layout, index, ds };
  }
  const onDisk = (layout: Layout, d: Digest): Promise<boolean> => lstat(layout.objectPath(d)).then(() => true, () => false);

  test('down to the limit, least recently used first', async () => {
    const { layout, index, ds } = await stored([5_000_000, 1_000_000, 4_000_000, 2_000_000, 3_000_000]);
    index.used(ds[1], 6_000_000); // used since: now the most recent
    const r = await evictLru(layout, index, 250);
    assert.deepEqual(r, { removed: 3, freedBytes: 300 });
    for (const i of [3, 4, 2]) assert.equal(await onDisk(layout, ds[i]), false, `object ${i} evicted`);
    for (const i of [0, 1]) assert.equal(await onDisk(layout, ds[i]), true, `object ${i} kept`);
    assert.deepEqual(drain(index), [0, 1].map((i) => ds[i]));
  });

  test('an object another process used since (newer mtime) is spared, and the next one goes instead', async () => {
    const { layout, index, ds } = await stored([1_000_000, 2_000_000, 3_000_000]);
    await utimes(layout.objectPath(ds[0]), 9_000, 9_000); // used by another process sharing the directory
    const r = await evictLru(layout, index, 200);
    assert.deepEqual(r, { removed: 1, freedBytes: 100 });
    assert.equal(await onDisk(layout, ds[0]), true);
    assert.equal(await onDisk(layout, ds[1]), false);
    assert.equal(index.get(ds[0])?.lastUsed, 9_000_000, 'its last use caught up with the file');
  });

  test('an object already gone from disk no longer counts, and frees nothing', async () => {
    const { layout, index, ds } = await stored([1_000_000, 2_000_000]);
    await evictLru(layout, index, 0).then((r) => assert.deepEqual(r, { removed: 2, freedBytes: 200 }));
    index.set(ds[0], 100, 1, 1); // an entry whose file another process removed
    assert.deepEqual(await evictLru(layout, index, 0), { removed: 0, freedBytes: 0 });
    assert.equal(index.count, 0);
  });

  test('prune removes every object last used before the cutoff, and only those', async () => {
    const { layout, index, ds } = await stored([1_000_000, 4_000_000, 2_000_000, 3_000_000]);
    assert.deepEqual(await pruneOlderThan(layout, index, 3_000_000), { removed: 2, freedBytes: 200 });
    assert.deepEqual(drain(index), [3, 1].map((i) => ds[i]));
  });
});
