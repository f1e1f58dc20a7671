import type { Metrics } from '../audit/metrics.js';
import type { Digest } from '../oci/digest.js';
import type { BlobRequest, BlobResponse, Registry } from '../oci/registry.js';
import type { Bucket } from '../shared/bucket.js';
import { Layer } from './layer.js';

/**
 * How long a presigned URL of a redirect lives: the client follows a 307 at once, so a minute
 * is ample, and a URL that leaks (a proxy's log) is soon useless.
 */
export const REDIRECT_TTL_SECONDS = 60;

export interface SharedRedirectOptions {
  readonly bucket: Pick<Bucket, 'head' | 'getRecord' | 'presign'>;
  readonly metrics?: Metrics | undefined;
  /** Called with each object a redirect sends a client to (the janitor evicts the least recently used: shared/bucket-use.ts). */
  readonly onServe?: ((digest: Digest) => void) | undefined;
}

/**
 * `cache.shared.s3.redirect`: a whole-blob GET of a blob the shared bucket holds for this
 * repository (its `blob` record and the object) is answered with a 307 to a presigned URL of the
 * object for REDIRECT_TTL_SECONDS, so that the bytes go from the bucket to the client directly.
 * The bucket holds only objects that hashed to their digest on the way in, and the client checks
 * the digest it asked for. Placed above writeThrough (a redirected blob is not stored locally)
 * and below storeRead (a blob stored locally is served from here). Everything else goes below:
 * a HEAD, a range, a request marked `skipStore` (no passing manifest names the stored blob), one
 * whose bytes must be the ones checked here (`verifyDigest` set: signature blobs, the store's
 * writer), and any blob while the bucket is unavailable. Never offline (the offline stack is the
 * store alone).
 */
export class SharedRedirect extends Layer {
  readonly #o: SharedRedirectOptions;

  constructor(below: Registry, opts: SharedRedirectOptions) {
    super(below);
    this.#o = opts;
  }

  override async openBlob(repository: string, digest: Digest, req: BlobRequest): Promise<BlobResponse> {
    if (req.method !== 'GET' || req.range !== undefined || req.skipStore || req.verifyDigest !== undefined) return this.below.openBlob(repository, digest, req);
    const location = await this.#presigned(repository, digest);
    if (location === undefined) return this.below.openBlob(repository, digest, req);
    this.#o.metrics?.sharedStoreLookups.inc({ kind: 'blob', result: 'redirect' });
    this.#o.onServe?.(digest);
    return { status: 307, headers: { location }, body: null };
  }

  async #presigned(repository: string, digest: Digest): Promise<string | undefined> {
    const { bucket } = this.#o;
    const rec = await bucket.getRecord({ kind: 'blob', upstream: this.name, repository, digest });
    if (rec === null || rec === undefined) return undefined;
    const size = await bucket.head(digest);
    if (size === null || size === undefined) return undefined;
    return bucket.presign(digest, REDIRECT_TTL_SECONDS);
  }
}

/** The redirect layer, for compose.ts. */
export const sharedRedirect =
  (opts: SharedRedirectOptions) =>
  (below: Registry): Registry =>
    new SharedRedirect(below, opts);
