import assert from 'node:assert/strict';
import { constants, PerformanceObserver } from 'node:perf_hooks';
import { test } from 'node:test';
import { runInNewContext } from 'node:vm';
import { YOUNG_SWEEP_BYTES, YoungSweeps, minorCollection } from './young-sweeps.js';

test('a young collection is asked for once every YOUNG_SWEEP_BYTES of dropped blob buffers, not per chunk', () => {
  let asked = 0;
  const sweeps = new YoungSweeps(() => asked++);
  const chunk = 64 * 1024;
  for (let sent = 0; sent + chunk <= YOUNG_SWEEP_BYTES; sent += chunk) sweeps.made(chunk);
  assert.equal(asked, 1, 'at the chunk that reached YOUNG_SWEEP_BYTES');
  for (let sent = 0; sent + chunk < YOUNG_SWEEP_BYTES; sent += chunk) sweeps.made(chunk);
  assert.equal(asked, 1, 'the count starts again after each collection');
  sweeps.made(chunk);
  assert.equal(asked, 2);
});

test('one buffer larger than the pace asks once, not once per YOUNG_SWEEP_BYTES in it', () => {
  let asked = 0;
  const sweeps = new YoungSweeps(() => asked++, 1024);
  sweeps.made(10 * 1024);
  assert.equal(asked, 1);
});

test('without a collector (a V8 that offers none) nothing is asked and nothing fails', () => {
  const sweeps = new YoungSweeps(undefined, 1);
  assert.doesNotThrow(() => sweeps.made(1024));
});

test('a pace that is not a positive byte count is refused', () => {
  assert.throws(() => new YoungSweeps(undefined, 0), /not a byte count/);
  assert.throws(() => new YoungSweeps(undefined, 1.5), /not a byte count/);
});

/** A guard against a hang, not a timing check: the asked-for collection runs as V8's next task. */
const COLLECTION_GUARD_MS = 10_000;

test("this Node.js offers V8's young collection, and asking for it runs one", async () => {
  const collect = minorCollection();
  assert.ok(collect !== undefined, 'no young collection here: dropped blob buffers would pile up to major collections again');
  const seen = new Promise<boolean>((resolve) => {
    const guard = setTimeout(() => {
      obs.disconnect();
      resolve(false);
    }, COLLECTION_GUARD_MS);
    const obs = new PerformanceObserver((list) => {
      if (!list.getEntries().some((e) => ((e as { detail?: { kind?: number } }).detail)?.kind === constants.NODE_PERFORMANCE_GC_MINOR)) return;
      clearTimeout(guard);
      obs.disconnect();
      resolve(true);
    });
    obs.observe({ entryTypes: ['gc'] });
  });
  collect();
  assert.equal(await seen, true, 'no young collection followed the ask');
});

test('the main context is left as it was: no gc function appears in it', () => {
  minorCollection();
  assert.equal((globalThis as { gc?: unknown }).gc, undefined);
});

test('a context created afterwards (as CEL conditions run in) has no gc function either', () => {
  minorCollection();
  assert.equal(runInNewContext('typeof gc'), 'undefined');
});
