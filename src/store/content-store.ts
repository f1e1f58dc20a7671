import { lstat, rm, statfs } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import type { Metrics } from '../audit/metrics.js';
import { SigilError } from '../errors.js';
import type { Digest } from '../oci/digest.js';
import type { HashPool } from '../hash/hash-pool.js';
import type { EvictResult } from './eviction.js';
import { StoreHealth, ioErrorCode } from './health.js';
import type { StoreFault } from './health.js';
import { ctimeTracksWrites } from './file-identity.js';
import { LastUse } from './last-use.js';
import { Layout, cleanStaleTemps, isErrno } from './layout.js';
import { STORE_RETRY_MS, TMP_STALE_MS, TRUST_CTIME_MIN_AGE_MS, WRITE_IDLE_TIMEOUT_MS } from './limits.js';
import { Maintenance } from './maintenance.js';
import { MetaStore } from './meta.js';
import type { MetaSweepResult } from './meta.js';
import { ObjectReader } from './object-reader.js';
import { ObjectWriter } from './object-writer.js';
import type { BeginWrite, WriteOptions } from './object-writer.js';
import { lookupObject, scanObjects } from './object-index.js';
import type { Entry, ObjectIndex } from './object-index.js';

export interface ContentStoreOptions {
  readonly dir: string;
  /** Eviction keeps the objects' total size at or below this. */
  readonly maxBytes: number;
  /** Clock (ms since epoch) for last use, metadata times, temp age and the retry after a fault; default Date.now. */
  readonly now?: () => number;
  readonly logger?: Logger;
  /** Overrides WRITE_IDLE_TIMEOUT_MS. */
  readonly writeIdleTimeoutMs?: number;
  /** Overrides TMP_STALE_MS. */
  readonly tmpStaleMs?: number;
  /** Overrides TRUST_CTIME_MIN_AGE_MS (compared with the file system's clock, not `now`). */
  readonly trustCtimeAgeMs?: number;
  /**
   * Sweep the metadata of objects no longer stored in the background right after open
   * (default true; an eviction at open that removes objects schedules one regardless).
   * `sigil cache` turns it off: `ls` lists what is there, `prune` sweeps after pruning.
   */
  readonly sweepMetaAtOpen?: boolean;
  /** Where written and read blobs are hashed (the app's hash workers); default inline. */
  readonly hashes?: HashPool;
  /** Where damaged objects, failed file operations, fills and evictions are counted, and the store's size exposed. */
  readonly metrics?: Metrics;
  /** Overrides STORE_RETRY_MS. */
  readonly retryMs?: number;
}

export type { BeginWrite } from './object-writer.js';
export type { EvictResult } from './eviction.js';
export type { MetaSweepResult } from './meta.js';

/**
 * sigil's on-disk content store: objects (manifests, blobs, signature artifacts, referrer
 * indexes) by digest, plus small JSON metadata. Composed here from its parts, each the one owner
 * of its behaviour: layout.ts (paths, atomic files), object-index.ts (what is stored, in LRU
 * order), object-writer.ts (checked, atomic, coalesced writes), object-reader.ts (reads that never
 * serve a changed object complete), last-use.ts, maintenance.ts (eviction, sweeps), meta.ts,
 * health.ts (file system faults).
 *
 * Last use is the object file's mtime (set with utimes, at most every LAST_USED_PERSIST_MS per
 * object): atime is unreliable under noatime/relatime, objects are immutable so their mtime means
 * nothing else, and a scan at open rebuilds the index with no second file to keep consistent
 * across processes.
 *
 * Faults of the file system (StoreHealth): an object that cannot be read is absent; a write that
 * fails stops writes until a probe succeeds; an object that does not hash to its digest when read
 * is removed and never served complete.
 */
export class ContentStore {
  readonly #layout: Layout;
  readonly #maxBytes: number;
  readonly #health: StoreHealth;
  readonly #index: ObjectIndex;
  readonly #meta: MetaStore;
  readonly #upkeep: Maintenance;
  readonly #reader: ObjectReader;
  readonly #writer: ObjectWriter;
  readonly #commitListeners: Array<(digest: Digest, size: number) => void> = [];
  readonly #logger: Logger | undefined;
  #closed = false;

  private constructor(opts: ContentStoreOptions, layout: Layout, index: ObjectIndex, now: () => number, trustFileSystem: boolean) {
    this.#layout = layout;
    this.#maxBytes = opts.maxBytes;
    this.#index = index;
    const logger = opts.logger;
    this.#logger = logger;
    this.#meta = new MetaStore(layout, now, logger);
    const upkeep = new Maintenance({
      layout,
      index,
      meta: this.#meta,
      maxBytes: opts.maxBytes,
      now,
      logger,
      onDisk: (d) => this.onDisk(d),
      closed: () => this.#closed,
      ...(opts.metrics !== undefined ? { metrics: opts.metrics } : {}),
    });
    this.#upkeep = upkeep;
    this.#health = new StoreHealth({
      layout,
      now,
      retryMs: opts.retryMs ?? STORE_RETRY_MS,
      ...(logger !== undefined ? { logger } : {}),
      ...(opts.metrics !== undefined ? { metrics: opts.metrics } : {}),
      recovered: () => {
        this.#meta.forgetDirs();
        upkeep.track(upkeep.reconcile(), 'checking the objects after a fault');
      },
    });
    const lastUse = new LastUse({ layout, index, now, track: (p, what) => upkeep.track(p, what) });
    const shared = { layout, index, health: this.#health, lastUse, ...(opts.hashes !== undefined ? { hashes: opts.hashes } : {}) };
    this.#reader = new ObjectReader({
      ...shared,
      remove: (d) => this.remove(d),
      trustAgeMs: opts.trustCtimeAgeMs ?? TRUST_CTIME_MIN_AGE_MS,
      trustFileSystem,
      wallClock: Date.now,
      ...(logger !== undefined ? { logger } : {}),
      ...(opts.metrics !== undefined ? { metrics: opts.metrics } : {}),
    });
    this.#writer = new ObjectWriter({
      ...shared,
      maxBytes: opts.maxBytes,
      idleTimeoutMs: opts.writeIdleTimeoutMs ?? WRITE_IDLE_TIMEOUT_MS,
      now,
      openRead: (d) => this.openRead(d),
      written: () => upkeep.written(),
      committed: (digest, size) => this.#committed(digest, size),
      ...(opts.metrics !== undefined ? { metrics: opts.metrics } : {}),
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
    // trusted reads (object-reader.ts) only where a file's ctime tracks every change of its bytes
    const trustedReads = await statfs(layout.dir).then((st) => ctimeTracksWrites(st.type), () => false);
    const store = new ContentStore(opts, layout, index, now, trustedReads);
    opts.metrics?.watchStore(store);
    opts.logger?.info({ dir: opts.dir, objects: index.count, bytes: index.bytes, staleTemps, trustedReads }, 'content store opened');
    if (index.bytes > opts.maxBytes) await store.evict();
    if (opts.sweepMetaAtOpen !== false) store.#upkeep.track(store.sweepMeta(), 'sweeping metadata');
    return store;
  }

  async has(digest: Digest): Promise<boolean> {
    return (await this.#lookup(digest)) !== undefined;
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
    const e = await this.#lookup(digest);
    return e ? { size: e.size, lastUsed: e.lastUsed } : null;
  }

  /** A stream of the object or of a range of it, checked (object-reader.ts); null when absent or found damaged. */
  openRead(digest: Digest, range?: { start: number; end: number }): Promise<Readable | null> {
    return this.#reader.openRead(digest, range);
  }

  /** The whole object, hashed again (object-reader.ts); null when absent or damaged. */
  readAll(digest: Digest, maxBytes: number, opts: { readonly touch?: boolean } = {}): Promise<Buffer | null> {
    return this.#reader.readAll(digest, maxBytes, opts);
  }

  /** Stores bytes whose digest is checked first (else DIGEST_MISMATCH). Idempotent. */
  putBytes(digest: Digest, bytes: Buffer): Promise<void> {
    this.#checkOpen();
    return this.#writer.putBytes(digest, bytes);
  }

  /** A coalesced streaming write: the writer, or a follower reading behind it (object-writer.ts). */
  beginWrite(digest: Digest, expectedSize?: number, opts?: WriteOptions): BeginWrite {
    this.#checkOpen();
    return this.#writer.beginWrite(digest, expectedSize, opts);
  }

  /**
   * A reader behind this process's write of `digest` while one is in progress (what beginWrite's
   * follower reads), else undefined. Unlike beginWrite it never begins a write: for readers that
   * must not (the peer listener).
   */
  followWrite(digest: Digest): Readable | undefined {
    this.#checkOpen();
    return this.#writer.follow(digest);
  }

  /**
   * Calls `listener` after each object this process commits (a streaming write or putBytes that
   * stored it; not one found stored already), with its digest and size, synchronously: a listener
   * only takes note (replication queues it). One that throws is logged and ignored.
   */
  onCommit(listener: (digest: Digest, size: number) => void): void {
    this.#commitListeners.push(listener);
  }

  /** Whether a blob write of `size` bytes should start now (writing, and room on the file system). */
  async admitWrite(size?: number): Promise<boolean> {
    return !this.#closed && (await this.#writer.admitWrite(size));
  }

  /** Why the store does not write now (disk full, read-only, removed, …), or undefined while it does. */
  get fault(): StoreFault | undefined {
    return this.#health.fault;
  }

  /** The store's size limit: a larger object is never written. */
  get maxBytes(): number {
    return this.#maxBytes;
  }

  /** Streaming writes in progress in this process. */
  get writesInFlight(): number {
    return this.#writer.inFlight;
  }

  /** Removes one object (the caller evicting a manifest together with its blobs); false when absent. */
  async remove(digest: Digest): Promise<boolean> {
    const path = this.#layout.objectPath(digest);
    this.#index.delete(digest);
    try {
      await rm(path);
      this.#upkeep.sweeps.owe(); // swept with the next eviction or write after the interval
      return true;
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return false;
      throw err;
    }
  }

  async putMeta(ns: string, key: string, value: unknown): Promise<void> {
    this.#checkOpen();
    await this.#health.whenWritable();
    try {
      await this.#meta.put(ns, key, value);
    } catch (err) {
      if (ioErrorCode(err) !== undefined) this.#health.failed('write', err, { path: `meta/${ns}` });
      throw err;
    }
  }

  /** The document, or null when absent or unreadable (a read fault is counted and logged). */
  async getMeta<T>(ns: string, key: string): Promise<{ value: T; updated: number } | null> {
    try {
      return await this.#meta.get<T>(ns, key);
    } catch (err) {
      if (ioErrorCode(err) === undefined) throw err;
      this.#health.failed('read', err, { path: `meta/${ns}` });
      return null;
    }
  }

  async listMeta<T>(ns: string): Promise<Array<{ key: string; value: T; updated: number }>> {
    try {
      return await this.#meta.list<T>(ns);
    } catch (err) {
      if (ioErrorCode(err) === undefined) throw err;
      this.#health.failed('read', err, { path: `meta/${ns}` });
      return [];
    }
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
    return this.#upkeep.evict();
  }

  /** Removes objects unused for `olderThanMs`, then LRU ones down to `maxBytes`. */
  prune(opts: { olderThanMs?: number; maxBytes?: number }): Promise<EvictResult> {
    return this.#upkeep.prune(opts);
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
    return this.#upkeep.sweeps.request();
  }

  /** Metadata sweeps this store started: records seen before one may be gone after it. */
  get metaSweeps(): number {
    return this.#upkeep.sweeps.started;
  }

  /** Resolves once background work (evictions, metadata sweeps, last-use updates) has finished. */
  idle(): Promise<void> {
    return this.#upkeep.idle();
  }

  /** Aborts writes still in progress (their temps are removed) and waits for background work. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#writer.abortAll();
    await this.idle(); // a running sweep stops before its next file
  }

  #committed(digest: Digest, size: number): void {
    for (const listener of this.#commitListeners) {
      try {
        listener(digest, size);
      } catch (err) {
        this.#logger?.warn({ digest, err: String(err) }, 'content store: a commit listener failed');
      }
    }
  }

  #checkOpen(): void {
    if (this.#closed) throw new SigilError({ code: 'INTERNAL', message: 'content store: closed' });
  }

  /** The index entry (or one adopted from disk); undefined when absent or unreadable. */
  async #lookup(digest: Digest): Promise<Entry | undefined> {
    try {
      return await lookupObject(this.#layout, this.#index, digest);
    } catch (err) {
      this.#health.failed('read', err, { digest, path: this.#layout.objectPath(digest) });
      return undefined;
    }
  }
}
