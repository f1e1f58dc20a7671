import assert from 'node:assert/strict';
import { statfsSync } from 'node:fs';
import { open, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { HashPool, type StreamHash } from '../../src/hash/hash-pool.js';
import type { HashAlgorithm } from '../../src/hash/ring.js';
import type { Digest } from '../../src/oci/digest.js';
import { ctimeTracksWrites } from '../../src/store/file-identity.js';
import { ContentStore, READ_CHUNK_BYTES, VERIFY_AHEAD_MAX_BYTES, type ContentStoreOptions } from '../../src/store/index.js';
import { tempDir } from './temp.js';

// Setup of the specs of trusted reads (store/object-reader.ts): an object hashed in this process
// is read again without hashing while fstat shows its file unchanged.

/** Trust only files whose last change is this old (the default is 2 s: coarse timestamps). */
export const TRUST_AGE_MS = 40;

/**
 * A spec that needs reads to be trusted skips (with this reason) where the temp directory is on a
 * file system the store does not trust (tmpfs, say: file-identity.ts ctimeTracksWrites).
 */
export const UNTRUSTED_TMPDIR: string | false = ((type) =>
  ctimeTracksWrites(type) ? false : `${tmpdir()} is on a file system (statfs type 0x${type.toString(16)}) where every read hashes`)(statfsSync(tmpdir()).type);

import { sha256 } from './digest.js';
export { sha256 };

/** An object read whole and checked before anything of it is returned. */
export const SMALL = 300 * 1024;
/** An object checked as it streams, over several read chunks. */
export const BIG = VERIFY_AHEAD_MAX_BYTES + 5 * READ_CHUNK_BYTES + 123;
/** Options of a test that needs trusted reads: skipped where the temp directory is not trusted. */
export const trust = { skip: UNTRUSTED_TMPDIR };

/** Counts the hashes the store starts (inline: no worker threads). */
export class CountingPool extends HashPool {
  started = 0;
  constructor() {
    super({ size: 0 });
  }
  override start(alg: HashAlgorithm, expectedBytes?: number): StreamHash {
    this.started++;
    return super.start(alg, expectedBytes);
  }
}

export interface StoredObject {
  readonly store: ContentStore;
  readonly hashes: CountingPool;
  readonly digest: Digest;
  /** The object's file. */
  readonly path: string;
  readonly dir: string;
}

const made: string[] = [];

/** Removes the directories storeWith made (a file's `after`). */
export async function removeStores(): Promise<void> {
  for (const d of made.splice(0)) await rm(d, { recursive: true, force: true });
}

/** A store (in a fresh temp directory, or under `parent`) holding `bytes`, trusting files TRUST_AGE_MS old. */
export async function storeWith(bytes: Buffer, opts: Partial<ContentStoreOptions> & { parent?: string } = {}): Promise<StoredObject> {
  const { parent, ...storeOpts } = opts;
  const dir = parent === undefined ? await tempDir('sigil-trusted-') : join(parent, `store-${made.length}`);
  made.push(dir);
  const hashes = new CountingPool();
  const store = await ContentStore.open({ dir, maxBytes: 1 << 30, hashes, trustCtimeAgeMs: TRUST_AGE_MS, ...storeOpts });
  const digest = sha256(bytes);
  await store.putBytes(digest, bytes);
  return { store, hashes, digest, path: objectFile(dir, digest), dir };
}

/** Where a store in `dir` keeps `digest`. */
export function objectFile(dir: string, digest: Digest): string {
  return join(dir, 'blobs', 'sha256', digest.slice('sha256:'.length));
}

/**
 * Waits (real time: it is the file system's clock) until the file's last change is older than
 * TRUST_AGE_MS, so that a read now may be trusted after it.
 */
export async function settled(path: string): Promise<void> {
  while ((await stat(path)).ctimeMs > Date.now() - TRUST_AGE_MS - 5) await sleep(10);
}

/** What a reader receives: the bytes, and whether the stream ended (false: it failed). */
export async function readThrough(s: Readable | null): Promise<{ bytes: Buffer; complete: boolean }> {
  assert.ok(s, 'the object is there');
  const parts: Buffer[] = [];
  try {
    for await (const c of s) parts.push(c as Buffer);
    return { bytes: Buffer.concat(parts), complete: true };
  } catch {
    return { bytes: Buffer.concat(parts), complete: false };
  }
}

/** Hashes the store started for one read of the whole object (which must be served complete and right). */
export async function hashesFor(store: ContentStore, hashes: CountingPool, digest: Digest, bytes: Buffer): Promise<number> {
  const before = hashes.started;
  const r = await readThrough(await store.openRead(digest));
  assert.ok(r.complete && r.bytes.equals(bytes), `served complete and right (${r.bytes.length} of ${bytes.length} bytes, complete: ${r.complete})`);
  return hashes.started - before;
}

/** Overwrites `bytes.length` bytes at `at` in place (same inode, same size). */
export async function overwrite(path: string, at: number, bytes: Buffer): Promise<void> {
  const fh = await open(path, 'r+');
  try {
    await fh.write(bytes, 0, bytes.length, at);
  } finally {
    await fh.close();
  }
}

/** A store holding `bytes`, read once (hashed) so that it is trusted; the next read is checked not to hash. */
export async function trustedStore(bytes: Buffer, opts: Parameters<typeof storeWith>[1] = {}): Promise<StoredObject> {
  const stored = await storeWith(bytes, opts);
  await settled(stored.path);
  await hashesFor(stored.store, stored.hashes, stored.digest, bytes);
  assert.equal(await hashesFor(stored.store, stored.hashes, stored.digest, bytes), 0, 'trusted');
  return stored;
}

/** The changed object is found and not served complete: absent when small, cut off when big; removed. */
export async function neverServedComplete(store: ContentStore, digest: Digest, size: number): Promise<void> {
  const got = await store.openRead(digest);
  if (size <= VERIFY_AHEAD_MAX_BYTES) assert.ok(got === null, 'found before anything is returned: absent');
  else {
    const r = await readThrough(got);
    assert.ok(!r.complete && r.bytes.length < size, `received ${r.bytes.length} of ${size} bytes, complete: ${r.complete}`);
  }
  assert.equal(await store.has(digest), false, 'the changed object is removed');
}
