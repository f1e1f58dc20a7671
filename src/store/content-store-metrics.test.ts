import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { describe, test } from 'node:test';
import { Metrics } from '../audit/metrics.js';
import { sha256 } from '../../test/helpers/digest.js';
import { tempStore } from '../../test/helpers/temp-store.js';

// What the content store tells Prometheus: its size and state as gauges read at each scrape
// (sigil_store_bytes, _objects, _max_bytes, _writable), the bytes it was filled with and what
// it evicted to stay within maxBytes as counters.

const value = async (m: Metrics, name: string): Promise<number | undefined> => {
  const metric = m.registry.getSingleMetric(name);
  return metric ? (await metric.get()).values[0]?.value : undefined;
};
const blob = (n: number, size: number): Buffer => Buffer.alloc(size, n);

describe('content store metrics', () => {
  test('a sigil without a store exports no store gauge (an alert on sigil_store_writable must not fire for it)', async () => {
    const m = new Metrics({ defaultMetrics: false });
    for (const name of ['sigil_store_bytes', 'sigil_store_objects', 'sigil_store_max_bytes', 'sigil_store_writable']) {
      assert.equal(m.registry.getSingleMetric(name), undefined, name);
    }
  });

  test('the gauges follow writes: bytes, objects, the limit, and writable 1', async () => {
    const metrics = new Metrics({ defaultMetrics: false });
    const s = await tempStore({ metrics, maxBytes: 10_000 });
    try {
      await s.content.putBytes(sha256(blob(1, 1000)), blob(1, 1000));
      await s.content.putBytes(sha256(blob(2, 2500)), blob(2, 2500));
      await s.content.putBytes(sha256(blob(2, 2500)), blob(2, 2500)); // stored already: no fill
      assert.equal(await value(metrics, 'sigil_store_bytes'), 3500);
      assert.equal(await value(metrics, 'sigil_store_objects'), 2);
      assert.equal(await value(metrics, 'sigil_store_max_bytes'), 10_000);
      assert.equal(await value(metrics, 'sigil_store_writable'), 1);
      assert.equal(await value(metrics, 'sigil_store_fill_bytes_total'), 3500);
      assert.equal(await value(metrics, 'sigil_store_evictions_total'), 0);
    } finally {
      await s.close();
    }
  });

  test('a streamed write counts its bytes once committed; an aborted one counts nothing', async () => {
    const metrics = new Metrics({ defaultMetrics: false });
    const s = await tempStore({ metrics });
    try {
      const bytes = blob(3, 70_000);
      const w = s.content.beginWrite(sha256(bytes), bytes.length);
      assert.equal(w.kind, 'writer');
      if (w.kind !== 'writer') return;
      w.writer.end(bytes);
      await w.done;
      const bad = s.content.beginWrite(sha256(blob(4, 10)), 10);
      assert.equal(bad.kind, 'writer');
      if (bad.kind !== 'writer') return;
      bad.writer.end(blob(5, 10)); // not the bytes of that digest: never committed
      await assert.rejects(bad.done);
      assert.equal(await value(metrics, 'sigil_store_fill_bytes_total'), 70_000);
    } finally {
      await s.close();
    }
  });

  test('eviction down to maxBytes is counted in objects and bytes; filled = stored + evicted', async () => {
    const metrics = new Metrics({ defaultMetrics: false });
    const s = await tempStore({ metrics, maxBytes: 5000 });
    try {
      for (let i = 0; i < 4; i++) await s.content.putBytes(sha256(blob(10 + i, 2000)), blob(10 + i, 2000));
      await s.content.idle();
      assert.equal(await value(metrics, 'sigil_store_evictions_total'), 2);
      assert.equal(await value(metrics, 'sigil_store_evicted_bytes_total'), 4000);
      assert.equal(await value(metrics, 'sigil_store_bytes'), 4000);
      assert.equal(await value(metrics, 'sigil_store_fill_bytes_total'), 8000);
    } finally {
      await s.close();
    }
  });

  test('a store that cannot write (its directory removed) reads writable 0', async () => {
    const metrics = new Metrics({ defaultMetrics: false });
    const s = await tempStore({ metrics });
    try {
      await rm(s.dir, { recursive: true, force: true });
      await assert.rejects(s.content.putBytes(sha256(blob(6, 10)), blob(6, 10)));
      assert.ok(s.content.fault);
      assert.equal(await value(metrics, 'sigil_store_writable'), 0);
    } finally {
      await s.close();
    }
  });
});
