import { createHash, type Hash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import { digestAlgorithm, type Digest } from '../oci/digest.js';

/**
 * The bytes on their way into the bucket, hashed and counted: it ends only when exactly `size`
 * bytes hashing to `digest` went through, and errors otherwise — past `size` at once, at the end
 * on a short body or another digest. The upload reads it to its end before it completes (its
 * last part, or its single PutObject, is sent only after the end), so a body that is not the
 * object never completes one. `refused` says why it errored; `sourceFailed` that the bytes'
 * source failed (not the bucket's fault, not the data's).
 */
export class UploadTally extends Transform {
  readonly #digest: Digest;
  readonly #size: number;
  readonly #hash: Hash;
  #count = 0;
  refused: string | undefined;
  sourceFailed = false;

  constructor(digest: Digest, size: number) {
    super();
    this.#digest = digest;
    this.#size = size;
    this.#hash = createHash(digestAlgorithm(digest));
    // the upload reads this stream and reports its error; an error before it reads must not go unhandled
    this.on('error', () => {});
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.#count += chunk.length;
    if (this.#count > this.#size) {
      cb(this.#refuse(`more than the ${this.#size} bytes announced`));
      return;
    }
    this.#hash.update(chunk);
    cb(null, chunk);
  }

  override _flush(cb: TransformCallback): void {
    if (this.#count !== this.#size) {
      cb(this.#refuse(`${this.#count} bytes, announced ${this.#size}`));
      return;
    }
    const got = `${digestAlgorithm(this.#digest)}:${this.#hash.digest('hex')}`;
    cb(got === this.#digest ? null : this.#refuse(`the bytes hash to ${got}`));
  }

  /** The bytes' source failed: the tally errors with its error. */
  sourceError(err: Error): void {
    this.sourceFailed = true;
    this.destroy(err);
  }

  #refuse(reason: string): Error {
    this.refused = reason;
    return new Error(`upload of ${this.#digest} refused: ${reason}`);
  }
}
