import { lstat, rename, rm, utimes } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { Readable } from 'node:stream';
import type { Writable } from 'node:stream';
import type { Logger } from 'pino';
import type { Metrics } from '../audit/metrics.js';
import { SigilError } from '../errors.js';
import { digestAlgorithm, digestOf } from '../oci/digest.js';
import type { Digest } from '../oci/digest.js';
import { DigestCheck } from '../hash/checked-stream.js';
import { startHash } from '../hash/hash-pool.js';
import { evictLru, pruneOlderThan } from './eviction.js';
import type { EvictResult } from './eviction.js';
import { streamOf } from './follower.js';
import { InFlightWrite } from './inflight.js';
import type { HashPool } from '../hash/hash-pool.js';
import { StoreHealth, ioErrorCode } from './health.js';
import type { StoreFault } from './health.js';
import { Layout, cleanStaleTemps, isErrno, objectLabel, syncDir, writeFileAtomic } from './layout.js';
import {
  LAST_USED_PERSIST_MS, READ_CHUNK_BYTES, SCAN_CONCURRENCY, STORE_RETRY_MS, TMP_STALE_MS, VERIFY_AHEAD_MAX_BYTES, WRITE_IDLE_TIMEOUT_MS,
} from './limits.js';
import { MetaStore } from './meta.js';
import { SweepSchedule } from './sweeps.js';
import type { MetaSweepResult } from './meta.js';
import { lookupObject, openObject, scanObjects } from './object-index.js';
import type { Entry, ObjectIndex, OpenedObject } from './object-index.js';

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
  /**
   * Sweep the metadata of objects no longer stored in the background right after open
   * (default true; an eviction at open that removes objects schedules one regardless).
   * `sigil cache` turns it off: `ls` lists what is there, `prune` sweeps after pruning.
   */
  readonly sweepMetaAtOpen?: boolean;
  /** Where written and read blobs are hashed (the app's hash workers); default inline. */
  readonly hashes?: HashPool;
  /** Where damaged objects and failed file operations are counted. */
  readonly metrics?: Metrics;
  /** Overrides STORE_RETRY_MS. */
  readonly retryMs?: number;
}

export type BeginWrite =
  /** `opened`: the temp file is open (rejects when the disk refused it: nothing was written, nothing to follow). */
  | { readonly kind: 'writer'; readonly writer: Writable; readonly done: Promise<void>; readonly opened: Promise<void> }
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
 *
 * Faults of the file system (StoreHealth): an object that cannot be read is absent; a write that
 * fails stops writes until a probe succeeds; an object that does not hash to its digest when read
 * is removed and never served complete.
 */
export class ContentStore {
  readonly #layout: Layout;
  readonly #maxBytes: number;
  readonly #now: () => number;
  readonly #logger: Logger | undefined;
  readonly #idleMs: number;
  readonly #hashes: HashPool | undefined;
  readonly #metrics: Metrics | undefined;
  readonly #health: StoreHealth;
  readonly #index: ObjectIndex;
  readonly #meta: MetaStore;
  readonly #inflight = new Map<Digest, InFlightWrite>();
  /** Bytes the writes under way expect to add (their announced sizes). */
  #reserved = 0;
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
    this.#metrics = opts.metrics;
    this.#index = index;
    this.#meta = new MetaStore(layout, now, opts.logger);
    this.#health = new StoreHealth({
      layout,
      now,
      retryMs: opts.retryMs ?? STORE_RETRY_MS,
      ...(opts.logger !== undefined ? { logger: opts.logger } : {}),
      ...(opts.metrics !== undefined ? { metrics: opts.metrics } : {}),
      recovered: () => {
        this.#meta.forgetDirs();
        this.#track(this.#reconcile(), 'checking the objects after a fault');
      },
    });
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

  /**
   * A stream of the object, or of bytes [start, end] inclusive (else RANGE_INVALID); null when
   * absent, unreadable, or found damaged before anything of it was returned. Marks it used. The
   * stream holds the file open, so eviction (even by another process) does not cut it short.
   *
   * Nothing but the digest's bytes is ever served complete. A whole object (or a range that is
   * every byte of it) is hashed on the way: up to VERIFY_AHEAD_MAX_BYTES before it is returned,
   * a larger one as it streams, its last chunk held back until the digest matched (a mismatch
   * errors the stream first). A damaged object is removed, logged and counted. A partial range is
   * served as stored, unchecked: a part has nothing to be checked against, and a client that puts
   * a blob together from parts checks its digest itself (containerd, CRI-O, skopeo do).
   */
  async openRead(digest: Digest, range?: { start: number; end: number }): Promise<Readable | null> {
    const opened = await this.#openChecked(digest);
    if (!opened) return null;
    const { fh, entry, ino } = opened;
    const size = entry.size;
    if (range) {
      const { start, end } = range;
      if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || start > end || end >= size) {
        await fh.close();
        throw new SigilError({ code: 'RANGE_INVALID', message: `content store: bytes ${start}-${end} of a ${size}-byte object` });
      }
      if (start !== 0 || end !== size - 1) {
        this.#touch(digest, entry);
        return this.#fileStream(digest, fh, start, end);
      }
    }
    if (size <= VERIFY_AHEAD_MAX_BYTES) {
      let bytes: Buffer;
      try {
        bytes = await readExactly(fh, size);
      } catch (err) {
        this.#health.failed('read', err, { digest, path: this.#layout.objectPath(digest) });
        return null;
      } finally {
        await fh.close();
      }
      let got: Digest;
      try {
        got = await this.#hashOf(digest, bytes);
      } catch (err) {
        // the hash workers failed (stalled, gone): unchecked bytes are not served; the caller fetches them again
        this.#logger?.warn({ digest, err: String(err) }, 'content store: could not hash a stored object; treated as absent');
        return null;
      }
      if (got !== digest) {
        await this.#damaged(digest, ino, `bytes that hash to ${got}`);
        return null;
      }
      this.#touch(digest, entry);
      return bufferStream(bytes);
    }
    this.#touch(digest, entry);
    const source = this.#fileStream(digest, fh, 0, size - 1);
    const checked = new DigestCheck({
      digest,
      expectedLength: size,
      ...(this.#hashes !== undefined ? { hashes: this.#hashes } : {}),
      mismatch: (got) => this.#damaged(digest, ino, `bytes that hash to ${got}`).then(() => this.#damageError(digest)),
      wrongLength: (count) => this.#damaged(digest, ino, `${count} of ${size} bytes`).then(() => this.#damageError(digest)),
    });
    source.on('error', (err) => checked.destroy(err));
    checked.on('close', () => {
      if (!source.destroyed) source.destroy();
    });
    source.pipe(checked);
    return checked;
  }

  /**
   * The whole object, hashed again on the way (a damaged file is removed and reported
   * absent); null when absent. An object over `maxBytes` is a caller error (INTERNAL).
   * Marks it used unless `touch: false` (`sigil cache ls`/`prune` read manifests to list
   * and size images: looking must not change the LRU order they report and act on).
   */
  async readAll(digest: Digest, maxBytes: number, opts: { readonly touch?: boolean } = {}): Promise<Buffer | null> {
    const opened = await this.#openChecked(digest);
    if (!opened) return null;
    const { fh, entry, ino } = opened;
    let bytes: Buffer;
    try {
      if (entry.size > maxBytes) {
        throw new SigilError({ code: 'INTERNAL', message: `content store: ${digest} has ${entry.size} bytes, over ${maxBytes}`, detail: { size: entry.size, maxBytes } });
      }
      bytes = await readExactly(fh, entry.size);
    } catch (err) {
      if (ioErrorCode(err) === undefined) throw err;
      this.#health.failed('read', err, { digest, path: this.#layout.objectPath(digest) });
      return null;
    } finally {
      await fh.close();
    }
    const got = digestOf(bytes, digest);
    if (got !== digest) {
      await this.#damaged(digest, ino, `bytes that hash to ${got}`);
      return null;
    }
    if (opts.touch !== false) this.#touch(digest, entry);
    return bytes;
  }

  /** Stores bytes whose digest is checked first (else DIGEST_MISMATCH). Idempotent. */
  async putBytes(digest: Digest, bytes: Buffer): Promise<void> {
    this.#checkOpen();
    await this.#whenWritable();
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
    try {
      await writeFileAtomic(this.#layout, objectLabel(digest), path, bytes, t);
    } catch (err) {
      if (ioErrorCode(err) !== undefined) this.#health.failed('write', err, { digest, path });
      throw err;
    }
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
    const tmpPath = this.#layout.tmpPath(objectLabel(digest));
    const reserve = expectedSize ?? 0;
    this.#reserved += reserve;
    let settled = false;
    const flight = new InFlightWrite({
      digest,
      ...(expectedSize !== undefined ? { expectedSize } : {}),
      maxSize: this.#maxBytes,
      tmpPath,
      idleTimeoutMs: this.#idleMs,
      ...(this.#hashes !== undefined ? { hashes: this.#hashes } : {}),
      ioFailed: (err) => this.#health.failed('write', err, { digest, path: tmpPath }),
      commit: async (tmp, size) => {
        const t = this.#now();
        await utimes(tmp, t / 1000, t / 1000);
        await rename(tmp, path);
        this.#index.set(digest, size, t, t);
        await syncDir(this.#layout.objectDir(digest));
      },
      settled: () => {
        if (!settled) this.#reserved -= reserve;
        settled = true;
        if (this.#inflight.get(digest) === flight) this.#inflight.delete(digest);
      },
    });
    this.#inflight.set(digest, flight);
    flight.done.then(() => this.#afterWrite(), () => {});
    return { kind: 'writer', writer: flight.writer, done: flight.done, opened: flight.opened };
  }

  /**
   * Whether a blob write of `size` bytes (undefined: not known) should start now: the store is
   * writing (after a fault, a probe decides once its retry is due) and the file system has room
   * for it, the writes under way and a margin. False: the blob passes through unstored.
   */
  async admitWrite(size?: number): Promise<boolean> {
    if (this.#closed || !(await this.#health.writable())) return false;
    return this.#health.room(size, this.#reserved);
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

  async putMeta(ns: string, key: string, value: unknown): Promise<void> {
    this.#checkOpen();
    await this.#whenWritable();
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

  /** Throws while writes are stopped by a fault (a due probe runs first). */
  async #whenWritable(): Promise<void> {
    if (await this.#health.writable()) return;
    const f = this.#health.fault;
    throw new SigilError({
      code: 'INTERNAL',
      message: `content store: not writing since ${f ? new Date(f.since).toISOString() : '?'} (${f?.code ?? '?'}: ${f?.message ?? ''}); retrying after ${f ? new Date(f.retryAt).toISOString() : '?'}`,
    });
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

  /** The object opened for reading; null when absent, unreadable, or of another size than recorded (damaged). */
  async #openChecked(digest: Digest): Promise<OpenedObject | null> {
    let opened: OpenedObject | null;
    try {
      opened = await openObject(this.#layout, this.#index, digest);
    } catch (err) {
      this.#health.failed('read', err, { digest, path: this.#layout.objectPath(digest) });
      return null;
    }
    if (opened?.recordedSize !== undefined) {
      await opened.fh.close();
      await this.#damaged(digest, opened.ino, `${opened.entry.size} bytes, stored as ${opened.recordedSize}`);
      return null;
    }
    return opened;
  }

  /** A stream of bytes [start, end] of an open object; a read error is counted (the consumer sees it). */
  #fileStream(digest: Digest, fh: FileHandle, start: number, end: number): Readable {
    const stream = fh.createReadStream({ highWaterMark: READ_CHUNK_BYTES, start, end });
    stream.once('error', (err) => this.#health.failed('read', err, { digest, path: this.#layout.objectPath(digest) }));
    return stream;
  }

  async #hashOf(digest: Digest, bytes: Buffer): Promise<Digest> {
    const hash = startHash(this.#hashes, digestAlgorithm(digest), bytes.length);
    const room = hash.update(bytes);
    if (room !== undefined) await room;
    return `${digestAlgorithm(digest)}:${await hash.digest()}` as Digest;
  }

  /**
   * A stored object is not its digest's bytes (changed on disk): counted, logged, and removed
   * unless the file was replaced meanwhile (by a write of the right bytes).
   */
  async #damaged(digest: Digest, ino: number, found: string): Promise<void> {
    const path = this.#layout.objectPath(digest);
    this.#metrics?.storeDamaged.inc();
    this.#logger?.warn({ digest, path, found }, 'content store: a stored object does not match its digest; removed, not served');
    try {
      if ((await lstat(path)).ino !== ino) return;
      await this.remove(digest);
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return;
      this.#index.delete(digest);
      this.#health.failed('write', err, { digest, path });
    }
  }

  #damageError(digest: Digest): SigilError {
    return new SigilError({ code: 'INTERNAL', message: `content store: ${digest} does not match its digest on disk; cut off before its last bytes` });
  }

  /** After a fault: drops index entries whose files are gone (the directory was removed, say). */
  async #reconcile(): Promise<void> {
    const all = this.#index.byLastUsed();
    for (let i = 0; i < all.length; i += SCAN_CONCURRENCY) {
      await Promise.all(
        all.slice(i, i + SCAN_CONCURRENCY).map(async ({ digest }) => {
          if (!(await this.onDisk(digest))) this.#index.delete(digest);
        }),
      );
    }
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

/** `size` bytes from the start of the file: a file that grew is read only that far, a shorter one gives fewer (a mismatch then). */
async function readExactly(fh: FileHandle, size: number): Promise<Buffer> {
  const buf = Buffer.allocUnsafe(size);
  let off = 0;
  while (off < size) {
    const { bytesRead } = await fh.read(buf, off, size - off, off);
    if (bytesRead === 0) break;
    off += bytesRead;
  }
  return off === size ? buf : buf.subarray(0, off);
}

/** A stream of one buffer (a verified small object). */
function bufferStream(bytes: Buffer): Readable {
  const out = new Readable({ read() {} });
  if (bytes.length > 0) out.push(bytes);
  out.push(null);
  return out;
}
