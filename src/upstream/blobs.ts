import type { Logger } from 'pino';
import type { Metrics } from '../audit/metrics.js';
import { isSigilError } from '../errors.js';
import type { Digest } from '../oci/digest.js';
import type { HashPool } from '../hash/hash-pool.js';
import { checkDigest, checkRepository, contentLength } from './answers.js';
import { checkedBlobStream } from './blob-verify.js';
import type { Endpoint } from './call.js';
import { pullScope } from './challenge.js';
import { headerValue } from './error-map.js';
import { checkPartialAnswer } from './ranges.js';
import type { BlobRequest, BlobResponse } from '../oci/registry.js';
import { blobBuffersMade } from '../young-sweeps.js';

/** Blob answer headers passed on to clients; nothing else (no cookies, no storage headers). */
const SAFE_BLOB_HEADERS = ['content-type', 'content-length', 'content-range', 'accept-ranges', 'etag'] as const;

/** What streaming a blob needs from the client of one upstream. */
export interface BlobStreaming {
  readonly upstream: string;
  /** The upstream's verifyBlobDigests: hash whole blobs unless a request says otherwise. */
  readonly verifyDigests: boolean;
  readonly metrics: Metrics;
  readonly logger: Logger;
  /** Where blob bytes are hashed; absent: inline, on the event loop. */
  readonly hashes: HashPool | undefined;
}

/**
 * GET or HEAD /v2/<repo>/blobs/<digest>, streamed. Range is passed on; redirects are followed
 * (redirects.ts). An answer with the whole blob (a 200, or a 206 whose range is every byte) is
 * digest checked while it streams; a 206 that is not the range asked for is UPSTREAM_BAD_RESPONSE.
 * No deadline: a big blob streams on under the idle timeout.
 */
export function blobGet(repository: string, digest: Digest, req: BlobRequest, streaming: BlobStreaming): Endpoint<BlobResponse> {
  checkRepository(repository);
  checkDigest(digest);
  return {
    kind: 'blob',
    what: `blob ${digest} of ${repository}`,
    method: req.method,
    path: `/v2/${repository}/blobs/${digest}`,
    headers: req.range !== undefined ? { range: req.range } : {},
    scope: pullScope(repository),
    deadline: false,
    followRedirects: true,
    answers: [200, 206],
    notFound: 'BLOB_UNKNOWN',
    async answer(res, { http, describe, countError }) {
      // A 200 claims the whole blob; a 206 must be exactly the range asked for, and is the whole
      // blob when that range covers it: either way a whole blob is hashed below.
      let whole = res.status === 200;
      let expectedLength = contentLength(res.headers);
      if (res.status === 206) {
        try {
          ({ whole, length: expectedLength } = checkPartialAnswer(req.range, headerValue(res.headers, 'content-range'), expectedLength, describe));
        } catch (err) {
          await http.discard(res.body);
          throw err;
        }
      }
      const headers: Record<string, string> = {};
      for (const h of SAFE_BLOB_HEADERS) {
        const v = headerValue(res.headers, h);
        if (v !== undefined) headers[h] = v;
      }
      if (req.method === 'HEAD') {
        await http.discard(res.body);
        return { status: res.status, headers, body: null };
      }
      const bytes = streaming.metrics.bytesStreamed.labels(streaming.upstream, 'in');
      const body = checkedBlobStream(res.body, {
        // a part of the blob: nothing to hash it against
        digest: whole && (req.verifyDigest ?? streaming.verifyDigests) ? digest : undefined,
        expectedLength,
        onBytes: (n) => {
          bytes.inc(n);
          blobBuffersMade(n); // the socket's buffers, one per chunk
        },
        mapSourceError: (err) => http.map(err, res.url),
        ...(streaming.hashes !== undefined ? { hashes: streaming.hashes } : {}),
        describe,
      });
      body.once('error', (err) => {
        countError(err);
        // the client's answer is cut off: say why, against which upstream (a digest mismatch is a lie of the upstream's)
        const code = isSigilError(err) ? err.code : 'INTERNAL';
        streaming.logger.warn({ upstream: streaming.upstream, repository, digest, code, error: (err as Error).message }, 'blob stream failed');
      });
      return { status: res.status, headers, body };
    },
  };
}
