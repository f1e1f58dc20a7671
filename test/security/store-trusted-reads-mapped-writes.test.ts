import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, test, type TestContext } from 'node:test';
import { mapFile, type MappedFile } from '../helpers/mapped-file.js';
import { mountTmpfs, type Tmpfs } from '../helpers/tmpfs.js';
import { BIG, hashesFor, neverServedComplete, removeStores, settled, SMALL, storeWith, type StoredObject } from '../helpers/trusted-store.js';

// Someone who can write the store's directory may hold an object's file open through a shared,
// writable memory mapping. The kernel updates a file's times when a write through a mapping
// faults (the first write to a clean page), not at every store to a page that is already dirty
// and writable: bytes changed that way after sigil hashed the file leave fstat as it was. What
// must hold: a change through such a mapping is never served complete, on a disk file system
// (its pages are written back, and so write-protected, before a read that may be trusted begins)
// and on tmpfs (which never writes pages back: nothing is trusted there).

after(removeStores);

/** The store's file mapped for writing by another process, every page dirty and writable; null: skipped. */
async function mapped(t: TestContext, stored: StoredObject): Promise<MappedFile | null> {
  const m = await mapFile(stored.path);
  if (!('unavailable' in m)) return m;
  t.skip(m.unavailable);
  await stored.store.close();
  return null;
}

/** A tmpfs for the test (null: skipped, with the reason). */
async function tmpfs(t: TestContext): Promise<Tmpfs | null> {
  const fs = await mountTmpfs(64 * 1024 * 1024);
  if (!('unavailable' in fs)) return fs;
  t.skip(fs.unavailable);
  return null;
}

/**
 * The attack: the file is mapped (its pages dirty and writable) before the read that hashes it,
 * that read finds it right, then bytes change through the mapping.
 */
async function changedThroughMapping(stored: StoredObject, file: MappedFile, bytes: Buffer): Promise<void> {
  const { store, hashes, digest, path } = stored;
  await settled(path); // old enough to be trusted after the next read
  assert.equal(await hashesFor(store, hashes, digest, bytes), 1, 'the first read hashes');
  await file.write(1000, randomBytes(64));
  await neverServedComplete(store, digest, bytes.length);
}

for (const [what, size] of [
  ['a small object', SMALL],
  ['a big object', BIG],
] as const) {
  test(`${what} changed through a writable mapping held across its hashing read is never served complete`, async (t) => {
    const bytes = randomBytes(size);
    const stored = await storeWith(bytes);
    const file = await mapped(t, stored);
    if (!file) return;
    try {
      await changedThroughMapping(stored, file, bytes);
    } finally {
      await file.close();
      await stored.store.close();
    }
  });

  test(`${what} on tmpfs changed through a writable mapping is never served complete`, async (t) => {
    const fs = await tmpfs(t);
    if (!fs) return;
    try {
      const bytes = randomBytes(size);
      const stored = await storeWith(bytes, { parent: fs.dir });
      const file = await mapped(t, stored);
      if (!file) return;
      try {
        await changedThroughMapping(stored, file, bytes);
      } finally {
        await file.close();
        await stored.store.close();
      }
    } finally {
      await fs.stop();
    }
  });
}

test('a store on tmpfs hashes every read (a page mapped writable there stays writable: fstat cannot tell a change)', async (t) => {
  const fs = await tmpfs(t);
  if (!fs) return;
  try {
    const bytes = randomBytes(BIG);
    const { store, hashes, digest, path } = await storeWith(bytes, { parent: fs.dir });
    try {
      await settled(path);
      assert.equal(await hashesFor(store, hashes, digest, bytes), 1);
      assert.equal(await hashesFor(store, hashes, digest, bytes), 1);
    } finally {
      await store.close();
    }
  } finally {
    await fs.stop();
  }
});
