import { lstat, rm } from 'node:fs/promises';
import type { Digest } from '../oci/digest.js';
import { isErrno } from './layout.js';
import type { Layout } from './layout.js';
import { MTIME_SLACK_MS } from './limits.js';
import type { Entry, ObjectIndex } from './object-index.js';

export interface EvictResult {
  readonly removed: number;
  readonly freedBytes: number;
}

/**
 * Removes one object unless another process sharing the directory used it since our
 * record says (its mtime is newer): then our record catches up and it stays.
 * Returns the bytes freed, or null when it stays (or was gone already). Readers that have the
 * file open keep reading it (POSIX unlink semantics).
 */
async function evictOne(layout: Layout, index: ObjectIndex, digest: Digest, entry: Entry): Promise<number | null> {
  const path = layout.objectPath(digest);
  try {
    const st = await lstat(path);
    const onDisk = Math.round(st.mtimeMs);
    if (onDisk > entry.lastUsed + MTIME_SLACK_MS) {
      index.used(digest, onDisk);
      entry.persisted = onDisk;
      return null;
    }
    await rm(path);
  } catch (err) {
    if (!isErrno(err, 'ENOENT')) throw err;
    index.delete(digest); // another process evicted it: it no longer counts, but we freed nothing
    return null;
  }
  index.delete(digest);
  return entry.size;
}

/**
 * Removes least recently used objects while `more(lastUsed)` says so, each in O(log n) (the
 * index keeps them in order): an object spared in this pass is not looked at again in it.
 */
async function removeLeastUsed(layout: Layout, index: ObjectIndex, more: (lastUsed: number) => boolean): Promise<EvictResult> {
  let removed = 0;
  let freedBytes = 0;
  const spared = new Set<Digest>();
  for (;;) {
    const next = index.leastUsed(spared);
    if (next === undefined || !more(next.entry.lastUsed)) break;
    const freed = await evictOne(layout, index, next.digest, next.entry);
    if (freed === null) {
      spared.add(next.digest);
      continue;
    }
    removed++;
    freedBytes += freed;
  }
  return { removed, freedBytes };
}

/** Least recently used first, until the total is at most `limit`. */
export function evictLru(layout: Layout, index: ObjectIndex, limit: number): Promise<EvictResult> {
  return removeLeastUsed(layout, index, () => index.bytes > limit);
}

/** Every object last used before `cutoff`. */
export function pruneOlderThan(layout: Layout, index: ObjectIndex, cutoff: number): Promise<EvictResult> {
  return removeLeastUsed(layout, index, (lastUsed) => lastUsed < cutoff);
}
