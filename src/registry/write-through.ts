import type { Logger } from 'pino';
import type { HashPool } from '../hash/hash-pool.js';
import type { Digest } from '../oci/digest.js';
import type { BlobRequest, BlobResponse, Registry } from '../oci/registry.js';
import type { StoreAdmission } from './admission.js';
import { behindDownload } from './behind-download.js';
import { startDownload, type Download, type DownloadOf } from './download.js';
import { Layer } from './layer.js';
import { StoredRegistry, type StoreParts } from './offline.js';

/** Downloads into the store at once, per upstream; past this, blobs pass through unstored. */
export const MAX_STORE_DOWNLOADS = 16;

export interface WriteThroughOptions {
  readonly store: StoreParts;
  /** Which blobs may be stored, and held to what size (given here, once). */
  readonly admission: StoreAdmission;
  readonly logger: Logger;
  /** Where the bytes read behind a download are hashed. */
  readonly hashes?: HashPool | undefined;
}

/**
 * Store write-through of blobs: a whole-blob GET that admission lets into the store starts one
 * download per (repository, digest), and every request for it, the first included, reads behind
 * that download — so no client holds it to its own speed and nothing is buffered whole. A blob
 * not admitted, a range, a HEAD, a store that cannot write now or has no room, or more than
 * MAX_STORE_DOWNLOADS at once: the blob passes through from below, checked against its digest
 * as always. (The store read layer above answers blobs stored already.)
 */
export class WriteThrough extends Layer {
  readonly #store: StoreParts;
  readonly #stored: StoredRegistry;
  readonly #admission: StoreAdmission;
  readonly #log: Logger;
  readonly #hashes: HashPool | undefined;
  /** Downloads into the store by (repository, digest), until the store has committed (or failed). */
  readonly #downloads = new Map<string, Promise<Download>>();

  constructor(below: Registry, opts: WriteThroughOptions) {
    super(below);
    this.#store = opts.store;
    this.#stored = new StoredRegistry(below.name, opts.store);
    this.#admission = opts.admission;
    this.#log = opts.logger;
    this.#hashes = opts.hashes;
  }

  override async openBlob(repository: string, digest: Digest, req: BlobRequest): Promise<BlobResponse> {
    const admitted = req.method === 'GET' && req.range === undefined && !req.skipStore ? this.#admission.blob(this.name, repository, digest) : false;
    if (admitted === false) return this.below.openBlob(repository, digest, req);
    const key = `${repository}@${digest}`;
    let download = this.#downloads.get(key);
    if (!download) {
      // A store that cannot write now (disk full, read-only, removed: it retries by itself) or has
      // no room for this blob: the blob passes through, checked against its digest as always.
      if (this.#downloads.size >= MAX_STORE_DOWNLOADS || !(await this.#store.content.admitWrite(admitted.size))) {
        return this.below.openBlob(repository, digest, req);
      }
      // (another request may have started it meanwhile)
      // (a blob no passing manifest names yet: the caller's descriptor, not verified, only steers where it is read from)
      download = this.#downloads.get(key) ?? this.#start(key, { repository, digest, admittedSize: admitted.size, descriptorSize: req.descriptorSize, namedBy: admitted.manifest });
    }
    const d = await download;
    if (d.kind === 'stored') return (await this.#stored.storedBlob(repository, digest, req)) ?? this.below.openBlob(repository, digest, req);
    if (d.kind === 'passthrough') return this.below.openBlob(repository, digest, req);
    const w = this.#store.content.beginWrite(digest, d.size);
    if (w.kind === 'writer') {
      // Committed and evicted in between: nothing to follow; fall back to the upstream.
      w.writer.destroy(new Error('not the download owner'));
      return this.below.openBlob(repository, digest, req);
    }
    const headers: Record<string, string> = { 'content-type': 'application/octet-stream' };
    if (d.size !== undefined) headers['content-length'] = String(d.size);
    const body = behindDownload(this.below, { repository, digest, size: d.size }, w.stream, { logger: this.#log, hashes: this.#hashes });
    return { status: 200, headers, body };
  }

  /** Starts the download of `key` and registers it until the object is committed (or failed). */
  #start(key: string, blob: DownloadOf): Promise<Download> {
    const started = startDownload(this.below, this.#store, blob, this.#log);
    const download = started.then((d) => d.download);
    this.#downloads.set(key, download);
    // Until the object is committed, later requests join this download instead of starting one.
    started.then(
      ({ done }) => done.finally(() => this.#downloads.delete(key)),
      () => this.#downloads.delete(key),
    );
    return download;
  }
}

/** The write-through layer, for compose.ts. */
export const writeThrough =
  (opts: WriteThroughOptions) =>
  (below: Registry): Registry =>
    new WriteThrough(below, opts);
