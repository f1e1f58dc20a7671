import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Generations } from './generations.js';

/** Generations of labelled values, recording which were closed. */
function rig() {
  const closed: string[] = [];
  const gens = new Generations<string>((id) => `config-${id}`, async (v) => {
    closed.push(v);
  });
  return { gens, closed };
}

test('a request keeps the generation it started with after a swap', () => {
  const { gens } = rig();
  const before = gens.acquire();
  gens.swap((id) => `config-${id}`);
  const after = gens.acquire();
  assert.deepEqual([before.id, before.value], [1, 'config-1']);
  assert.deepEqual([after.id, after.value], [2, 'config-2']);
  assert.equal(gens.current.value, 'config-2');
});

test('a replaced generation is closed only when its last request is done', async () => {
  const { gens, closed } = rig();
  const a = gens.acquire();
  const b = gens.acquire();
  gens.swap((id) => `config-${id}`);
  assert.equal(gens.draining, 1);
  a.release();
  await Promise.resolve();
  assert.deepEqual(closed, [], 'still used by b');
  b.release();
  await Promise.resolve();
  assert.deepEqual(closed, ['config-1']);
  assert.equal(gens.draining, 0);
});

test('a replaced generation nobody uses is closed at once; the current one is not', async () => {
  const { gens, closed } = rig();
  gens.swap((id) => `config-${id}`);
  gens.swap((id) => `config-${id}`);
  await Promise.resolve();
  assert.deepEqual(closed, ['config-1', 'config-2']);
});

test('releasing twice counts once: a generation still used is not closed early', async () => {
  const { gens, closed } = rig();
  const a = gens.acquire();
  const b = gens.acquire();
  gens.swap((id) => `config-${id}`);
  a.release();
  a.release();
  await Promise.resolve();
  assert.deepEqual(closed, []);
  b.release();
  await Promise.resolve();
  assert.deepEqual(closed, ['config-1']);
});

test('a build that throws changes nothing', () => {
  const { gens } = rig();
  assert.throws(() => gens.swap(() => {
    throw new Error('unreadable trust root');
  }), /unreadable trust root/);
  assert.deepEqual([gens.current.id, gens.current.value], [1, 'config-1']);
  assert.equal(gens.swap((id) => `config-${id}`), 2, 'the next swap gets the next number');
});

test('close ends every generation, also those a request still holds', async () => {
  const { gens, closed } = rig();
  gens.acquire();
  gens.swap((id) => `config-${id}`);
  gens.acquire();
  await gens.close();
  assert.deepEqual(closed.sort(), ['config-1', 'config-2']);
});

test('after close, a swap is refused and builds nothing (a reload finishing during shutdown leaves nothing open)', async () => {
  const { gens } = rig();
  await gens.close();
  let built = false;
  assert.throws(() => gens.swap((id) => {
    built = true;
    return `config-${id}`;
  }), /the server is closing/);
  assert.equal(built, false);
});
