import type { Readable } from 'node:stream';
import { SigilError } from '../errors.js';
import type { Digest } from '../oci/digest.js';
import { DigestCheck } from '../hash/checked-stream.js';
import type { HashPool } from '../hash/hash-pool.js';

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
 * Wraps an upstream body: `source` flows through the digest check (hash/checked-stream.ts: with
 * a digest, a mismatch errors before the consumer has the last chunk); a source error becomes the
 * stream's (mapped) error; destroying the result destroys the source.
 */
export function checkedBlobStream(source: Readable, opts: BlobStreamOptions): Readable {
  const out = new DigestCheck({
    ...(opts.digest !== undefined ? { digest: opts.digest } : {}),
    ...(opts.expectedLength !== undefined ? { expectedLength: opts.expectedLength } : {}),
    ...(opts.onBytes !== undefined ? { onBytes: opts.onBytes } : {}),
    ...(opts.hashes !== undefined ? { hashes: opts.hashes } : {}),
    mismatch: (got) =>
      new SigilError({
        code: 'DIGEST_MISMATCH',
        message: `${opts.describe}: the upstream's bytes hash to ${got}`,
        detail: { expected: opts.digest, got },
      }),
    wrongLength: (count) =>
      new SigilError({
        code: 'UPSTREAM_BAD_RESPONSE',
        message: `${opts.describe}: the upstream sent ${count} bytes, announced ${opts.expectedLength}`,
      }),
  });
  source.on('error', (err: unknown) => {
    out.destroy(opts.mapSourceError ? opts.mapSourceError(err) : (err as Error));
  });
  out.on('close', () => {
    if (!source.destroyed) source.destroy();
  });
  source.pipe(out);
  return out;
}
