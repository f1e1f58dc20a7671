import { utimes } from 'node:fs/promises';
import type { Digest } from '../oci/digest.js';
import type { Layout } from './layout.js';
import { LAST_USED_PERSIST_MS } from './limits.js';
import type { ObjectIndex } from './object-index.js';

export interface LastUseOptions {
  readonly layout: Layout;
  readonly index: ObjectIndex;
  /** The store's clock. */
  readonly now: () => number;
  /** Runs background work (tracked, its failure logged). */
  readonly track: (p: Promise<unknown>, what: string) => void;
}

/**
 * When each object was last used: exact in the index (which orders eviction by it), and persisted
 * as the object file's mtime (utimes) at most every LAST_USED_PERSIST_MS per object, so that a
 * restart and other processes sharing the directory see it. Never while a trusted read of the
 * object is open in this process: utimes changes the ctime that such a read checks before its
 * last chunk (file-identity.ts), so the mtime is written once the last of them has ended.
 */
export class LastUse {
  readonly #opts: LastUseOptions;
  /** Objects with trusted reads open: how many, and the last use to persist once they are over. */
  readonly #held = new Map<Digest, { readers: number; due: number | undefined }>();

  constructor(opts: LastUseOptions) {
    this.#opts = opts;
  }

  /** The object is being used now. */
  touch(digest: Digest): void {
    const { index, now } = this.#opts;
    const entry = index.get(digest);
    if (entry === undefined) return;
    const t = now();
    index.used(digest, t);
    if (t - entry.persisted < LAST_USED_PERSIST_MS) return;
    entry.persisted = t;
    const held = this.#held.get(digest);
    if (held !== undefined) held.due = t;
    else this.#persist(digest, t);
  }

  /** A trusted read of the object begins: its mtime is not written until `release` (idempotent) has been called for every one. */
  hold(digest: Digest): () => void {
    let held = this.#held.get(digest);
    if (held === undefined) {
      held = { readers: 0, due: undefined };
      this.#held.set(digest, held);
    }
    const h = held;
    h.readers++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      if (--h.readers > 0) return;
      this.#held.delete(digest);
      if (h.due !== undefined) this.#persist(digest, h.due);
    };
  }

  #persist(digest: Digest, t: number): void {
    this.#opts.track(utimes(this.#opts.layout.objectPath(digest), t / 1000, t / 1000), 'persisting last use');
  }
}
