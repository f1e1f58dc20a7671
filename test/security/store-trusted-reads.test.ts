import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { open, rename, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, test } from 'node:test';
import { HashPool, type StreamHash } from '../../src/hash/hash-pool.js';
import type { HashAlgorithm } from '../../src/hash/ring.js';
import type { Digest } from '../../src/oci/digest.js';
import { ContentStore, LAST_USED_PERSIST_MS, READ_CHUNK_BYTES, VERIFY_AHEAD_MAX_BYTES } from '../../src/store/index.js';
import { tempDir } from '../helpers/temp.js';

// A stored object hashed in this process is served again without hashing while its file is
// unchanged (store/object-reader.ts, file-identity.ts). What must hold: a file changed on disk is
// never served complete under its digest, whether its bytes were changed in place with the mtime
// put back, the file was replaced by another, or it changed while it was being read.

/** Trust only files whose last change is this old (the default is 2 s: coarse timestamps). */
const TRUST_AGE_MS = 40;
const SMALL = 300 * 1024; // read whole, checked before anything is returned
const BIG = VERIFY_AHEAD_MAX_BYTES + 5 * READ_CHUNK_BYTES + 123; // checked as it streams

const sha256 = (b: Uint8Array): Digest => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/** Counts the hashes the store starts (inline: no worker threads). */
class CountingPool extends HashPool {
  started = 0;
  constructor() {
    super({ size: 0 });
  }
  override start(alg: HashAlgorithm, expectedBytes?: number): StreamHash {
    this.started++;
    return super.start(alg, expectedBytes);
  }
}

const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function storeWith(bytes: Buffer, opts: { now?: () => number } = {}): Promise<{ store: ContentStore; hashes: CountingPool; digest: Digest; path: string }> {
  const dir = await tempDir('sigil-trusted-');
  dirs.push(dir);
  const hashes = new CountingPool();
  const store = await ContentStore.open({ dir, maxBytes: 1 << 30, hashes, trustCtimeAgeMs: TRUST_AGE_MS, ...opts });
  const digest = sha256(bytes);
  await store.putBytes(digest, bytes);
  return { store, hashes, digest, path: join(dir, 'blobs', 'sha256', digest.slice('sha256:'.length)) };
}

/**
 * Waits (real time: it is the file system's clock) until the file's last change is older than
 * TRUST_AGE_MS, so that a read now may be trusted after it.
 */
async function settled(path: string): Promise<void> {
  while ((await stat(path)).ctimeMs > Date.now() - TRUST_AGE_MS - 5) await sleep(10);
}

/** What a reader receives: the bytes, and whether the stream ended (false: it failed). */
async function readThrough(s: Readable | null): Promise<{ bytes: Buffer; complete: boolean }> {
  assert.ok(s, 'the object is there');
  const parts: Buffer[] = [];
  try {
    for await (const c of s) parts.push(c as Buffer);
    return { bytes: Buffer.concat(parts), complete: true };
  } catch {
    return { bytes: Buffer.concat(parts), complete: false };
  }
}

/** Hashes the store started for one read of the whole object. */
async function hashesFor(store: ContentStore, hashes: CountingPool, digest: Digest, bytes: Buffer): Promise<number> {
  const before = hashes.started;
  const r = await readThrough(await store.openRead(digest));
  assert.ok(r.complete && r.bytes.equals(bytes));
  return hashes.started - before;
}

/** Overwrites `bytes.length` bytes at `at` in place (same inode, same size). */
async function overwrite(path: string, at: number, bytes: Buffer): Promise<void> {
  const fh = await open(path, 'r+');
  try {
    await fh.write(bytes, 0, bytes.length, at);
  } finally {
    await fh.close();
  }
}

/** A store holding `bytes`, read once (hashed) so that it is trusted; the next read is checked not to hash. */
async function trustedStore(bytes: Buffer): Promise<Awaited<ReturnType<typeof storeWith>>> {
  const stored = await storeWith(bytes);
  await settled(stored.path);
  await hashesFor(stored.store, stored.hashes, stored.digest, bytes);
  assert.equal(await hashesFor(stored.store, stored.hashes, stored.digest, bytes), 0, 'trusted');
  return stored;
}

/** The changed object is found and not served complete: absent when small, cut off when big; removed. */
async function neverServedComplete(store: ContentStore, digest: Digest, size: number): Promise<void> {
  const got = await store.openRead(digest);
  if (size <= VERIFY_AHEAD_MAX_BYTES) assert.ok(got === null, 'found before anything is returned: absent');
  else {
    const r = await readThrough(got);
    assert.ok(!r.complete && r.bytes.length < size, `received ${r.bytes.length} of ${size} bytes, complete: ${r.complete}`);
  }
  assert.equal(await store.has(digest), false, 'the changed object is removed');
}

for (const [what, size] of [
  ['a small object', SMALL],
  ['a big object', BIG],
] as const) {
  test(`${what} hashed once is read again without hashing while its file is unchanged`, async () => {
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

  test(`${what} changed in place with its mtime put back is found (the ctime changed) and never served complete`, async () => {
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

  test(`${what} replaced by another file (a new inode) of the same size and mtime is found and never served complete`, async () => {
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

test('a trusted object changed while it is read fails before its last chunk, even when the bytes are put back', async () => {
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
  const dir = await tempDir('sigil-trusted-');
  dirs.push(dir);
  const hashes = new CountingPool();
  // the default age (2 s): a file written just now is not trusted after its first read
  const store = await ContentStore.open({ dir, maxBytes: 1 << 30, hashes });
  try {
    const digest = sha256(bytes);
    await store.putBytes(digest, bytes);
    assert.equal(await hashesFor(store, hashes, digest, bytes), 1);
    assert.equal(await hashesFor(store, hashes, digest, bytes), 1);
  } finally {
    await store.close();
  }
});

test("the store's own last-use write waits for the trusted reads of the object: none is cut off by it", async () => {
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
