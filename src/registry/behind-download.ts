import { Readable, pipeline } from 'node:stream';
import type { Logger } from 'pino';
import { SigilError } from '../errors.js';
import { DigestCheck } from '../hash/checked-stream.js';
import type { HashPool } from '../hash/hash-pool.js';
import type { Digest } from '../oci/digest.js';
import type { Registry } from '../oci/registry.js';
import { ioErrorCode } from '../store/health.js';

/**
 * A request reading behind the store's download of a blob (`follower`, the store's stream of the
 * file being written). When the store fails under it (a disk fault: full, removed, an I/O error —
 * not the upstream's bytes, not a wrong digest), the rest comes from the upstream, from the first
 * byte this request has not had yet: a store fault degrades to pass-through, it does not cut
 * downloads off. The bytes are hashed on the way (hash/checked-stream.ts: the last chunk is held
 * back until they match): those before the fault came from the store's unfinished file, the rest
 * from another answer, so only the whole, checked, may complete.
 */
export function behindDownload(
  up: Registry,
  blob: { readonly repository: string; readonly digest: Digest; readonly size: number | undefined },
  follower: Readable,
  deps: { readonly logger: Logger; readonly hashes?: HashPool | undefined },
): Readable {
  const { repository, digest, size } = blob;
  const what = `upstream ${up.name}: blob ${digest} of ${repository}`;
  async function* resume(): AsyncGenerator<Buffer> {
    let delivered = 0;
    try {
      for await (const chunk of follower as AsyncIterable<Buffer>) {
        delivered += chunk.length;
        yield chunk;
      }
      return;
    } catch (err) {
      if (ioErrorCode(err) === undefined) throw err;
      deps.logger.warn({ upstream: up.name, repository, digest, delivered, err: String(err) }, 'store failed under a download: the rest comes from the upstream');
    }
    const res = await up.openBlob(repository, digest, delivered > 0 ? { method: 'GET', range: `bytes=${delivered}-` } : { method: 'GET' });
    // a 206 starts where it was asked to (upstream/ranges.ts); a 200 is the whole blob again
    let skip = res.status === 200 ? delivered : 0;
    for await (const chunk of res.body as AsyncIterable<Buffer>) {
      if (skip >= chunk.length) {
        skip -= chunk.length;
        continue;
      }
      yield skip > 0 ? chunk.subarray(skip) : chunk;
      skip = 0;
    }
  }
  const checked = new DigestCheck({
    digest,
    ...(size !== undefined ? { expectedLength: size } : {}),
    ...(deps.hashes !== undefined ? { hashes: deps.hashes } : {}),
    mismatch: (got) => new SigilError({ code: 'DIGEST_MISMATCH', message: `${what}: the bytes hash to ${got}`, detail: { expected: digest, got } }),
    wrongLength: (count) => new SigilError({ code: 'UPSTREAM_BAD_RESPONSE', message: `${what}: ${count} bytes, announced ${size}` }),
  });
  // bytes, not objects: an object-mode stream would read 16 chunks ahead of a slow client
  pipeline(Readable.from(resume(), { objectMode: false }), checked, () => {
    /* an error is the consumer's (pipeline destroyed `checked` with it) */
  });
  return checked;
}
