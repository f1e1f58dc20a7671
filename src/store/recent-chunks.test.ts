import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FOLLOW_RECENT_BYTES, FOLLOW_RECENT_CHUNKS } from './limits.js';
import { RecentChunks } from './recent-chunks.js';

const chunk = (n: number, fill: number): Buffer => Buffer.alloc(n, fill);

test('bytes at a position come from the written chunk itself, a view, never across two chunks', () => {
  const r = new RecentChunks();
  const a = chunk(10, 1);
  const b = chunk(10, 2);
  r.keep([a, Buffer.alloc(0), b]);
  const got = r.at(4, 100)!;
  assert.equal(got.length, 6, 'to the end of the first chunk');
  assert.equal(got.buffer, a.buffer);
  assert.equal(got.byteOffset, a.byteOffset + 4);
  assert.deepEqual(r.at(12, 3), Buffer.alloc(3, 2));
  assert.equal(r.at(20, 1), undefined, 'not written yet');
});

test(`only the last ${FOLLOW_RECENT_BYTES} bytes are kept; a position before them is read from the file`, () => {
  const r = new RecentChunks();
  const size = 64 * 1024;
  const n = FOLLOW_RECENT_BYTES / size + 4;
  for (let i = 0; i < n; i++) r.keep([chunk(size, i)]);
  assert.equal(r.at(0, 1), undefined);
  assert.equal(r.at(3 * size, 1), undefined);
  assert.deepEqual(r.at(4 * size, 1), Buffer.alloc(1, 4), 'the oldest kept');
  assert.deepEqual(r.at((n - 1) * size, 1), Buffer.alloc(1, n - 1));
});

test(`an upstream's tiny chunks: only the last ${FOLLOW_RECENT_CHUNKS} are kept (not millions of buffer objects)`, () => {
  const r = new RecentChunks();
  const n = 4 * FOLLOW_RECENT_CHUNKS;
  const source = Buffer.alloc(n, 7);
  for (let i = 0; i < n; i++) r.keep([source.subarray(i, i + 1)]);
  assert.equal(r.at(n - FOLLOW_RECENT_CHUNKS - 1, 1), undefined, 'read from the file');
  assert.deepEqual(r.at(n - FOLLOW_RECENT_CHUNKS, 1), Buffer.alloc(1, 7), 'the oldest kept');
  assert.deepEqual(r.at(n - 1, 5), Buffer.alloc(1, 7), 'the last');
});

test('once the write is over nothing is kept', () => {
  const r = new RecentChunks();
  r.keep([chunk(10, 1)]);
  r.drop();
  assert.equal(r.at(0, 1), undefined);
});
