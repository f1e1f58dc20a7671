import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { rename, stat, utimes, writeFile } from 'node:fs/promises';
import { after, test } from 'node:test';
import { LAST_USED_PERSIST_MS, READ_CHUNK_BYTES, TRUST_CTIME_MIN_AGE_MS, VERIFY_AHEAD_MAX_BYTES } from '../../src/store/index.js';
import {
  hashesFor,
  neverServedComplete,
  overwrite,
  readThrough,
  removeStores,
  settled,
  storeWith,
  trustedStore,
  UNTRUSTED_TMPDIR,
  SMALL,
  BIG,
} from '../helpers/trusted-store.js';

// A stored object hashed in this process is served again without hashing while its file is
// unchanged (store/object-reader.ts, file-identity.ts). What must hold: a file changed on disk is
// never served complete under its digest, whether its bytes were changed in place with the mtime
// put back, the file was replaced by another, or it changed while it was being read.


after(removeStores);

for (const [what, size] of [
  ['a small object', SMALL],
  ['a big object', BIG],
] as const) {
  test(`${what} hashed once is read again without hashing while its file is unchanged`, { skip: UNTRUSTED_TMPDIR }, async () => {
    const bytes = randomBytes(size);
    const { store, hashes, digest, path } = await storeWith(bytes);
    try {
      await settled(path);
      assert.equal(await hashesFor(store, hashes, digest, bytes), 1, 'the first read hashes');
      assert.equal(await hashesFor(store, hashes, digest, bytes), 0, 'the next one does not');
      assert.equal(await hashesFor(store, hashes, digest, bytes), 0);
    } finally {
      await store.close();
    }
  });

  test(`${what} changed in place with its mtime put back is found (the ctime changed) and never served complete`, { skip: UNTRUSTED_TMPDIR }, async () => {
    const { store, digest, path } = await trustedStore(randomBytes(size));
    try {
      const { mtime, atime } = await stat(path);
      await overwrite(path, 1000, randomBytes(64));
      await utimes(path, atime, mtime);
      assert.equal((await stat(path)).mtimeMs, mtime.getTime(), 'the mtime is as it was');
      await neverServedComplete(store, digest, size);
    } finally {
      await store.close();
    }
  });

  test(`${what} replaced by another file (a new inode) of the same size and mtime is found and never served complete`, { skip: UNTRUSTED_TMPDIR }, async () => {
    const bytes = randomBytes(size);
    const { store, digest, path } = await trustedStore(bytes);
    try {
      const { mtime, atime } = await stat(path);
      const other = `${path}.other`;
      const changed = Buffer.from(bytes);
      changed[size - 1] ^= 0xff;
      await writeFile(other, changed);
      await utimes(other, atime, mtime);
      await rename(other, path);
      await neverServedComplete(store, digest, size);
    } finally {
      await store.close();
    }
  });
}

test('a trusted object changed while it is read fails before its last chunk, even when the bytes are put back', { skip: UNTRUSTED_TMPDIR }, async () => {
  const bytes = randomBytes(BIG);
  const { store, hashes, digest, path } = await trustedStore(bytes);
  try {
    const s = await store.openRead(digest);
    assert.ok(s);
    assert.equal(hashes.started, 1, 'a trusted read');
    const parts: Buffer[] = [];
    let changed = false;
    let complete = true;
    try {
      for await (const c of s) {
        parts.push(c as Buffer);
        if (!changed) {
          changed = true;
          // a write during the read, of bytes already served, then the original bytes again
          await overwrite(path, 10, randomBytes(16));
          await overwrite(path, 10, bytes.subarray(10, 26));
        }
      }
    } catch {
      complete = false;
    }
    const got = Buffer.concat(parts);
    assert.ok(!complete && got.length < BIG, `received ${got.length} of ${BIG} bytes, complete: ${complete}`);
    assert.ok(got.length >= BIG - READ_CHUNK_BYTES, 'cut off at its last chunk, not before');
    // the bytes are right again: the next read hashes them (not trusted any more) and serves them
    assert.equal(await hashesFor(store, hashes, digest, bytes), 1);
  } finally {
    await store.close();
  }
});

test('a file changed within the trust age of its hashing read is hashed again by the next read', async () => {
  const bytes = randomBytes(BIG);
  // the default age (2 s): a file written just now is not trusted after its first read
  const { store, hashes, digest } = await storeWith(bytes, { trustCtimeAgeMs: TRUST_CTIME_MIN_AGE_MS });
  try {
    assert.equal(await hashesFor(store, hashes, digest, bytes), 1);
    assert.equal(await hashesFor(store, hashes, digest, bytes), 1);
  } finally {
    await store.close();
  }
});

test("the store's own last-use write waits for the trusted reads of the object: none is cut off by it", { skip: UNTRUSTED_TMPDIR }, async () => {
  let t = Date.UTC(2030, 0, 1);
  const bytes = randomBytes(BIG);
  const { store, hashes, digest, path } = await storeWith(bytes, { now: () => t });
  try {
    await settled(path);
    await hashesFor(store, hashes, digest, bytes);
    const first = await store.openRead(digest); // trusted, open
    const mtimeBefore = (await stat(path)).mtimeMs;
    t += LAST_USED_PERSIST_MS + 1; // the next use is to be persisted (utimes: a new ctime)
    const second = await store.openRead(digest); // trusted too; its last use is due
    const [a, b] = await Promise.all([readThrough(first), readThrough(second)]);
    assert.ok(a.complete && a.bytes.equals(bytes), 'the read open before the last use was due completes');
    assert.ok(b.complete && b.bytes.equals(bytes), 'the read that made it due completes');
    await store.idle();
    assert.equal((await stat(path)).mtimeMs, t, 'persisted once both were over');
    assert.equal(hashes.started, 1, 'neither hashed');
    assert.notEqual(mtimeBefore, t);
  } finally {
    await store.close();
  }
});
