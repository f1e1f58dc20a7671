import { open, rm } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { Writable } from 'node:stream';
import { SigilError, isSigilError } from '../errors.js';
import { digestAlgorithm } from '../oci/digest.js';
import type { Digest } from '../oci/digest.js';
import { FollowerStream } from './follower.js';
import { FILE_MODE } from './layout.js';
import { RecentChunks } from './recent-chunks.js';
import { startHash } from '../hash/hash-pool.js';
import type { HashPool, StreamHash } from '../hash/hash-pool.js';
import type { Followed, FollowState } from './follower.js';

export interface InFlightOptions {
  readonly digest: Digest;
  readonly expectedSize?: number;
  /** No write may grow past this (the store's maxBytes): an upstream cannot fill the disk with one endless body. */
  readonly maxSize: number;
  readonly tmpPath: string;
  readonly idleTimeoutMs: number;
  /** Keep the chunks written last for followers (the caller never changes a written chunk: object-writer.ts WriteOptions). */
  readonly keepRecent?: boolean;
  /** Renames the checked, fsynced temp into place and records it; runs once, after the digest check. */
  readonly commit: (tmpPath: string, size: number) => Promise<void>;
  /** The write is over (committed or failed): forget it, synchronously with the state change. */
  readonly settled: () => void;
  /** Where the bytes are hashed (big blobs off the event loop); default inline. */
  readonly hashes?: HashPool;
  /**
   * A file operation of the write failed (open, write, fsync, commit: disk full, read-only,
   * directory removed, I/O error), as opposed to the data (wrong digest or size, a source error).
   * Called once, before `done` rejects.
   */
  readonly ioFailed?: (err: unknown) => void;
}

const noop = (): void => {};

/**
 * The writer buffers up to this much while a write is under way (then the upstream
 * waits): what arrives meanwhile goes down in one pwritev, one thread-pool round trip
 * per batch instead of one per 64 KiB socket read.
 */
export const WRITE_BATCH_BYTES = 1024 * 1024;

/** The buffers after the first `n` bytes of `bufs` (what is left after a short pwritev). */
export function rest(bufs: readonly Buffer[], n: number): Buffer[] {
  const out: Buffer[] = [];
  for (const b of bufs) {
    if (n >= b.length) {
      n -= b.length;
      continue;
    }
    out.push(n > 0 ? b.subarray(n) : b);
    n = 0;
  }
  return out;
}

/**
 * One streaming write of one digest, shared by its writer and any number of
 * followers. The writer's chunks go to a temp file opened O_EXCL|O_RDWR; followers
 * read the same file descriptor at their own offsets (pread), so they never hold
 * more than one chunk and keep working after the rename (same inode). The file
 * descriptor closes when the writer and every follower are done with it. When the
 * caller hands its chunks over (`keepRecent`), the last FOLLOW_RECENT_BYTES written stay
 * in memory, so followers that keep up (the request that started the download among
 * them) do not read the file back.
 */
export class InFlightWrite implements Followed {
  readonly writer: Writable;
  readonly done: Promise<void>;
  /** Resolves once the temp file is open (the disk took the write so far), rejects when it could not be. */
  readonly opened: Promise<void>;
  readonly #opts: InFlightOptions;
  readonly #hash: StreamHash;
  readonly #opened: Promise<FileHandle>;
  #resolveOpened: (fh: FileHandle) => void = noop;
  #rejectOpened: (err: unknown) => void = noop;
  #resolveDone: () => void = noop;
  #rejectDone: (err: unknown) => void = noop;
  #state: FollowState = { kind: 'writing', written: 0 };
  #refs = 1; // the writer's
  #waiters: Array<() => void> = [];
  /** The chunks written last (followers that keep up take them from here); only when the caller hands them over. */
  readonly #recent: RecentChunks | undefined;
  #idle: NodeJS.Timeout | undefined;
  #ioReported = false;

  constructor(opts: InFlightOptions) {
    this.#opts = opts;
    this.#hash = startHash(opts.hashes, digestAlgorithm(opts.digest), opts.expectedSize);
    this.#recent = opts.keepRecent === true ? new RecentChunks() : undefined;
    this.#opened = new Promise<FileHandle>((resolve, reject) => {
      this.#resolveOpened = resolve;
      this.#rejectOpened = reject;
    });
    this.#opened.catch(noop);
    this.opened = this.#opened.then(noop);
    this.opened.catch(noop);
    this.done = new Promise<void>((resolve, reject) => {
      this.#resolveDone = resolve;
      this.#rejectDone = reject;
    });
    // The failure is also the writer's 'error'; a caller that awaits only `done` must not crash.
    this.done.catch(noop);
    this.writer = new Writable({
      construct: (cb) => {
        open(opts.tmpPath, 'wx+', FILE_MODE).then(
          (fh) => {
            this.#resolveOpened(fh);
            cb();
          },
          (err: unknown) => {
            this.#ioFailed(err);
            this.#rejectOpened(err);
            cb(err as Error);
          },
        );
      },
      highWaterMark: WRITE_BATCH_BYTES,
      writev: (chunks, cb) => {
        this.#write(chunks.map((c) => c.chunk as Buffer)).then(() => cb(), cb);
      },
      final: (cb) => {
        this.#final().then(() => cb(), cb);
      },
      destroy: (err, cb) => {
        this.#destroyed(err).then(
          () => cb(err),
          () => cb(err),
        );
      },
    });
    // Errors surface through `done` (and to a pipeline); without a listener an 'error' would throw.
    this.writer.on('error', noop);
    this.#armIdle();
  }

  /** A new follower reading from byte 0 (only while writing; the store routes later callers to the file). */
  follow(): FollowerStream {
    this.#refs++;
    return new FollowerStream(this, this.#opts.digest);
  }

  /** Aborts the write (store closing); followers error with `err`. */
  abort(err: Error): void {
    this.writer.destroy(err);
  }

  state(): FollowState {
    return this.#state;
  }

  handle(): Promise<FileHandle> {
    return this.#opened;
  }

  progress(): Promise<void> {
    if (this.#state.kind !== 'writing') return Promise.resolve();
    return new Promise<void>((resolve) => this.#waiters.push(resolve));
  }

  recent(pos: number, max: number): Buffer | undefined {
    return this.#recent?.at(pos, max);
  }

  retain(): void {
    this.#refs++;
  }

  release(): void {
    this.#refs--;
    if (this.#refs === 0) {
      this.#opened.then((fh) => fh.close()).catch(noop);
    }
  }

  #notify(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) w();
  }

  #armIdle(): void {
    clearTimeout(this.#idle);
    this.#idle = setTimeout(() => {
      this.writer.destroy(
        new SigilError({
          code: 'INTERNAL',
          message: `content store: the write of ${this.#opts.digest} received no data for ${this.#opts.idleTimeoutMs} ms`,
        }),
      );
    }, this.#opts.idleTimeoutMs);
    this.#idle.unref();
  }

  async #write(chunks: Buffer[]): Promise<void> {
    if (this.#state.kind !== 'writing') throw new SigilError({ code: 'INTERNAL', message: 'content store: write after end' });
    const at = this.#state.written;
    let length = 0;
    for (const c of chunks) length += c.length;
    const expected = this.#opts.expectedSize;
    if (expected !== undefined && at + length > expected) throw this.#sizeError(at + length);
    if (at + length > this.#opts.maxSize) {
      throw new SigilError({ code: 'INTERNAL', message: `content store: ${this.#opts.digest} grows past the store's ${this.#opts.maxSize} bytes` });
    }
    this.#armIdle();
    for (const c of chunks) await this.#hash.update(c);
    const fh = await this.#opened;
    let pending = chunks.filter((c) => c.length > 0);
    let pos = at;
    while (pending.length > 0) {
      const { bytesWritten } = await this.#io(fh.writev(pending, pos));
      if (bytesWritten === 0) throw this.#ioFailed(new SigilError({ code: 'INTERNAL', message: `content store: the disk took no bytes of ${this.#opts.digest}` }));
      pos += bytesWritten;
      pending = rest(pending, bytesWritten);
    }
    if (this.#state.kind !== 'writing') return; // aborted meanwhile
    this.#recent?.keep(chunks);
    this.#state = { kind: 'writing', written: at + length };
    this.#notify();
  }

  async #final(): Promise<void> {
    if (this.#state.kind !== 'writing') throw new SigilError({ code: 'INTERNAL', message: 'content store: write already over' });
    const size = this.#state.written;
    const expected = this.#opts.expectedSize;
    if (expected !== undefined && size !== expected) throw this.#sizeError(size);
    const digest = this.#opts.digest;
    const got = `${digestAlgorithm(digest)}:${await this.#hash.digest()}`;
    if (this.#state.kind !== 'writing') return; // aborted while hashing: #destroyed failed it and removes the temp
    if (got !== digest) {
      throw new SigilError({
        code: 'DIGEST_MISMATCH',
        message: `content store: the bytes written for ${digest} hash to ${got}`,
        detail: { expected: digest, got },
      });
    }
    clearTimeout(this.#idle);
    // Readers may have the last bytes now: they are right whether or not the commit succeeds.
    this.#state = { kind: 'verified', size };
    this.#notify();
    const fh = await this.#opened;
    await this.#io(fh.sync());
    if (this.#state.kind !== 'verified') return; // aborted during the fsync: the temp is gone, nothing to commit
    await this.#io(this.#opts.commit(this.#opts.tmpPath, size));
    if (this.#state.kind !== 'verified') return; // aborted during the rename: the object is valid all the same
    this.#state = { kind: 'committed', size };
    this.#recent?.drop(); // followers still reading, slow ones, read the file: the memory goes now
    this.#opts.settled();
    this.#notify();
    this.#resolveDone();
  }

  async #destroyed(err: Error | null): Promise<void> {
    clearTimeout(this.#idle);
    this.#hash.abort();
    // writing, or verified with the fsync or rename failing: the object is not stored; readers
    // still reading fail with the error (those that had every byte are done)
    if (this.#state.kind === 'writing' || this.#state.kind === 'verified') {
      const error =
        err !== null && isSigilError(err)
          ? err
          : new SigilError({ code: 'INTERNAL', message: `content store: the write of ${this.#opts.digest} was aborted`, cause: err ?? undefined });
      this.#state = { kind: 'failed', error };
      this.#recent?.drop();
      this.#opts.settled();
      this.#notify();
      // `done` settles once the temp is gone: a caller that awaited it sees a clean directory.
      await rm(this.#opts.tmpPath, { force: true }).catch(noop);
      this.#rejectDone(error);
    }
    this.release();
  }

  /** A file operation's outcome: its failure is reported as the disk's (ioFailed), then passed on. */
  async #io<T>(p: Promise<T>): Promise<T> {
    try {
      return await p;
    } catch (err) {
      throw this.#ioFailed(err);
    }
  }

  #ioFailed<E>(err: E): E {
    if (!this.#ioReported && (this.#state.kind === 'writing' || this.#state.kind === 'verified')) {
      this.#ioReported = true;
      this.#opts.ioFailed?.(err);
    }
    return err;
  }

  #sizeError(size: number): SigilError {
    return new SigilError({
      code: 'DIGEST_MISMATCH',
      message: `content store: ${this.#opts.digest} was announced as ${this.#opts.expectedSize} bytes, got ${size}`,
      detail: { expectedSize: this.#opts.expectedSize, size },
    });
  }
}
