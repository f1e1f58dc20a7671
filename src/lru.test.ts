import { test } from 'node:test';
import assert from 'node:assert/strict';
import { lru } from './lru.js';

test('holds at most its number of entries, dropping the least recently used', () => {
  const m = lru<string, number>(3);
  m.set('a', 1);
  m.set('b', 2);
  m.set('c', 3);
  assert.equal(m.get('a'), 1); // a is now the most recently used
  m.set('d', 4);
  assert.equal(m.size, 3);
  assert.equal(m.has('b'), false);
  assert.deepEqual([...m.keys()].sort(), ['a', 'c', 'd']);
});

test('replacing an entry does not count it twice', () => {
  const m = lru<string, number>(2);
  m.set('a', 1);
  m.set('a', 2);
  m.set('b', 3);
  assert.equal(m.size, 2);
  assert.equal(m.get('a'), 2);
});

test('entries expire after their TTL on the injected clock', () => {
  let now = 1_000;
  const m = lru<string, number>(10, { ttl: 100, ttlResolution: 0, perf: { now: () => now } });
  m.set('a', 1);
  now += 99;
  assert.equal(m.get('a'), 1);
  now += 2;
  assert.equal(m.get('a'), undefined);
});

test('a fetch in flight takes a place, and its value one once it arrives', async () => {
  const m = lru<string, number>(2, { fetchMethod: async (k) => k.length });
  const [x, y] = await Promise.all([m.fetch('xx'), m.fetch('yyy')]);
  assert.deepEqual([x, y], [2, 3]);
  await m.fetch('z');
  assert.equal(m.size, 2);
  assert.equal(m.has('xx'), false);
});

test('allocates as it fills: a cache for 100,000 entries holding a few costs little memory', () => {
  const before = process.memoryUsage();
  const kept = Array.from({ length: 20 }, () => lru<string, true>(100_000, { ttl: 60_000 }));
  for (const m of kept) m.set('k', true);
  const after = process.memoryUsage();
  const perCache = (after.heapUsed - before.heapUsed + after.arrayBuffers - before.arrayBuffers) / kept.length;
  // preallocated, each would take about 3 MiB
  assert.ok(perCache < 64 * 1024, `${perCache} bytes per cache`);
});

test('refuses a bound below one', () => {
  assert.throws(() => lru(0), /at least one entry/);
  assert.throws(() => lru(1.5), /at least one entry/);
});
