import { lstat, rename, rm, utimes } from 'node:fs/promises';
import type { Readable, Writable } from 'node:stream';
import type { Logger } from 'pino';
import { SigilError } from '../errors.js';
import { digestOf } from '../oci/digest.js';
import type { Digest } from '../oci/digest.js';
import { evictLru, pruneOlderThan } from './eviction.js';
import type { EvictResult } from './eviction.js';
import { streamOf } from './follower.js';
import { InFlightWrite } from './inflight.js';
import type { HashPool } from '../hash/hash-pool.js';
import { Layout, cleanStaleTemps, isErrno, objectLabel, syncDir, writeFileAtomic } from './layout.js';
import { LAST_USED_PERSIST_MS, READ_CHUNK_BYTES, TMP_STALE_MS, WRITE_IDLE_TIMEOUT_MS } from './limits.js';
import { MetaStore } from './meta.js';
import { SweepSchedule } from './sweeps.js';
import type { MetaSweepResult } from './meta.js';
import { lookupObject, openObject, scanObjects } from './object-index.js';
import type { Entry, ObjectIndex } from './object-index.js';

export interface ContentStoreOptions {
  readonly dir: string;
  /** Eviction keeps the objects' total size at or below this. */
  readonly maxBytes: number;
  /** Clock (ms since epoch) for last use, metadata times and temp age; default Date.now. */
  readonly now?: () => number;
  readonly logger?: Logger;
  /** Overrides WRITE_IDLE_TIMEOUT_MS. */
  readonly writeIdleTimeoutMs?: number;
  /** Overrides TMP_STALE_MS. */
  readonly tmpStaleMs?: number;
  /**
   * Sweep the metadata of objects no longer stored in the background right after open
   * (default true; an eviction at open that removes objects schedules one regardless).
   * `sigil cache` turns it off: `ls` lists what is there, `prune` sweeps after pruning.
   */
  readonly sweepMetaAtOpen?: boolean;
  /** Where written blobs are hashed (the app's hash workers); default inline. */
  readonly hashes?: HashPool;
}

export type BeginWrite =
  | { readonly kind: 'writer'; readonly writer: Writable; readonly done: Promise<void> }
  | { readonly kind: 'follower'; readonly stream: Readable };

export type { EvictResult } from './eviction.js';
export type { MetaSweepResult } from './meta.js';

/**
 * sigil's on-disk content store: objects (manifests, blobs, signature artifacts,
 * referrer indexes) by digest, plus small JSON metadata. Every object is checked
 * against its digest before it appears, and appears by an atomic rename, so two
 * processes sharing the directory, or a crash mid-write, never expose a partial one.
 *
 * Last use is the object file's mtime (set with utimes, at most every
 * LAST_USED_PERSIST_MS per object): atime is unreliable under noatime/relatime,
 * objects are immutable so their mtime means nothing else, and a scan at open
 * rebuilds the index with no second file to keep consistent across processes.
 */
export class ContentStore {
  readonly #layout: Layout;
  readonly #maxBytes: number;
  readonly #now: () => number;
  readonly #logger: Logger | undefined;
  readonly #idleMs: number;
  readonly #hashes: HashPool | undefined;
  readonly #index: ObjectIndex;
  readonly #meta: MetaStore;
  readonly #inflight = new Map<Digest, InFlightWrite>();
  readonly #background = new Set<Promise<unknown>>();
  #chain: Promise<unknown> = Promise.resolve();
  #closed = false;
  readonly #sweeps: SweepSchedule;

  private constructor(opts: ContentStoreOptions, layout: Layout, index: ObjectIndex, now: () => number) {
    this.#layout = layout;
    this.#maxBytes = opts.maxBytes;
    this.#now = now;
    this.#logger = opts.logger;
    this.#idleMs = opts.writeIdleTimeoutMs ?? WRITE_IDLE_TIMEOUT_MS;
    this.#hashes = opts.hashes;
    this.#index = index;
    this.#meta = new MetaStore(layout, now, opts.logger);
    this.#sweeps = new SweepSchedule({
      meta: this.#meta,
      now,
      logger: opts.logger,
      stored: (d) => this.onDisk(d),
      serial: (fn) => this.#serial(fn),
      closed: () => this.#closed,
    });
  }

  /**
   * Creates the layout if needed, removes stale temp files, scans the objects, evicts down to
   * maxBytes, then sweeps the metadata of objects no longer stored in the background.
   */
  static async open(opts: ContentStoreOptions): Promise<ContentStore> {
    if (!Number.isSafeInteger(opts.maxBytes) || opts.maxBytes < 0) {
      throw new SigilError({ code: 'INTERNAL', message: `content store: maxBytes must be a non-negative integer, got ${opts.maxBytes}` });
    }
    const now = opts.now ?? Date.now;
    const layout = new Layout(opts.dir);
    await layout.create();
    const staleTemps = await cleanStaleTemps(layout, now(), opts.tmpStaleMs ?? TMP_STALE_MS);
    const index = await scanObjects(layout, (path) => opts.logger?.warn({ path }, 'content store: ignoring a stray file'));
    const store = new ContentStore(opts, layout, index, now);
    opts.logger?.info({ dir: opts.dir, objects: index.count, bytes: index.bytes, staleTemps }, 'content store opened');
    if (index.bytes > opts.maxBytes) await store.evict();
    if (opts.sweepMetaAtOpen !== false) store.#track(store.sweepMeta(), 'sweeping metadata');
    return store;
  }

  async has(digest: Digest): Promise<boolean> {
    return (await lookupObject(this.#layout, this.#index, digest)) !== undefined;
  }

  /** Whether the object is on disk now (a stat, not the index: another process may have evicted it). */
  async onDisk(digest: Digest): Promise<boolean> {
    const path = this.#layout.objectPath(digest);
    return lstat(path).then(
      (st) => st.isFile(),
      () => false,
    );
  }

  async stat(digest: Digest): Promise<{ size: number; lastUsed: number } | null> {
    const e = await lookupObject(this.#layout, this.#index, digest);
    return e ? { size: e.size, lastUsed: e.lastUsed } : null;
  }

  /**
   * A stream of the object, or of bytes [start, end] inclusive (else RANGE_INVALID);
   * null when absent. Marks it used. The stream holds the file open, so eviction
   * (even by another process) does not cut it short.
   */
  async openRead(digest: Digest, range?: { start: number; end: number }): Promise<Readable | null> {
    const opened = await openObject(this.#layout, this.#index, digest);
    if (!opened) return null;
    const { fh, entry } = opened;
    if (range) {
      const { start, end } = range;
      if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || start > end || end >= entry.size) {
        await fh.close();
        throw new SigilError({ code: 'RANGE_INVALID', message: `content store: bytes ${start}-${end} of a ${entry.size}-byte object` });
      }
    }
    this.#touch(digest, entry);
    return fh.createReadStream({ highWaterMark: READ_CHUNK_BYTES, ...(range ? { start: range.start, end: range.end } : {}) });
  }

  /**
   * The whole object, hashed again on the way (a damaged file is removed and reported
   * absent); null when absent. An object over `maxBytes` is a caller error (INTERNAL).
   * Marks it used unless `touch: false` (`sigil cache ls`/`prune` read manifests to list
   * and size images: looking must not change the LRU order they report and act on).
   */
  async readAll(digest: Digest, maxBytes: number, opts: { readonly touch?: boolean } = {}): Promise<Buffer | null> {
    const opened = await openObject(this.#layout, this.#index, digest);
    if (!opened) return null;
    const { fh, entry } = opened;
    let bytes: Buffer;
    try {
      if (entry.size > maxBytes) {
        throw new SigilError({ code: 'INTERNAL', message: `content store: ${digest} has ${entry.size} bytes, over ${maxBytes}`, detail: { size: entry.size, maxBytes } });
      }
      bytes = await fh.readFile();
    } finally {
      await fh.close();
    }
    const got = digestOf(bytes, digest);
    if (got !== digest) {
      this.#logger?.error({ digest, got }, 'content store: damaged object removed');
      await this.remove(digest);
      return null;
    }
    if (opts.touch !== false) this.#touch(digest, entry);
    return bytes;
  }

  /** Stores bytes whose digest is checked first (else DIGEST_MISMATCH). Idempotent. */
  async putBytes(digest: Digest, bytes: Buffer): Promise<void> {
    this.#checkOpen();
    const path = this.#layout.objectPath(digest);
    const got = digestOf(bytes, digest);
    if (got !== digest) {
      throw new SigilError({ code: 'DIGEST_MISMATCH', message: `content store: bytes given for ${digest} hash to ${got}`, detail: { expected: digest, got } });
    }
    // On disk rather than in the index: another process sharing the directory may have evicted it.
    const present = await lstat(path).then((st) => st.isFile() && st.size === bytes.length, () => false);
    const known = present ? await lookupObject(this.#layout, this.#index, digest) : undefined;
    if (known) {
      this.#touch(digest, known);
      return;
    }
    const t = this.#now();
    await writeFileAtomic(this.#layout, objectLabel(digest), path, bytes, t);
    await syncDir(this.#layout.objectDir(digest));
    this.#index.set(digest, bytes.length, t, t);
    this.#afterWrite();
  }

  /**
   * Coalesced streaming write. The first caller for a digest gets the `writer` (feed it
   * with pipeline(); end it to commit, destroy it to abort); `done` settles when the
   * object is stored or the write failed (DIGEST_MISMATCH on a wrong digest or size).
   * Later callers get a `follower` stream reading behind the writer, or the stored file.
   */
  beginWrite(digest: Digest, expectedSize?: number): BeginWrite {
    this.#checkOpen();
    const path = this.#layout.objectPath(digest);
    const current = this.#inflight.get(digest);
    if (current) return { kind: 'follower', stream: current.follow() };
    if (this.#index.get(digest)) {
      return {
        kind: 'follower',
        stream: streamOf(
          () => this.openRead(digest),
          () => new SigilError({ code: 'INTERNAL', message: `content store: ${digest} was removed meanwhile` }),
        ),
      };
    }
    const flight = new InFlightWrite({
      digest,
      ...(expectedSize !== undefined ? { expectedSize } : {}),
      maxSize: this.#maxBytes,
      tmpPath: this.#layout.tmpPath(objectLabel(digest)),
      idleTimeoutMs: this.#idleMs,
      ...(this.#hashes !== undefined ? { hashes: this.#hashes } : {}),
      commit: async (tmp, size) => {
        const t = this.#now();
        await utimes(tmp, t / 1000, t / 1000);
        await rename(tmp, path);
        this.#index.set(digest, size, t, t);
        await syncDir(this.#layout.objectDir(digest));
      },
      settled: () => {
        if (this.#inflight.get(digest) === flight) this.#inflight.delete(digest);
      },
    });
    this.#inflight.set(digest, flight);
    flight.done.then(() => this.#afterWrite(), () => {});
    return { kind: 'writer', writer: flight.writer, done: flight.done };
  }

  /** The store's size limit: a larger object is never written. */
  get maxBytes(): number {
    return this.#maxBytes;
  }

  /** Streaming writes in progress in this process. */
  get writesInFlight(): number {
    return this.#inflight.size;
  }

  /** Removes one object (the caller evicting a manifest together with its blobs); false when absent. */
  async remove(digest: Digest): Promise<boolean> {
    const path = this.#layout.objectPath(digest);
    this.#index.delete(digest);
    try {
      await rm(path);
      this.#sweeps.owe(); // swept with the next eviction or write after the interval
      return true;
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return false;
      throw err;
    }
  }

  putMeta(ns: string, key: string, value: unknown): Promise<void> {
    this.#checkOpen();
    return this.#meta.put(ns, key, value);
  }

  getMeta<T>(ns: string, key: string): Promise<{ value: T; updated: number } | null> {
    return this.#meta.get<T>(ns, key);
  }

  listMeta<T>(ns: string): Promise<Array<{ key: string; value: T; updated: number }>> {
    return this.#meta.list<T>(ns);
  }

  deleteMeta(ns: string, key: string): Promise<boolean> {
    return this.#meta.delete(ns, key);
  }

  /** This process's view: what the scan at open found plus its own writes and removals. */
  usage(): { bytes: number; objects: number } {
    return { bytes: this.#index.bytes, objects: this.#index.count };
  }

  /** Every object, least recently used first. */
  async list(): Promise<Array<{ digest: Digest; size: number; lastUsed: number }>> {
    return this.#index.byLastUsed();
  }

  /** Evicts least-recently-used objects until bytes ≤ maxBytes (also run after writes). */
  evict(): Promise<EvictResult> {
    return this.#serial(() => evictLru(this.#layout, this.#index, this.#maxBytes)).then((r) => this.#afterRemoval(r));
  }

  /** Removes objects unused for `olderThanMs`, then LRU ones down to `maxBytes`. */
  prune(opts: { olderThanMs?: number; maxBytes?: number }): Promise<EvictResult> {
    return this.#serial(async () => {
      const aged = opts.olderThanMs !== undefined ? await pruneOlderThan(this.#layout, this.#index, this.#now() - opts.olderThanMs) : { removed: 0, freedBytes: 0 };
      const sized = opts.maxBytes !== undefined ? await evictLru(this.#layout, this.#index, opts.maxBytes) : { removed: 0, freedBytes: 0 };
      return { removed: aged.removed + sized.removed, freedBytes: aged.freedBytes + sized.freedBytes };
    }).then((r) => this.#afterRemoval(r));
  }

  /**
   * Removes the metadata documents (tag, manifest, blob, referrers, verdict records) about
   * objects no longer stored; see MetaStore.sweep for why it is safe while serving. Runs in turn
   * with eviction, one sweep at a time: called while one runs, it queues another (which every
   * call until it starts shares). Also run in the background after open and after evictions
   * that removed objects, at most every META_SWEEP_MIN_INTERVAL_MS.
   */
  sweepMeta(): Promise<MetaSweepResult> {
    if (this.#closed) return Promise.reject(new SigilError({ code: 'INTERNAL', message: 'content store: closed' }));
    return this.#sweeps.request();
  }

  /** Metadata sweeps this store started: records seen before one may be gone after it. */
  get metaSweeps(): number {
    return this.#sweeps.started;
  }

  /** Resolves once background work (evictions, metadata sweeps, last-use updates) has finished. */
  async idle(): Promise<void> {
    for (;;) {
      const chain = this.#chain;
      const sweeps = this.#sweeps.tail;
      await Promise.allSettled([chain, sweeps, ...this.#background]);
      if (chain === this.#chain && sweeps === this.#sweeps.tail && this.#background.size === 0) return;
    }
  }

  /** Aborts writes still in progress (their temps are removed) and waits for background work. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const flights = [...this.#inflight.values()];
    for (const f of flights) f.abort(new SigilError({ code: 'INTERNAL', message: 'content store: closed during the write' }));
    await Promise.allSettled(flights.map((f) => f.done));
    await this.idle(); // a running sweep stops before its next file
  }

  #checkOpen(): void {
    if (this.#closed) throw new SigilError({ code: 'INTERNAL', message: 'content store: closed' });
  }

  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.#chain.then(fn);
    this.#chain = p.catch(() => {});
    return p;
  }

  #touch(digest: Digest, entry: Entry): void {
    const t = this.#now();
    entry.lastUsed = Math.max(entry.lastUsed, t);
    if (t - entry.persisted < LAST_USED_PERSIST_MS) return;
    entry.persisted = t;
    this.#track(utimes(this.#layout.objectPath(digest), t / 1000, t / 1000), 'persisting last use');
  }

  #afterWrite(): void {
    if (this.#closed) return;
    if (this.#index.bytes > this.#maxBytes) this.#track(this.evict(), 'evicting');
    else this.#maybeSweep();
  }

  #afterRemoval(r: EvictResult): EvictResult {
    if (r.removed > 0) this.#sweeps.owe();
    this.#maybeSweep();
    return r;
  }

  #maybeSweep(): void {
    const due = this.#sweeps.due();
    if (due) this.#track(due, 'sweeping metadata');
  }

  #track(p: Promise<unknown>, what: string): void {
    const tracked = p.catch((err: unknown) => {
      if (!isErrno(err, 'ENOENT')) this.#logger?.warn({ err }, `content store: ${what} failed`);
    });
    this.#background.add(tracked);
    void tracked.finally(() => this.#background.delete(tracked));
  }
}
