import { lru } from '../lru.js';
import { isDigest, type Digest } from '../oci/digest.js';
import type { StoreParts } from './offline.js';

/** Tags (and digests) whose last keeping is remembered. */
export const KEPT_MAX = 50_000;

/**
 * How long a kept manifest's records are trusted without reading them back: another sigil
 * process sharing the store may sweep them (after evicting the object) meanwhile; its
 * sweeps run at most every 10 minutes too.
 */
export const KEPT_TRUST_MS = 10 * 60_000;

/**
 * How long a kept object found on disk is trusted without looking again: another process
 * sharing the directory may evict it. Within this long a pull costs no disk access at all
 * (the warm path: a tag pulled thousands of times a second); after it, one stat. This process's
 * own evictions are seen at once (its index), and so are its own sweeps.
 */
export const KEPT_STAT_MS = 1_000;

/** Where a manifest was kept: its repository, and its tag ('' when kept by digest). */
export interface KeptAt {
  readonly upstream: string;
  readonly repository: string;
  readonly reference: string;
}

/**
 * What this process kept lately, per (upstream, repository, tag or digest): the digest, and when
 * it last made sure the object and the records are still there. "Still kept" is answered from
 * memory while nothing changed; it is checked again when an eviction of this process removed the
 * object, after KEPT_STAT_MS (another process may have evicted it), and after a metadata sweep
 * of this process or KEPT_TRUST_MS (the records may have been swept).
 */
export class KeptMemo {
  readonly #store: StoreParts;
  readonly #now: () => number;
  readonly #kept = lru<string, { digest: Digest; sweeps: number; at: number; seen: number }>(KEPT_MAX);

  constructor(store: StoreParts, now: () => number) {
    this.#store = store;
    this.#now = now;
  }

  /** Kept already: the object is stored, and this key's records too. */
  async still(at: KeptAt, digest: Digest): Promise<boolean> {
    const key = keyOf(at);
    const kept = this.#kept.get(key);
    if (kept?.digest !== digest) return false;
    const { content, catalog } = this.#store;
    if (!(await content.has(digest))) return false; // this process's index: no disk access while it holds it
    const now = this.#now();
    if (now - kept.seen >= KEPT_STAT_MS) {
      if (!(await content.onDisk(digest))) return false;
      kept.seen = now;
    }
    const sweeps = content.metaSweeps;
    if (kept.sweeps === sweeps && now - kept.at < KEPT_TRUST_MS) return true;
    if (!(await catalog.hasManifestRecord(at.upstream, at.repository, digest))) return false;
    if (!isDigest(at.reference) && (await catalog.getTag(at.upstream, at.repository, at.reference))?.value.digest !== digest) return false;
    this.#kept.set(key, { digest, sweeps, at: now, seen: kept.seen });
    return true;
  }

  /** `digest` was kept at `at` just now (object and records written). */
  kept(at: KeptAt, digest: Digest): void {
    const now = this.#now();
    this.#kept.set(keyOf(at), { digest, sweeps: this.#store.content.metaSweeps, at: now, seen: now });
  }
}

function keyOf(at: KeptAt): string {
  return `${at.upstream}/${at.repository}|${isDigest(at.reference) ? '' : at.reference}`;
}
