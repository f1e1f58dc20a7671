import { lstat, rename, utimes } from 'node:fs/promises';
import type { Readable, Writable } from 'node:stream';
import type { Metrics } from '../audit/metrics.js';
import { SigilError } from '../errors.js';
import type { HashPool } from '../hash/hash-pool.js';
import { digestOf } from '../oci/digest.js';
import type { Digest } from '../oci/digest.js';
import { streamOf } from './follower.js';
import { ioErrorCode } from './health.js';
import type { StoreHealth } from './health.js';
import { InFlightWrite } from './inflight.js';
import type { LastUse } from './last-use.js';
import { objectLabel, syncDir, writeFileAtomic } from './layout.js';
import type { Layout } from './layout.js';
import { lookupObject } from './object-index.js';
import type { ObjectIndex } from './object-index.js';

export type BeginWrite =
  /** `opened`: the temp file is open (rejects when the disk refused it: nothing was written, nothing to follow). */
  | { readonly kind: 'writer'; readonly writer: Writable; readonly done: Promise<void>; readonly opened: Promise<void> }
  | { readonly kind: 'follower'; readonly stream: Readable };

/** How a streaming write is fed. */
export interface WriteOptions {
  /**
   * The writer's caller never changes a chunk after writing it (an upstream's body, whose
   * buffers are its own): the write keeps the chunks it wrote last, and followers that keep up
   * are served from them instead of reading the file back (inflight.ts). Without it a caller
   * may reuse a chunk once its write's callback ran.
   */
  readonly chunksHandedOver?: boolean;
}

export interface ObjectWriterOptions {
  readonly layout: Layout;
  readonly index: ObjectIndex;
  readonly health: StoreHealth;
  readonly lastUse: LastUse;
  /** No object grows past this (the store's maxBytes). */
  readonly maxBytes: number;
  readonly idleTimeoutMs: number;
  readonly now: () => number;
  readonly hashes?: HashPool;
  /** A stored object to read behind (a write that begins after the object was committed). */
  readonly openRead: (digest: Digest) => Promise<Readable | null>;
  /** An object was added (eviction may be due). */
  readonly written: () => void;
  /** An object was committed by this writer (renamed into place, its directory synced), with its size. */
  readonly committed?: (digest: Digest, size: number) => void;
  /** Where the bytes of committed objects are counted (sigil_store_fill_bytes_total). */
  readonly metrics?: Metrics;
}

/**
 * Writes objects: every one is checked against its digest before it appears, and appears by an
 * atomic rename, so two processes sharing the directory, or a crash mid-write, never expose a
 * partial one. Concurrent streaming writes of one digest are coalesced into one, which the
 * others read behind (inflight.ts, follower.ts).
 */
export class ObjectWriter {
  readonly #o: ObjectWriterOptions;
  readonly #inflight = new Map<Digest, InFlightWrite>();
  /** Bytes the writes under way expect to add (their announced sizes). */
  #reserved = 0;

  constructor(opts: ObjectWriterOptions) {
    this.#o = opts;
  }

  /** Streaming writes in progress. */
  get inFlight(): number {
    return this.#inflight.size;
  }

  /** A follower of the write of `digest` in progress here, or undefined: never begins one. */
  follow(digest: Digest): Readable | undefined {
    return this.#inflight.get(digest)?.follow();
  }

  /** Stores bytes whose digest is checked first (else DIGEST_MISMATCH). Idempotent. */
  async putBytes(digest: Digest, bytes: Buffer): Promise<void> {
    const { layout, index, health } = this.#o;
    await health.whenWritable();
    const path = layout.objectPath(digest);
    const got = digestOf(bytes, digest);
    if (got !== digest) {
      throw new SigilError({ code: 'DIGEST_MISMATCH', message: `content store: bytes given for ${digest} hash to ${got}`, detail: { expected: digest, got } });
    }
    // On disk rather than in the index: another process sharing the directory may have evicted it.
    const present = await lstat(path).then((st) => st.isFile() && st.size === bytes.length, () => false);
    if (present && (await lookupObject(layout, index, digest))) {
      this.#o.lastUse.touch(digest);
      return;
    }
    const t = this.#o.now();
    try {
      await writeFileAtomic(layout, objectLabel(digest), path, bytes, t);
    } catch (err) {
      if (ioErrorCode(err) !== undefined) health.failed('write', err, { digest, path });
      throw err;
    }
    await syncDir(layout.objectDir(digest));
    index.set(digest, bytes.length, t, t);
    this.#o.metrics?.storeFilled.inc(bytes.length);
    this.#o.written();
    this.#o.committed?.(digest, bytes.length);
  }

  /**
   * Coalesced streaming write. The first caller for a digest gets the `writer` (feed it
   * with pipeline(); end it to commit, destroy it to abort); `done` settles when the
   * object is stored or the write failed (DIGEST_MISMATCH on a wrong digest or size).
   * Later callers get a `follower` stream reading behind the writer, or the stored file.
   */
  beginWrite(digest: Digest, expectedSize?: number, opts: WriteOptions = {}): BeginWrite {
    const { layout, index } = this.#o;
    const path = layout.objectPath(digest);
    const current = this.#inflight.get(digest);
    if (current) return { kind: 'follower', stream: current.follow() };
    if (index.get(digest)) {
      return {
        kind: 'follower',
        stream: streamOf(
          () => this.#o.openRead(digest),
          () => new SigilError({ code: 'INTERNAL', message: `content store: ${digest} was removed meanwhile` }),
        ),
      };
    }
    const tmpPath = layout.tmpPath(objectLabel(digest));
    const reserve = expectedSize ?? 0;
    this.#reserved += reserve;
    let settled = false;
    const flight = new InFlightWrite({
      digest,
      ...(expectedSize !== undefined ? { expectedSize } : {}),
      maxSize: this.#o.maxBytes,
      tmpPath,
      idleTimeoutMs: this.#o.idleTimeoutMs,
      keepRecent: opts.chunksHandedOver === true,
      ...(this.#o.hashes !== undefined ? { hashes: this.#o.hashes } : {}),
      ioFailed: (err) => this.#o.health.failed('write', err, { digest, path: tmpPath }),
      commit: async (tmp, size) => {
        const t = this.#o.now();
        await utimes(tmp, t / 1000, t / 1000);
        await rename(tmp, path);
        index.set(digest, size, t, t);
        this.#o.metrics?.storeFilled.inc(size);
        await syncDir(layout.objectDir(digest));
        this.#o.committed?.(digest, size);
      },
      settled: () => {
        if (!settled) this.#reserved -= reserve;
        settled = true;
        if (this.#inflight.get(digest) === flight) this.#inflight.delete(digest);
      },
    });
    this.#inflight.set(digest, flight);
    flight.done.then(() => this.#o.written(), () => {});
    return { kind: 'writer', writer: flight.writer, done: flight.done, opened: flight.opened };
  }

  /**
   * Whether a blob write of `size` bytes (undefined: not known) should start now: the store is
   * writing (after a fault, a probe decides once its retry is due) and the file system has room
   * for it, the writes under way and a margin. False: the blob passes through unstored.
   */
  async admitWrite(size?: number): Promise<boolean> {
    if (!(await this.#o.health.writable())) return false;
    return this.#o.health.room(size, this.#reserved);
  }

  /** Aborts the writes still in progress (their temps are removed, their followers fail) and waits for them. */
  async abortAll(): Promise<void> {
    const flights = [...this.#inflight.values()];
    for (const f of flights) f.abort(new SigilError({ code: 'INTERNAL', message: 'content store: closed during the write' }));
    await Promise.allSettled(flights.map((f) => f.done));
  }
}
