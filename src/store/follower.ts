import { createHash, type Hash } from 'node:crypto';
import type { FileHandle } from 'node:fs/promises';
import { PassThrough, Readable } from 'node:stream';
import { SigilError } from '../errors.js';
import { digestAlgorithm, type Digest } from '../oci/digest.js';
import { FOLLOW_BUFFER_BYTES, FOLLOW_CHUNK_BYTES, FOLLOW_HOLD_BACK_BYTES } from './limits.js';
import { blobBuffersMade } from '../young-sweeps.js';

export type FollowState =
  | { readonly kind: 'writing'; readonly written: number }
  /** Every byte is written and hashes to the digest; the fsync and rename are under way. */
  | { readonly kind: 'verified'; readonly size: number }
  | { readonly kind: 'committed'; readonly size: number }
  | { readonly kind: 'failed'; readonly error: SigilError };

/** What a follower needs of the write it follows. */
export interface Followed {
  state(): FollowState;
  /** The temp file's descriptor (shared; positional reads only). */
  handle(): Promise<FileHandle>;
  /** Resolves at the next chunk written, commit or failure. */
  progress(): Promise<void>;
  /**
   * Up to `max` bytes from `pos` out of the chunks the writer wrote last, still in memory (the
   * upstream's own buffers, never reused): a follower that keeps up is served without reading
   * the file back. Undefined: `pos` is not among them (read the file).
   */
  recent(pos: number, max: number): Buffer | undefined;
  /** One more holder of the descriptor (released with `release`). */
  retain(): void;
  /** The follower is done with the descriptor. */
  release(): void;
}

/**
 * Reads behind a writer: delivers what is written, then waits for the writer's next
 * chunk. Memory is one chunk at a time, whatever the blob's size; a follower that keeps
 * up takes the writer's last chunks from memory, one that lags reads the file. It stays FOLLOW_HOLD_BACK_BYTES behind until the digest
 * checks, then delivers the rest and ends (the fsync and rename need not be over: the
 * bytes are right either way); it errors when the writer fails before that.
 *
 * The digest the writer checks is of the bytes it was given: chunks taken from memory are those
 * very bytes. Bytes read back from the temp file may have been changed since by someone who can
 * write the store's directory, so from its first read of the file on, a follower checks itself:
 * it hashes the file's bytes before that point (read again, not delivered) and every byte it
 * delivers after, and releases its last chunk only when that hash is the digest (else it fails
 * with DIGEST_MISMATCH). A follower that keeps up never reads the file and never hashes.
 */
export class FollowerStream extends Readable {
  readonly #followed: Followed;
  readonly #digest: Digest;
  /** From the first read of the file on: the hash of the bytes up to #pos (see the class comment). */
  #check: Hash | undefined;
  #pos = 0;
  #pumping = false;
  #released = false;
  #kept = false;

  constructor(followed: Followed, digest: Digest) {
    super({ highWaterMark: FOLLOW_BUFFER_BYTES });
    this.#followed = followed;
    this.#digest = digest;
  }

  override _read(): void {
    void this.#pump();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.#release();
    cb(err);
  }

  #release(): void {
    if (this.#released) return;
    this.#released = true;
    this.#followed.release();
  }

  /**
   * Keeps the temp file's descriptor open after this stream ends or fails, for `readAgain`,
   * until the returned function is called.
   */
  keepFile(): () => void {
    if (this.#kept) throw new SigilError({ code: 'INTERNAL', message: 'content store: follower file kept twice' });
    this.#kept = true;
    this.#followed.retain();
    let dropped = false;
    return () => {
      if (dropped) return;
      dropped = true;
      this.#followed.release();
    };
  }

  /**
   * The file's first `end` bytes, read again (after this stream failed on a fault: what it
   * delivered, to be hashed with the rest from elsewhere). Only between `keepFile` and its release.
   * Once this stream read the file back, the file may have changed since, so what it reads again
   * need not be what it delivered: it reads again as far as it hashed, and fails with
   * DIGEST_MISMATCH unless that hashes the same (before its last chunk is read, so after the
   * chunks up to `end`, which a consumer checking the whole has not finished with).
   */
  async *readAgain(end: number): AsyncGenerator<Buffer> {
    if (!this.#kept) throw new SigilError({ code: 'INTERNAL', message: 'content store: follower file not kept' });
    const fh = await this.#followed.handle();
    const hashed = this.#check?.copy();
    const to = hashed === undefined ? end : Math.max(end, this.#pos);
    const again = hashed === undefined ? undefined : createHash(digestAlgorithm(this.#digest));
    for (let pos = 0; pos < to; ) {
      const want = Math.min(to - pos, FOLLOW_CHUNK_BYTES);
      const buf = Buffer.allocUnsafe(want);
      const { bytesRead } = await fh.read(buf, 0, want, pos);
      if (bytesRead === 0) throw new SigilError({ code: 'INTERNAL', message: `content store: the file ends at ${pos} bytes, ${to} were delivered` });
      const chunk = bytesRead === want ? buf : buf.subarray(0, bytesRead);
      again?.update(chunk);
      if (pos < end) yield chunk.subarray(0, end - pos);
      pos += bytesRead;
    }
    if (hashed !== undefined && again!.digest('hex') !== hashed.digest('hex')) {
      throw new SigilError({
        code: 'DIGEST_MISMATCH',
        message: `content store: the file of ${this.#digest} read again is not what was delivered from it`,
        detail: { expected: this.#digest },
      });
    }
  }

  /** A hash of the file's first `end` bytes, read again (what this stream delivered from memory before it). */
  async #hashFileTo(fh: FileHandle, end: number): Promise<Hash> {
    const h = createHash(digestAlgorithm(this.#digest));
    const buf = Buffer.allocUnsafe(Math.min(Math.max(end, 1), FOLLOW_CHUNK_BYTES));
    for (let pos = 0; pos < end; ) {
      const { bytesRead } = await fh.read(buf, 0, Math.min(end - pos, buf.length), pos);
      if (bytesRead === 0) throw new SigilError({ code: 'INTERNAL', message: `content store: the file ends at ${pos} bytes, ${end} were delivered` });
      h.update(buf.subarray(0, bytesRead));
      pos += bytesRead;
    }
    return h;
  }

  /** The whole is hashed, before its last chunk is released: it must be the digest. */
  #verify(): void {
    const got = `${digestAlgorithm(this.#digest)}:${this.#check!.digest('hex')}`;
    if (got !== this.#digest) {
      throw new SigilError({
        code: 'DIGEST_MISMATCH',
        message: `content store: the bytes of ${this.#digest} read back from its file hash to ${got}`,
        detail: { expected: this.#digest, got },
      });
    }
  }

  async #pump(): Promise<void> {
    if (this.#pumping) return;
    this.#pumping = true;
    try {
      for (;;) {
        if (this.destroyed) return;
        const st = this.#followed.state();
        if (st.kind === 'failed') {
          this.destroy(st.error);
          return;
        }
        const complete = st.kind === 'verified' || st.kind === 'committed';
        const limit = complete ? st.size : st.written - FOLLOW_HOLD_BACK_BYTES;
        if (this.#pos < limit) {
          const want = Math.min(limit - this.#pos, FOLLOW_CHUNK_BYTES);
          let chunk = this.#followed.recent(this.#pos, want);
          if (chunk === undefined) {
            const fh = await this.#followed.handle();
            if (this.#check === undefined) this.#check = await this.#hashFileTo(fh, this.#pos);
            const buf = Buffer.allocUnsafe(want);
            const { bytesRead } = await fh.read(buf, 0, want, this.#pos);
            blobBuffersMade(bytesRead);
            if (this.destroyed) return;
            if (bytesRead === 0) {
              throw new SigilError({ code: 'INTERNAL', message: `content store: follower found ${this.#pos} bytes, expected more` });
            }
            chunk = bytesRead === want ? buf : buf.subarray(0, bytesRead);
          }
          this.#pos += chunk.length;
          if (this.#check !== undefined) {
            this.#check.update(chunk);
            if (complete && this.#pos === st.size) this.#verify();
          }
          if (!this.push(chunk)) return;
          continue;
        }
        if (complete) {
          this.push(null);
          this.#release(); // the descriptor is not needed for 'end' to be read
          return;
        }
        await this.#followed.progress();
      }
    } catch (err) {
      // When the write failed meanwhile, its error is the one that explains this one.
      const st = this.#followed.state();
      this.destroy(st.kind === 'failed' ? st.error : (err as Error));
    } finally {
      this.#pumping = false;
    }
  }
}

/** A stream available at once whose source is opened later (a follower that starts after the commit). */
export function streamOf(openSource: () => Promise<Readable | null>, missing: () => Error): Readable {
  const out = new PassThrough();
  openSource().then(
    (src) => {
      if (!src) {
        out.destroy(missing());
        return;
      }
      if (out.destroyed) {
        src.destroy(); // the reader left before the file was open: close it now, not at GC
        return;
      }
      src.on('error', (err) => out.destroy(err));
      out.on('close', () => src.destroy());
      src.pipe(out);
    },
    (err: unknown) => out.destroy(err as Error),
  );
  return out;
}
