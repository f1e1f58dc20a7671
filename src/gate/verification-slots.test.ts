import assert from 'node:assert/strict';
import { test } from 'node:test';
import { VerificationSlots } from './verification-slots.js';

const open = (): AbortSignal => new AbortController().signal;
/** Whether `p` has settled, after the microtasks queued so far have run. */
async function settled(p: Promise<unknown>): Promise<boolean> {
  let done = false;
  p.then(
    () => (done = true),
    () => (done = true),
  );
  await new Promise((r) => setImmediate(r));
  return done;
}

test('an upstream at its share waits while another upstream still gets slots', async () => {
  const slots = new VerificationSlots({ total: 4, perUpstream: 2 });
  const held = [await slots.acquire('slow', open()), await slots.acquire('slow', open())];
  const third = slots.acquire('slow', open());
  assert.equal(await settled(third), false, 'a third slot of the same upstream waits');
  const other = slots.acquire('fast', open());
  assert.equal(await settled(other), true, 'another upstream is not queued behind it');
  assert.equal(slots.runningFor('slow'), 2);
  assert.deepEqual([slots.running, slots.waiting], [3, 1]);
  (await other)();
  held[0]();
  (await third)();
  held[1]();
  assert.deepEqual([slots.running, slots.waiting], [0, 0]);
});

test('a freed slot goes to the longest-waiting request whose upstream is below its share', async () => {
  const slots = new VerificationSlots({ total: 3, perUpstream: 2 });
  const slow = [await slots.acquire('slow', open()), await slots.acquire('slow', open())];
  const fast = await slots.acquire('fast', open());
  // All three slots are taken; a request of `slow` waits first, then one of `fast`.
  const slowWaiter = slots.acquire('slow', open());
  const fastWaiter = slots.acquire('fast', open());
  fast();
  // `slow` is at its share: the slot skips its earlier request and goes to `fast`.
  assert.equal(await settled(fastWaiter), true);
  assert.equal(await settled(slowWaiter), false);
  slow[0]();
  assert.equal(await settled(slowWaiter), true);
  (await fastWaiter)();
  (await slowWaiter)();
  slow[1]();
  assert.deepEqual([slots.running, slots.waiting], [0, 0]);
});

test('a request whose deadline passes while it waits leaves the queue with the reason and holds nothing', async () => {
  const slots = new VerificationSlots({ total: 1, perUpstream: 1 });
  const release = await slots.acquire('a', open());
  const deadline = new AbortController();
  const waiting = slots.acquire('b', deadline.signal);
  assert.equal(slots.waiting, 1);
  const reason = new Error('deadline passed');
  deadline.abort(reason);
  await assert.rejects(waiting, (e) => e === reason);
  assert.equal(slots.waiting, 0);
  release();
  assert.deepEqual([slots.running, slots.waiting], [0, 0], 'the slot was not handed to the request that gave up');
  await assert.rejects(slots.acquire('c', deadline.signal), (e) => e === reason, 'an aborted signal gets no slot');
  assert.equal(slots.running, 0);
});

test('releasing twice frees one slot only', async () => {
  const slots = new VerificationSlots({ total: 2, perUpstream: 2 });
  const a = await slots.acquire('x', open());
  await slots.acquire('x', open());
  a();
  a();
  assert.equal(slots.running, 1);
  assert.equal(slots.runningFor('x'), 1);
});
