import { lru } from '../lru.js';
import { Readable } from 'node:stream';
import type { Logger } from 'pino';
import type { Metrics } from '../audit/metrics.js';
import { isSigilError } from '../errors.js';
import type { HashPool } from '../hash/hash-pool.js';
import { digestOf, isDigest, type Digest } from '../oci/digest.js';
import type { BlobRequest, BlobResponse, FetchedManifest, Registry } from '../oci/registry.js';
import type { Bucket } from '../shared/bucket.js';
import { readCapped } from '../shared/read-capped.js';
import { checkedBlobStream } from '../upstream/blob-verify.js';
import { MANIFEST_MAX_BYTES } from '../upstream/limits.js';
import { resolveRange } from '../upstream/ranges.js';
import { Layer } from './layer.js';

/**
 * A blob whose object in the bucket was found not to be its digest (wrong bytes or size) is asked
 * below for this long: whoever swapped it must not make it unpullable (the bad object is deleted,
 * so the good bytes are replicated again once stored; this covers a swap that comes back).
 */
export const BUCKET_WRONG_OBJECT_TTL_MS = 10 * 60_000;
/** Blobs remembered as wrong in the bucket at most (a few bytes each). */
export const BUCKET_WRONG_OBJECTS_MAX = 10_000;
/**
 * A whole blob at most this big is read from the bucket and hashed before it is answered, so
 * that a wrong object (bytes changed, truncated, or caught mid-write by a store whose writes are
 * not atomic) is answered from below instead of failing the request: signature, attestation and
 * config blobs, which the verifier reads whole and whose failure would deny an image, are far
 * smaller. Bigger blobs stream, hashed as they go (holding them would cost their size per request).
 */
export const BUCKET_CHECKED_BEFORE_SERVING_BYTES = 1024 * 1024;

export interface SharedStoreOptions {
  readonly bucket: Pick<Bucket, 'head' | 'open' | 'getRecord' | 'delete'>;
  readonly logger: Logger;
  readonly metrics?: Metrics | undefined;
  /** Where whole blobs read from the bucket are hashed. */
  readonly hashes?: HashPool | undefined;
  /** Called with each object served from the bucket (the janitor evicts the least recently used: shared/bucket-use.ts). */
  readonly onServe?: ((digest: Digest) => void) | undefined;
}

/**
 * The shared bucket as the second level behind the local store (below writeThrough): a manifest
 * by digest, and a blob, come from the bucket when it holds the catalog's record binding it to
 * this repository (replicated by the process that stored it) and the object — a whole blob
 * recorded for another repository only, once the upstream answers a HEAD of it in this one;
 * else, and whenever the bucket is unavailable, from below. Nothing from the bucket is taken on
 * trust: a manifest's bytes must hash to its digest (else it is absent, counted); a whole blob
 * is hashed, even when the caller checks it too (the store's writer) — a small one before it is
 * answered (else it is answered from below), a big one as it streams, so that wrong bytes never
 * reach a client complete. A request marked `skipStore` (a stored blob
 * no passing manifest names) goes below untouched. Lookups are counted
 * (sigil_shared_store_lookups_total). An object's record without the object (the janitor
 * evicted it) is a miss: the request goes below, and the object returns to the bucket once the
 * local store commits it again.
 */
export class SharedStore extends Layer {
  readonly #o: SharedStoreOptions;
  /** Blobs whose object in the bucket is not their digest: asked below (BUCKET_WRONG_OBJECT_TTL_MS). */
  readonly #wrong = lru<Digest, true>(BUCKET_WRONG_OBJECTS_MAX, { ttl: BUCKET_WRONG_OBJECT_TTL_MS });

  constructor(below: Registry, opts: SharedStoreOptions) {
    super(below);
    this.#o = opts;
  }

  override async fetchManifest(repository: string, reference: string, opts?: { accept?: string }): Promise<FetchedManifest> {
    if (!isDigest(reference)) return this.below.fetchManifest(repository, reference, opts);
    const found = await this.#manifest(repository, reference);
    this.#count('manifest', typeof found === 'string' ? found : 'hit');
    if (typeof found === 'string') return this.below.fetchManifest(repository, reference, opts);
    this.#o.onServe?.(reference);
    return found;
  }

  override async openBlob(repository: string, digest: Digest, req: BlobRequest): Promise<BlobResponse> {
    if (req.skipStore || this.#wrong.has(digest)) return this.below.openBlob(repository, digest, req);
    const found = await this.#blob(repository, digest, req);
    this.#count('blob', typeof found === 'string' ? found : 'hit');
    if (typeof found === 'string') return this.below.openBlob(repository, digest, req);
    this.#o.onServe?.(digest);
    return found;
  }

  /** The manifest from the bucket, or why not. */
  async #manifest(repository: string, digest: Digest): Promise<FetchedManifest | 'miss' | 'unavailable' | 'mismatch'> {
    const { bucket } = this.#o;
    const rec = await bucket.getRecord({ kind: 'manifest', upstream: this.name, repository, digest });
    if (rec === undefined) return 'unavailable';
    const mediaType = typeof rec === 'object' && rec !== null ? (rec as { mediaType?: unknown }).mediaType : undefined;
    if (typeof mediaType !== 'string') return 'miss';
    const obj = await bucket.open(digest);
    if (obj === undefined) return 'unavailable';
    if (obj === null) return 'miss';
    const bytes = await readCapped(obj.body, Math.min(obj.size, MANIFEST_MAX_BYTES)).catch(() => undefined);
    if (bytes === undefined) return 'unavailable';
    if (digestOf(bytes, digest) !== digest) {
      this.#o.logger.warn({ upstream: this.name, repository, digest }, 'shared bucket: a manifest does not hash to its digest, taken as absent');
      return 'mismatch';
    }
    return { bytes, digest, mediaType };
  }

  /** The blob answer from the bucket, or why not. */
  async #blob(repository: string, digest: Digest, req: BlobRequest): Promise<BlobResponse | 'miss' | 'unavailable' | 'mismatch'> {
    const { bucket } = this.#o;
    const rec = await bucket.getRecord({ kind: 'blob', upstream: this.name, repository, digest });
    if (rec === undefined) return 'unavailable';
    const whole = req.method !== 'HEAD' && req.range === undefined;
    if (rec === null) {
      // Not recorded for this repository: the bucket may hold it for another (a base layer of
      // many images). A whole-blob GET is served from there once the upstream confirms that this
      // repository has the blob — a HEAD instead of the whole download, as the local store does
      // for a blob it holds for another repository (download.ts); the bytes are hashed as always.
      if (!whole) return 'miss';
      const held = await bucket.head(digest);
      if (held === undefined) return 'unavailable';
      if (held === null || !(await this.#belowHas(repository, digest))) return 'miss';
    }
    // A whole-blob GET is one request: the GET's own length, not a HEAD's that another write may have changed since.
    if (whole) return this.#wholeBlob(repository, digest, req.descriptorSize);
    const size = await bucket.head(digest);
    if (size === undefined) return 'unavailable';
    if (size === null || (size === 0 && digestOf(Buffer.alloc(0), digest) !== digest)) return 'miss'; // absent, or an empty object that cannot be this blob
    const range = req.range !== undefined ? resolveRange(req.range, size) : undefined;
    if (req.range !== undefined && range === undefined) return 'miss'; // not satisfiable here: the upstream answers it
    const headers = blobHeaders(size, range);
    const status = range ? 206 : 200;
    if (req.method === 'HEAD' || range === undefined) return { status, headers, body: null };
    const obj = await bucket.open(digest, range);
    if (obj === undefined) return 'unavailable';
    if (obj === null) return 'miss';
    if (obj.size !== size) {
      obj.body.destroy();
      return 'miss'; // the object changed between the head and the read
    }
    // A part is served as stored (as the upstream's parts are), a whole range hashed like a whole blob.
    const allOfIt = range.start === 0 && range.end === size - 1;
    return { status, headers, body: this.#checked(repository, digest, obj.body, range.end - range.start + 1, allOfIt) };
  }

  /** Does the layer below (the upstream) answer a HEAD of the blob in this repository? Any failure: no. */
  async #belowHas(repository: string, digest: Digest): Promise<boolean> {
    try {
      const r = await this.below.openBlob(repository, digest, { method: 'HEAD' });
      r.body?.destroy();
      return r.status === 200;
    } catch {
      return false;
    }
  }

  /** A whole blob from the bucket: a small one read and hashed first (else asked below), a big one hashed as it streams. */
  async #wholeBlob(repository: string, digest: Digest, descriptorSize: number | undefined): Promise<BlobResponse | 'miss' | 'unavailable' | 'mismatch'> {
    const obj = await this.#o.bucket.open(digest);
    if (obj === undefined) return 'unavailable';
    if (obj === null) return 'miss';
    if (descriptorSize !== undefined && obj.size !== descriptorSize) {
      // The caller would refuse these bytes (a signature blob longer than its descriptor denies the
      // image): asked below. Not taken as a wrong object: the descriptor, not the bucket, may lie.
      obj.body.destroy();
      this.#o.logger.warn({ upstream: this.name, repository, digest, size: obj.size, descriptorSize }, 'shared bucket: a blob is not the size its descriptor gives, asked below');
      return 'mismatch';
    }
    const headers = blobHeaders(obj.size);
    if (obj.size > BUCKET_CHECKED_BEFORE_SERVING_BYTES) {
      // Hashed even when the caller checks it too (the store's writer): a wrong object must be known here, to stop asking the bucket for it.
      return { status: 200, headers, body: this.#checked(repository, digest, obj.body, obj.size, true) };
    }
    const bytes = await readCapped(obj.body, BUCKET_CHECKED_BEFORE_SERVING_BYTES).catch(() => undefined);
    if (bytes === undefined) return 'unavailable';
    if (bytes.length !== obj.size || digestOf(bytes, digest) !== digest) {
      this.#o.logger.warn({ upstream: this.name, repository, digest, size: obj.size, got: bytes.length }, 'shared bucket: a blob is not its digest, asked below');
      await this.#wrongObject(digest); // (once per object: it is asked below from now on)
      return 'mismatch';
    }
    return { status: 200, headers, body: Readable.from([bytes]) };
  }

  /** The bucket's bytes, failing the stream (and forgetting the object) unless they are `length` long and, when `whole`, hash to `digest`. */
  #checked(repository: string, digest: Digest, source: Readable, length: number, whole: boolean): Readable {
    const body = checkedBlobStream(source, {
      ...(whole ? { digest } : {}),
      expectedLength: length,
      describe: `blob ${digest} of ${repository} from the shared bucket`,
      ...(this.#o.hashes !== undefined ? { hashes: this.#o.hashes } : {}),
    });
    body.once('error', (err) => {
      const code = isSigilError(err) ? err.code : 'INTERNAL';
      // the bytes hash to something else, or are not the size the bucket gave: the object is wrong
      if (code === 'DIGEST_MISMATCH' || code === 'UPSTREAM_BAD_RESPONSE') void this.#wrongObject(digest);
      if (code === 'DIGEST_MISMATCH') this.#count('blob', 'mismatch');
      this.#o.logger.warn({ upstream: this.name, repository, digest, code, error: (err as Error).message }, 'shared bucket: blob stream failed');
    });
    return body;
  }

  /** The bucket's object for `digest` is not it: asked below from now on, and deleted (best effort) so that a good copy replaces it. */
  async #wrongObject(digest: Digest): Promise<void> {
    this.#wrong.set(digest, true);
    await this.#o.bucket.delete(digest).catch(() => {});
  }

  #count(kind: 'manifest' | 'blob', result: string): void {
    this.#o.metrics?.sharedStoreLookups.inc({ kind, result });
  }
}

/** The headers of a blob answer from the bucket: the whole of `size` bytes, or `range` of them. */
function blobHeaders(size: number, range?: { start: number; end: number }): Record<string, string> {
  const base = { 'content-type': 'application/octet-stream', 'accept-ranges': 'bytes' };
  return range
    ? { ...base, 'content-length': String(range.end - range.start + 1), 'content-range': `bytes ${range.start}-${range.end}/${size}` }
    : { ...base, 'content-length': String(size) };
}

/** The shared store layer, for compose.ts. */
export const sharedStore =
  (opts: SharedStoreOptions) =>
  (below: Registry): Registry =>
    new SharedStore(below, opts);
