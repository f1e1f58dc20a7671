import { Transform } from 'node:stream';
import type { TransformCallback } from 'node:stream';
import { digestAlgorithm } from '../oci/digest.js';
import type { Digest } from '../oci/digest.js';
import { startHash } from './hash-pool.js';
import type { HashPool, StreamHash } from './hash-pool.js';

export interface DigestCheckOptions {
  /** Hash the bytes and fail unless they hash to this; absent: pass through (lengths still checked). */
  readonly digest?: Digest;
  /** Fail unless exactly this many bytes arrive. */
  readonly expectedLength?: number;
  /** Called with each chunk's size as it passes (metrics). */
  readonly onBytes?: (n: number) => void;
  /** Where the bytes are hashed (big blobs off the event loop); absent: inline. */
  readonly hashes?: HashPool;
  /** The error when the bytes hash to `got` instead of `digest` (a promise: the stream errors once it settles). */
  readonly mismatch: (got: Digest) => Error | Promise<Error>;
  /** The error when `count` bytes arrived (so far) instead of `expectedLength`. */
  readonly wrongLength: (count: number) => Error | Promise<Error>;
}

/**
 * A stream that checks a blob while it flows. With a digest it holds back one chunk, so that
 * when the bytes do not hash to the digest it errors before the consumer has the last chunk:
 * a consumer never receives a complete wrong blob. The one owner of that rule, for blobs from
 * an upstream (upstream/blob-verify.ts) and from the content store.
 */
export class DigestCheck extends Transform {
  readonly #opts: DigestCheckOptions;
  readonly #hash: StreamHash | undefined;
  #held: Buffer | undefined;
  #count = 0;

  constructor(opts: DigestCheckOptions) {
    super();
    this.#opts = opts;
    this.#hash = opts.digest !== undefined ? startHash(opts.hashes, digestAlgorithm(opts.digest), opts.expectedLength) : undefined;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.#count += chunk.length;
    this.#opts.onBytes?.(chunk.length);
    const expected = this.#opts.expectedLength;
    if (expected !== undefined && this.#count > expected) {
      fail(cb, this.#opts.wrongLength(this.#count));
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
      this.#held = undefined;
      fail(cb, this.#opts.wrongLength(this.#count));
      return;
    }
    const digest = this.#opts.digest;
    if (this.#hash === undefined || digest === undefined) {
      this.#release(cb);
      return;
    }
    this.#hash.digest().then((hex) => {
      const got = `${digestAlgorithm(digest)}:${hex}` as Digest;
      if (got === digest) {
        this.#release(cb);
        return;
      }
      this.#held = undefined;
      fail(cb, this.#opts.mismatch(got));
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
}

function fail(cb: TransformCallback, err: Error | Promise<Error>): void {
  if (err instanceof Error) cb(err);
  else err.then(cb, cb);
}
