import { Transform } from 'node:stream';
import type { Readable, TransformCallback } from 'node:stream';
import { SigilError } from '../errors.js';
import { digestAlgorithm } from '../oci/digest.js';
import type { Digest } from '../oci/digest.js';
import { startHash } from '../hash/hash-pool.js';
import type { HashPool, StreamHash } from '../hash/hash-pool.js';

export interface BlobStreamOptions {
  /** Hash the bytes and fail unless they hash to this (a whole-blob GET); absent: pass through. */
  readonly digest?: Digest;
  /** Fail unless exactly this many bytes arrive (the upstream's Content-Length). */
  readonly expectedLength?: number;
  /** Called with each chunk's size as it passes (metrics). */
  readonly onBytes?: (n: number) => void;
  /** Maps an error of the source (reset, idle timeout) to what the consumer sees. */
  readonly mapSourceError?: (err: unknown) => Error;
  /** For messages: "blob sha256:… of library/nginx from docker.io". */
  readonly describe: string;
  /** Where the bytes are hashed (big blobs off the event loop); absent: inline. */
  readonly hashes?: HashPool;
}

/**
 * A stream that checks a blob while it flows. With a digest it holds back one
 * chunk, so that when the bytes do not hash to the digest it errors before the
 * consumer has the last chunk: a client never receives a complete wrong blob.
 */
class BlobCheck extends Transform {
  readonly #opts: BlobStreamOptions;
  readonly #hash: StreamHash | undefined;
  #held: Buffer | undefined;
  #count = 0;

  constructor(opts: BlobStreamOptions) {
    super();
    this.#opts = opts;
    this.#hash = opts.digest !== undefined ? startHash(opts.hashes, digestAlgorithm(opts.digest), opts.expectedLength) : undefined;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.#count += chunk.length;
    this.#opts.onBytes?.(chunk.length);
    const expected = this.#opts.expectedLength;
    if (expected !== undefined && this.#count > expected) {
      cb(this.#lengthError());
      return;
    }
    if (this.#hash === undefined) {
      cb(null, chunk);
      return;
    }
    const previous = this.#held;
    this.#held = chunk;
    const room = this.#hash.update(chunk);
    if (room === undefined) cb(null, previous);
    else room.then(() => cb(null, previous), cb);
  }

  override _flush(cb: TransformCallback): void {
    const expected = this.#opts.expectedLength;
    if (expected !== undefined && this.#count !== expected) {
      cb(this.#lengthError());
      return;
    }
    const digest = this.#opts.digest;
    if (this.#hash === undefined || digest === undefined) {
      this.#release(cb);
      return;
    }
    this.#hash.digest().then((hex) => {
      const got = `${digestAlgorithm(digest)}:${hex}`;
      if (got === digest) {
        this.#release(cb);
        return;
      }
      this.#held = undefined;
      cb(
        new SigilError({
          code: 'DIGEST_MISMATCH',
          message: `${this.#opts.describe}: the upstream's bytes hash to ${got}`,
          detail: { expected: digest, got },
        }),
      );
    }, cb);
  }

  override _destroy(err: Error | null, cb: (error?: Error | null) => void): void {
    this.#held = undefined;
    this.#hash?.abort();
    cb(err);
  }

  /** The held-back last chunk goes out: the bytes are what was asked for. */
  #release(cb: TransformCallback): void {
    const last = this.#held;
    this.#held = undefined;
    cb(null, last);
  }

  #lengthError(): SigilError {
    return new SigilError({
      code: 'UPSTREAM_BAD_RESPONSE',
      message: `${this.#opts.describe}: the upstream sent ${this.#count} bytes, announced ${this.#opts.expectedLength}`,
    });
  }
}

/**
 * Wraps an upstream body: `source` flows through the check; a source error
 * becomes the stream's (mapped) error; destroying the result destroys the source.
 */
export function checkedBlobStream(source: Readable, opts: BlobStreamOptions): Readable {
  const out = new BlobCheck(opts);
  source.on('error', (err: unknown) => {
    out.destroy(opts.mapSourceError ? opts.mapSourceError(err) : (err as Error));
  });
  out.on('close', () => {
    if (!source.destroyed) source.destroy();
  });
  source.pipe(out);
  return out;
}
