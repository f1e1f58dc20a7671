import { lstat, open, readdir } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { isDigest } from '../oci/digest.js';
import type { Digest } from '../oci/digest.js';
import { ALGORITHMS, READ_FLAGS, isErrno } from './layout.js';
import type { Layout } from './layout.js';
import { identityOf, type FileIdentity } from './file-identity.js';
import { LeastUsedHeap, type HeapNode } from './least-used.js';
import { SCAN_CONCURRENCY } from './limits.js';

/** What the index knows of one object. `lastUsed` changes only through the index (it orders eviction). */
export interface Entry {
  readonly size: number;
  /** Exact, in memory (ms since epoch on the store's clock). */
  readonly lastUsed: number;
  /** What the file's mtime says, i.e. what a restart would read back. */
  persisted: number;
  /** The file as it was when its bytes were last found to hash to the digest (a trusted read, file-identity.ts). */
  verified: FileIdentity | undefined;
}

class Node implements Entry, HeapNode {
  readonly digest: Digest;
  readonly size: number;
  lastUsed: number;
  persisted: number;
  verified: FileIdentity | undefined = undefined;
  heapPos = -1;

  constructor(digest: Digest, size: number, lastUsed: number, persisted: number) {
    this.digest = digest;
    this.size = size;
    this.lastUsed = lastUsed;
    this.persisted = persisted;
  }
}

/**
 * The in-memory view of the objects: size and last use of each, the running total, and the
 * order eviction takes them in (least recently used first, least-used.ts). Built at open by a
 * scan, then kept up to date by this process's own writes, reads and removals (another process
 * sharing the directory is seen lazily: an object it wrote is adopted when asked for, one it
 * removed is dropped when it is missing).
 */
export class ObjectIndex {
  readonly #entries = new Map<Digest, Node>();
  readonly #order = new LeastUsedHeap<Node>();
  #bytes = 0;

  get bytes(): number {
    return this.#bytes;
  }

  get count(): number {
    return this.#entries.size;
  }

  get(digest: Digest): Entry | undefined {
    return this.#entries.get(digest);
  }

  /** Adds or replaces an entry (a second writer of the same digest does not count twice). */
  set(digest: Digest, size: number, lastUsed: number, persisted: number): void {
    this.delete(digest);
    const node = new Node(digest, size, lastUsed, persisted);
    this.#entries.set(digest, node);
    this.#order.push(node);
    this.#bytes += size;
  }

  delete(digest: Digest): Entry | undefined {
    const old = this.#entries.get(digest);
    if (old) {
      this.#entries.delete(digest);
      this.#order.remove(old);
      this.#bytes -= old.size;
    }
    return old;
  }

  /** The object was used at `at` (a use never moves its last use back). */
  used(digest: Digest, at: number): void {
    const node = this.#entries.get(digest);
    if (node === undefined || at <= node.lastUsed) return;
    node.lastUsed = at;
    this.#order.update(node);
  }

  /** The least recently used object (ties: the smaller digest), leaving out those in `skip`. */
  leastUsed(skip?: ReadonlySet<Digest>): { readonly digest: Digest; readonly entry: Entry } | undefined {
    const node = this.#order.least(skip);
    return node && { digest: node.digest, entry: node };
  }

  /** Every entry, least recently used first (listings; eviction uses leastUsed). */
  byLastUsed(): Array<{ digest: Digest; size: number; lastUsed: number }> {
    const all = [...this.#entries.values()].map((e) => ({ digest: e.digest, size: e.size, lastUsed: e.lastUsed }));
    return all.sort((a, b) => a.lastUsed - b.lastUsed || (a.digest < b.digest ? -1 : 1));
  }
}

/**
 * Scans <dir>/blobs: every regular file named by a valid digest becomes an entry, its
 * mtime its last use. Anything else (a symlink, a stray name) is ignored and reported.
 */
export async function scanObjects(layout: Layout, onStray: (path: string) => void): Promise<ObjectIndex> {
  const index = new ObjectIndex();
  for (const alg of ALGORITHMS) {
    const dir = layout.algDir(alg);
    const names = await readdir(dir);
    for (let i = 0; i < names.length; i += SCAN_CONCURRENCY) {
      await Promise.all(
        names.slice(i, i + SCAN_CONCURRENCY).map(async (name) => {
          const digest = `${alg}:${name}`;
          const path = join(dir, name);
          if (!isDigest(digest)) {
            onStray(path);
            return;
          }
          try {
            const st = await lstat(path);
            if (!st.isFile()) {
              onStray(path);
              return;
            }
            const t = Math.round(st.mtimeMs);
            index.set(digest, st.size, t, t);
          } catch (err) {
            if (!isErrno(err, 'ENOENT')) throw err; // evicted by another process meanwhile
          }
        }),
      );
    }
  }
  return index;
}

/** The index entry, or one adopted from disk (written by another process sharing the directory). */
export async function lookupObject(layout: Layout, index: ObjectIndex, digest: Digest): Promise<Entry | undefined> {
  const known = index.get(digest);
  if (known) return known; // (the warm path of every pull: no path built, no disk)
  try {
    const st = await lstat(layout.objectPath(digest));
    if (!st.isFile()) return undefined;
    const t = Math.round(st.mtimeMs);
    index.set(digest, st.size, t, t);
    return index.get(digest);
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return undefined;
    throw err;
  }
}

/** An object opened for reading: its entry (size from the open file), the file's identity, and the size the index knew if it was another. */
export interface OpenedObject {
  readonly fh: FileHandle;
  readonly entry: Entry;
  readonly identity: FileIdentity;
  /** Set when the index recorded another size: objects never change, so the file was damaged. */
  readonly recordedSize?: number;
}

/**
 * Opens the object (never through a symlink) and refreshes its entry from the open
 * file; null when absent (then it is dropped: another process removed it).
 */
export async function openObject(layout: Layout, index: ObjectIndex, digest: Digest): Promise<OpenedObject | null> {
  const path = layout.objectPath(digest);
  let fh: FileHandle;
  try {
    fh = await open(path, READ_FLAGS);
  } catch (err) {
    if (!isErrno(err, 'ENOENT') && !isErrno(err, 'ELOOP')) throw err;
    index.delete(digest);
    return null;
  }
  try {
    const st = await fh.stat({ bigint: true });
    if (!st.isFile()) throw Object.assign(new Error(`${path} is not a regular file`), { code: 'EFTYPE', syscall: 'open', path });
    const size = Number(st.size);
    let entry = index.get(digest);
    const recorded = entry?.size;
    if (!entry || entry.size !== size) {
      const t = Math.round(Number(st.mtimeNs) / 1e6);
      index.set(digest, size, t, t);
      entry = index.get(digest) as Entry;
    }
    return { fh, entry, identity: identityOf(st), ...(recorded !== undefined && recorded !== size ? { recordedSize: recorded } : {}) };
  } catch (err) {
    await fh.close();
    throw err;
  }
}
