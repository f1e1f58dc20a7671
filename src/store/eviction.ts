import { lstat, rm } from 'node:fs/promises';
import type { Digest } from '../oci/digest.js';
import { isErrno } from './layout.js';
import type { Layout } from './layout.js';
import { MTIME_SLACK_MS } from './limits.js';
import type { ObjectIndex } from './object-index.js';

export interface EvictResult {
  readonly removed: number;
  readonly freedBytes: number;
}

/**
 * Removes one object unless another process sharing the directory used it since our
 * record says (its mtime is newer): then our record catches up and it stays.
 * Returns the bytes freed, or null when it stays. Readers that have the file open
 * keep reading it (POSIX unlink semantics).
 */
async function evictOne(layout: Layout, index: ObjectIndex, digest: Digest): Promise<number | null> {
  const entry = index.get(digest);
  if (!entry) return null;
  const path = layout.objectPath(digest);
  try {
    const st = await lstat(path);
    const onDisk = Math.round(st.mtimeMs);
    if (onDisk > entry.lastUsed + MTIME_SLACK_MS) {
      entry.lastUsed = onDisk;
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

/** Least recently used first, until the total is at most `limit`. */
export async function evictLru(layout: Layout, index: ObjectIndex, limit: number): Promise<EvictResult> {
  let removed = 0;
  let freedBytes = 0;
  for (const { digest } of index.byLastUsed()) {
    if (index.bytes <= limit) break;
    const freed = await evictOne(layout, index, digest);
    if (freed === null) continue;
    removed++;
    freedBytes += freed;
  }
  return { removed, freedBytes };
}

/** Every object last used before `cutoff`. */
export async function pruneOlderThan(layout: Layout, index: ObjectIndex, cutoff: number): Promise<EvictResult> {
  let removed = 0;
  let freedBytes = 0;
  for (const { digest, lastUsed } of index.byLastUsed()) {
    if (lastUsed >= cutoff) break;
    const freed = await evictOne(layout, index, digest);
    if (freed === null) continue;
    removed++;
    freedBytes += freed;
  }
  return { removed, freedBytes };
}
