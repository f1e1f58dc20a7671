import type { FileHandle } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { READ_CHUNK_BYTES } from './limits.js';

export interface ObjectStreamOptions {
  readonly fh: FileHandle;
  /** First and last byte, inclusive (end < start: nothing). */
  readonly start: number;
  readonly end: number;
  /**
   * Sees each chunk read, in order, before it goes out; a promise holds the stream until it
   * settles (a hash's backpressure), a rejection fails the stream.
   */
  readonly onChunk?: (chunk: Buffer) => Promise<void> | undefined;
  /**
   * Runs once every byte up to `end` has been read, before the last chunk goes out: a rejection
   * fails the stream instead, so its consumer never has the last bytes of what did not check.
   */
  readonly beforeLast?: () => Promise<void>;
  /** The file gave no bytes at `pos` (it is shorter than `end`): the error the stream fails with. */
  readonly short: (pos: number) => Error | Promise<Error>;
  /** A read of the file failed (the stream fails with that error). */
  readonly readFailed?: (err: unknown) => void;
  /** The stream is over (ended, failed or destroyed); the file is closed by then or being closed. */
  readonly closed?: () => void;
}

/**
 * Bytes [start, end] of an open object file, READ_CHUNK_BYTES at a time by positional reads: a
 * stream holds one chunk being read and at most one waiting for its consumer (its high-water
 * mark), whatever the object's size. Knowing where the range ends, it holds back only the last
 * chunk, until `beforeLast` has passed. The file is closed when the stream is over.
 */
export class ObjectStream extends Readable {
  readonly #opts: ObjectStreamOptions;
  #pos: number;
  #pumping = false;
  #closed = false;

  constructor(opts: ObjectStreamOptions) {
    super({ highWaterMark: READ_CHUNK_BYTES });
    this.#opts = opts;
    this.#pos = opts.start;
  }

  override _read(): void {
    void this.#pump();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.#close().then(
      () => cb(err),
      () => cb(err),
    );
  }

  async #close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#opts.closed?.();
    await this.#opts.fh.close();
  }

  async #pump(): Promise<void> {
    if (this.#pumping) return;
    this.#pumping = true;
    const o = this.#opts;
    try {
      for (;;) {
        if (this.destroyed) return;
        if (this.#pos > o.end) {
          await o.beforeLast?.(); // an empty range: nothing was read
          if (!this.destroyed) this.push(null);
          return;
        }
        const want = Math.min(o.end + 1 - this.#pos, READ_CHUNK_BYTES);
        const buf = Buffer.allocUnsafe(want);
        let bytesRead: number;
        try {
          ({ bytesRead } = await o.fh.read(buf, 0, want, this.#pos));
        } catch (err) {
          o.readFailed?.(err);
          throw err;
        }
        if (this.destroyed) return;
        if (bytesRead === 0) throw await o.short(this.#pos);
        this.#pos += bytesRead;
        const chunk = bytesRead === want ? buf : buf.subarray(0, bytesRead);
        await o.onChunk?.(chunk);
        if (this.destroyed) return;
        if (this.#pos > o.end) {
          await o.beforeLast?.();
          if (this.destroyed) return;
          this.push(chunk);
          this.push(null);
          return;
        }
        if (!this.push(chunk)) return;
      }
    } catch (err) {
      this.destroy(err as Error);
    } finally {
      this.#pumping = false;
    }
  }
}
