import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { link, mkdir, open, readdir, rename, rm, stat, symlink, truncate, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { ContentStore, READ_CHUNK_BYTES, VERIFY_AHEAD_MAX_BYTES } from '../../src/store/index.js';
import {
  hashesFor,
  neverServedComplete,
  objectFile,
  overwrite,
  readThrough,
  removeStores,
  settled,
  sha256,
  storeWith,
  TRUST_AGE_MS,
  trustedStore,
  UNTRUSTED_TMPDIR,
  SMALL,
  BIG,
  trust,
} from '../helpers/trusted-store.js';

// Trusted reads (store/object-reader.ts): an object hashed in this process is served again without
// hashing while fstat shows its file unchanged. What must hold, whatever is done to the files under
// the store's directory: nothing but the digest's bytes is ever served complete; an object is
// hashed by its first read in a process (written by it, found at open, or written by another
// process); a whole-object Range is checked like a whole read; the last chunk is held back at
// every size, chunk boundaries included.


after(removeStores);

/** A copy of `bytes` with the byte at `at` flipped. */
function flipped(bytes: Buffer, at: number): Buffer {
  const b = Buffer.from(bytes);
  b[at] ^= 0xff;
  return b;
}

/** Puts the file's atime and mtime back as `st` had them (what someone hiding a change would do). */
async function timesBack(path: string, st: { atime: Date; mtime: Date }): Promise<void> {
  await utimes(path, st.atime, st.mtime);
}

for (const [what, size] of [
  ['a small object', SMALL],
  ['a big object', BIG],
] as const) {
  test(`${what} cut to nothing and written again to its size, mtime put back, is never served complete`, trust, async () => {
    const bytes = randomBytes(size);
    const { store, digest, path } = await trustedStore(bytes);
    try {
      const st = await stat(path);
      await truncate(path, 0);
      await writeFile(path, flipped(bytes, size >> 1), { flag: 'r+' });
      await timesBack(path, st);
      assert.equal((await stat(path)).size, size);
      await neverServedComplete(store, digest, size);
    } finally {
      await store.close();
    }
  });

  test(`${what} replaced by a new file that may reuse its inode number, mtime put back, is never served complete`, trust, async () => {
    const bytes = randomBytes(size);
    const { store, digest, path } = await trustedStore(bytes);
    try {
      const st = await stat(path);
      await rm(path);
      await writeFile(path, flipped(bytes, 7));
      await timesBack(path, st);
      // ext4 often hands the freed inode number to the next file: dev, ino, size and mtime alike then
      await neverServedComplete(store, digest, size);
    } finally {
      await store.close();
    }
  });

  test(`${what} written through a hard link made before it was trusted is never served complete`, trust, async () => {
    const bytes = randomBytes(size);
    const stored = await storeWith(bytes);
    const { store, hashes, digest, path, dir } = stored;
    try {
      const other = join(dir, 'elsewhere');
      await link(path, other);
      await settled(path);
      await hashesFor(store, hashes, digest, bytes);
      assert.equal(await hashesFor(store, hashes, digest, bytes), 0, 'trusted, the link made before');
      const st = await stat(path);
      await overwrite(other, size - 1, Buffer.from([bytes[size - 1]! ^ 0xff]));
      await timesBack(other, st);
      await neverServedComplete(store, digest, size);
    } finally {
      await store.close();
    }
  });

  test(`${what} whose path becomes a symlink to its own unchanged file is absent (never read through a symlink)`, trust, async () => {
    const bytes = randomBytes(size);
    const { store, digest, path, dir } = await trustedStore(bytes);
    try {
      const kept = join(dir, 'kept');
      await rename(path, kept);
      await symlink(kept, path);
      assert.equal(await store.openRead(digest), null);
    } finally {
      await store.close();
    }
  });

  test(`${what} whose algorithm directory becomes a symlink to other files is never served complete`, trust, async () => {
    const bytes = randomBytes(size);
    const { store, digest, dir } = await trustedStore(bytes);
    try {
      const algDir = join(dir, 'blobs', 'sha256');
      const planted = join(dir, 'planted');
      await mkdir(planted);
      await writeFile(join(planted, digest.slice('sha256:'.length)), flipped(bytes, 0));
      await rename(algDir, `${algDir}.old`);
      await symlink(planted, algDir);
      await neverServedComplete(store, digest, size);
    } finally {
      await store.close();
    }
  });

  test(`${what} is hashed by its first read after it was written, however old its file`, async () => {
    const bytes = randomBytes(size);
    const { store, hashes, digest, path } = await storeWith(bytes);
    try {
      await settled(path);
      assert.equal(await hashesFor(store, hashes, digest, bytes), 1, 'a write does not make an object trusted');
    } finally {
      await store.close();
    }
  });

  test(`${what} found at open (another process wrote it, or an earlier run) is hashed by its first read, and found changed`, async () => {
    const bytes = randomBytes(size);
    const first = await storeWith(bytes);
    await first.store.close();
    const st = await stat(first.path);
    await overwrite(first.path, 3, randomBytes(8));
    await timesBack(first.path, st);
    await settled(first.path);
    const store = await ContentStore.open({ dir: first.dir, maxBytes: 1 << 30, trustCtimeAgeMs: TRUST_AGE_MS });
    try {
      await neverServedComplete(store, first.digest, size);
    } finally {
      await store.close();
    }
  });

  test(`${what} written by another process sharing the directory is hashed by its first read here`, async () => {
    const bytes = randomBytes(size);
    const other = await storeWith(randomBytes(10));
    const store = await ContentStore.open({ dir: other.dir, maxBytes: 1 << 30, trustCtimeAgeMs: TRUST_AGE_MS, hashes: other.hashes });
    try {
      const digest = sha256(bytes);
      await other.store.putBytes(digest, bytes); // after `store` scanned the directory: adopted when asked for
      await settled(objectFile(other.dir, digest));
      assert.equal(await hashesFor(store, other.hashes, digest, bytes), 1);
    } finally {
      await store.close();
      await other.store.close();
    }
  });

  test(`${what} whose temp file is changed on disk while it is written is never served complete once committed`, async () => {
    const bytes = randomBytes(size);
    const { store, dir } = await storeWith(randomBytes(10));
    try {
      const digest = sha256(bytes);
      const w = store.beginWrite(digest, size);
      assert.equal(w.kind, 'writer');
      if (w.kind !== 'writer') return;
      await w.opened;
      const half = size >> 1;
      await new Promise<void>((resolve, reject) => w.writer.write(bytes.subarray(0, half), (err) => (err ? reject(err) : resolve())));
      const [tmp] = await readdir(join(dir, 'tmp'));
      assert.ok(tmp, 'the temp file');
      while ((await stat(join(dir, 'tmp', tmp))).size < half) await new Promise((r) => setTimeout(r, 5));
      await overwrite(join(dir, 'tmp', tmp), 10, randomBytes(16)); // bytes the writer hashed already
      w.writer.end(bytes.subarray(half));
      await w.done; // the writer hashed what it was given: it commits
      await neverServedComplete(store, digest, size);
    } finally {
      await store.close();
    }
  });

  test(`${what} changed, mtime put back: a Range of all of it is checked like a whole read, a part is served as stored`, trust, async () => {
    const bytes = randomBytes(size);
    const { store, digest, path } = await trustedStore(bytes);
    try {
      const st = await stat(path);
      const changed = flipped(bytes, 100);
      await overwrite(path, 100, changed.subarray(100, 101));
      await timesBack(path, st);
      const part = await readThrough(await store.openRead(digest, { start: 50, end: 150 }));
      assert.ok(part.complete && part.bytes.equals(changed.subarray(50, 151)), 'a part: as stored (the client checks what it assembles)');
      const whole = await store.openRead(digest, { start: 0, end: size - 1 });
      if (size <= VERIFY_AHEAD_MAX_BYTES) assert.equal(whole, null);
      else {
        const r = await readThrough(whole);
        assert.ok(!r.complete && r.bytes.length < size, `received ${r.bytes.length} of ${size} bytes, complete: ${r.complete}`);
      }
      assert.equal(await store.has(digest), false, 'removed');
    } finally {
      await store.close();
    }
  });
}

// Sizes at the edges: nothing; one chunk and one byte more; the largest object read ahead and one
// byte more (its last chunk is one byte); a whole number of chunks past that and one byte more.
for (const size of [
  0,
  1,
  READ_CHUNK_BYTES,
  READ_CHUNK_BYTES + 1,
  VERIFY_AHEAD_MAX_BYTES,
  VERIFY_AHEAD_MAX_BYTES + 1,
  VERIFY_AHEAD_MAX_BYTES + READ_CHUNK_BYTES,
  VERIFY_AHEAD_MAX_BYTES + READ_CHUNK_BYTES + 1,
]) {
  test(`an object of ${size} bytes is served whole, hashed and then trusted; its last byte changed (mtime put back) is never served complete`, trust, async () => {
    const bytes = randomBytes(size);
    const { store, digest, path } = await trustedStore(bytes);
    try {
      if (size === 0) return; // no byte to change: every file of 0 bytes is this object
      const st = await stat(path);
      const fh = await open(path, 'r+');
      await fh.write(Buffer.from([bytes[size - 1]! ^ 0x01]), 0, 1, size - 1);
      await fh.close();
      await timesBack(path, st);
      await neverServedComplete(store, digest, size);
    } finally {
      await store.close();
    }
  });
}
