import type { FileHandle } from 'node:fs/promises';
import { ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import { READ_CHUNK_BYTES } from './limits.js';
import { SLABS_PER_STREAM, storeReadSlabs, type SlabPool } from './read-slabs.js';

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
  /** Where a piped stream takes its read buffers (default: the process's store-read slabs). */
  readonly slabs?: SlabPool;
  /** Whether `dest` is done with a chunk once it reports it written (default: doneWhenWritten). */
  readonly doneWhenWritten?: (dest: NodeJS.WritableStream) => boolean;
}

/**
 * Whether `dest` no longer holds a chunk once its write callback ran, so that the chunk's slab
 * may be read into again: a node:http response (what fastify pipes a body into, over TCP or TLS)
 * calls back once its socket has taken the bytes. Not so a Transform or PassThrough (it calls back
 * once the chunk is queued for its reader), nor a Writable that keeps its chunks: a slab reused
 * under them would hand their readers another object's bytes.
 */
function doneWhenWritten(dest: NodeJS.WritableStream): boolean {
  return dest instanceof ServerResponse;
}

/**
 * Bytes [start, end] of an open object file, a chunk at a time (READ_CHUNK_BYTES; piped into a
 * response, a pooled slab) by positional reads: a stream holds one chunk being read and at most
 * one waiting for its consumer (its high-water mark), whatever the object's size. Knowing where
 * the range ends, it holds back only the last chunk, until `beforeLast` has passed. The file is
 * closed when the stream is over.
 *
 * Piped into an HTTP response (`pipe(res)`, as fastify sends a stream body), it writes into it
 * itself: each chunk is read into a slab of a shared pool (sized from the streams reading at the
 * time: read-slabs.ts), written with a callback, and the slab goes back to the pool when the
 * response reports it written, so serving a stored blob allocates nothing per chunk. Piped into
 * anything else (doneWhenWritten) or read as a stream ('data', async iteration), each chunk is
 * a fresh buffer the consumer may keep.
 */
export class ObjectStream extends Readable {
  readonly #opts: ObjectStreamOptions;
  #pos: number;
  #pumping = false;
  #piped = false;
  #closed = false;
  /** A piped stream waiting for a write to complete (or for destroy). */
  #wake: (() => void) | undefined;

  constructor(opts: ObjectStreamOptions) {
    super({ highWaterMark: READ_CHUNK_BYTES });
    this.#opts = opts;
    this.#pos = opts.start;
  }

  override _read(): void {
    if (!this.#piped) void this.#pump();
  }

  override pipe<T extends NodeJS.WritableStream>(dest: T, opts?: { end?: boolean }): T {
    const pooled = (this.#opts.doneWhenWritten ?? doneWhenWritten)(dest);
    if (!pooled || this.#pumping || this.#piped || this.readableFlowing !== null || this.readableLength > 0) return super.pipe(dest, opts);
    this.#piped = true;
    void this.#pumpInto(dest, opts?.end !== false);
    return dest;
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.#wakeUp();
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

  #wakeUp(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  /** Reads `want` bytes at the current position into `buf`: the chunk read (checked by onChunk). */
  async #readChunk(buf: Buffer, want: number): Promise<Buffer> {
    const o = this.#opts;
    let bytesRead: number;
    try {
      ({ bytesRead } = await o.fh.read(buf, 0, want, this.#pos));
    } catch (err) {
      o.readFailed?.(err);
      throw err;
    }
    if (bytesRead === 0 && !this.destroyed) throw await o.short(this.#pos);
    this.#pos += bytesRead;
    return bytesRead === buf.length ? buf : buf.subarray(0, bytesRead);
  }

  /** The piped stream: reads into pooled slabs and writes them into `dest`, SLABS_PER_STREAM at most out. */
  async #pumpInto(dest: NodeJS.WritableStream, end: boolean): Promise<void> {
    const o = this.#opts;
    const slabs = o.slabs ?? storeReadSlabs;
    const stopCounting = slabs.enter();
    let writing = 0;
    let destFailed = false;
    /** Set once everything was read while `dest` still held chunks: the stream leaves once they are written. */
    let lastWritten: (() => void) | undefined;
    const leave = (): void => {
      dest.removeListener('close', leave);
      stopCounting();
    };
    const written = (slab: Buffer) => (err?: Error | null) => {
      writing--;
      if (err) destFailed = true; // `dest` failed: whoever owns it destroys this stream
      else slabs.give(slab);
      if (writing === 0) lastWritten?.();
      this.#wakeUp();
    };
    let readAll = false;
    try {
      while (this.#pos <= o.end) {
        while (writing >= SLABS_PER_STREAM && !this.destroyed && !destFailed) await new Promise<void>((r) => (this.#wake = r));
        if (this.destroyed || destFailed) return;
        const slab = slabs.take();
        const chunk = await this.#readChunk(slab, Math.min(o.end + 1 - this.#pos, slab.length));
        if (this.destroyed) return;
        await o.onChunk?.(chunk);
        if (this.#pos > o.end) await o.beforeLast?.();
        if (this.destroyed) return;
        writing++;
        dest.write(chunk, written(slab));
      }
      if (this.#opts.start > o.end) await o.beforeLast?.(); // an empty range: nothing was read
      if (this.destroyed) return;
      // The stream ends as a read one does ('end', then 'close'), then `dest` is ended, as pipe() does.
      this.once('end', () => {
        if (end) dest.end();
      });
      this.push(null);
      this.resume();
      readAll = true;
    } catch (err) {
      this.destroy(err as Error);
    } finally {
      // A stream that read everything still holds the slabs its destination has not written yet (a
      // slow client's last chunks): it counts among the readers until they are written, or until
      // `dest` closes (its socket gone, with whatever it held). Failed or destroyed, it leaves now.
      if (readAll && writing > 0 && !destFailed) {
        lastWritten = leave;
        dest.once('close', leave);
      } else {
        leave();
      }
    }
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
        const chunk = await this.#readChunk(Buffer.allocUnsafe(want), want);
        if (this.destroyed) return;
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
