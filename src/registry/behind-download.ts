import { Readable, pipeline } from 'node:stream';
import type { Logger } from 'pino';
import { SigilError } from '../errors.js';
import { DigestCheck } from '../hash/checked-stream.js';
import type { HashPool } from '../hash/hash-pool.js';
import type { Digest } from '../oci/digest.js';
import type { Registry } from '../oci/registry.js';
import { FollowerStream } from '../store/follower.js';
import { ioErrorCode } from '../store/health.js';

/**
 * What a reader behind a download buffers for its client (beyond the store's own follower
 * buffer): one upstream-sized chunk, so a stream stays near 1 MiB with its socket's.
 */
const RELAY_HIGH_WATER_BYTES = 64 * 1024;

/**
 * A request reading behind the store's download of a blob (`follower`, the store's stream of the
 * file being written). The store's writer hashes the download once: its follower holds the last
 * byte back until that hash matched and fails when it did not (and, once it reads the file back
 * rather than the writer's chunks in memory, hashes what it delivers itself: store/follower.ts),
 * so the bytes pass here unhashed.
 * When the store fails under it (a disk fault: full, removed, an I/O error — not the upstream's
 * bytes, not a wrong digest), the rest comes from the upstream, from the first byte this request
 * has not had yet: a store fault degrades to pass-through, it does not cut downloads off. That is
 * another answer than the one the writer hashed, so from then on the whole is checked here: the
 * bytes delivered, read again from the store's file, then the rest, the last chunk held back until
 * they match (hash/checked-stream.ts); a file that cannot be read again, or that reads other than
 * what the follower delivered from it (store/follower.ts readAgain), cuts the answer off.
 * A follower that is not the live writer's (the object was committed meanwhile) is checked here
 * as it streams, the whole of it, and after a fault only the rest is asked for.
 */
export function behindDownload(
  up: Registry,
  blob: { readonly repository: string; readonly digest: Digest; readonly size: number | undefined },
  follower: Readable,
  deps: { readonly logger: Logger; readonly hashes?: HashPool | undefined },
): Readable {
  const { repository, digest, size } = blob;
  const what = `upstream ${up.name}: blob ${digest} of ${repository}`;
  const live = follower instanceof FollowerStream ? follower : undefined;
  const dropFile = live?.keepFile();
  const check = (): DigestCheck =>
    new DigestCheck({
      digest,
      ...(size !== undefined ? { expectedLength: size } : {}),
      ...(deps.hashes !== undefined ? { hashes: deps.hashes } : {}),
      mismatch: (got) => new SigilError({ code: 'DIGEST_MISMATCH', message: `${what}: the bytes hash to ${got}`, detail: { expected: digest, got } }),
      wrongLength: (count) => new SigilError({ code: 'UPSTREAM_BAD_RESPONSE', message: `${what}: ${count} bytes, announced ${size}` }),
    });

  /** The upstream's bytes from `from` on (a 206 starts there, upstream/ranges.ts; a 200 is the whole blob again). */
  async function* upstreamFrom(from: number): AsyncGenerator<Buffer> {
    const res = await up.openBlob(repository, digest, from > 0 ? { method: 'GET', range: `bytes=${from}-` } : { method: 'GET' });
    yield* skipped(res.body as AsyncIterable<Buffer>, res.status === 200 ? from : 0);
  }

  /** After a fault at `delivered`: the rest, checked together with what was delivered, read again. */
  async function* checkedRest(delivered: number): AsyncGenerator<Buffer> {
    async function* whole(): AsyncGenerator<Buffer> {
      yield* live!.readAgain(delivered);
      yield* upstreamFrom(delivered);
    }
    const checked = check();
    pipeline(Readable.from(whole(), { objectMode: false }), checked, () => {
      /* an error is the iterator's below */
    });
    yield* skipped(checked, delivered);
  }

  // Chunks are relayed as they come ('data'), not through an async iterator: a paused stream's
  // read() joins everything it buffered into one new buffer, a copy (and garbage) per chunk.
  let delivered = 0;
  let current: Readable | undefined;
  let rest: Readable | undefined;
  const body = new Readable({
    highWaterMark: RELAY_HIGH_WATER_BYTES,
    // nothing is read (and no error can surface) before the client reads
    read: () => (current === undefined ? start() : void current.resume()),
  });
  const relay = (src: Readable, failed: (err: Error) => void): void => {
    current = src;
    src.on('data', (chunk: Buffer) => {
      delivered += chunk.length;
      if (!body.push(chunk)) src.pause();
    });
    src.once('end', () => body.push(null));
    src.once('error', failed);
  };
  const start = (): void => relay(follower, (err) => {
    if (body.destroyed) return;
    if (ioErrorCode(err) === undefined) {
      body.destroy(err);
      return;
    }
    deps.logger.warn({ upstream: up.name, repository, digest, delivered, err: String(err) }, 'store failed under a download: the rest comes from the upstream');
    // bytes, not objects: an object-mode stream would read 16 chunks ahead of a slow client
    rest = Readable.from(live !== undefined ? checkedRest(delivered) : upstreamFrom(delivered), { objectMode: false });
    relay(rest, (e) => body.destroy(e));
  });

  let out: Readable = body;
  if (live === undefined) {
    // not the live writer's stream (the object was committed meanwhile): checked whole, as it streams
    out = check();
    pipeline(body, out as DigestCheck, () => {
      /* an error is the consumer's (pipeline destroyed `out` with it) */
    });
  }
  // however it ends: the store's stream, the upstream's and the kept file go
  out.once('close', () => {
    follower.destroy();
    rest?.destroy();
    dropFile?.();
  });
  return out;
}

/** `source` without its first `skip` bytes. */
async function* skipped(source: AsyncIterable<Buffer>, skip: number): AsyncGenerator<Buffer> {
  for await (const chunk of source) {
    if (skip >= chunk.length) {
      skip -= chunk.length;
      continue;
    }
    yield skip > 0 ? chunk.subarray(skip) : chunk;
    skip = 0;
  }
}
