import { SigilError } from '../errors.js';
import { isDigest, type Digest } from '../oci/digest.js';
import { MT } from '../oci/media-types.js';
import type { Catalog } from '../store/catalog.js';
import type { ContentStore } from '../store/content-store.js';
import { resolveRange } from '../upstream/ranges.js';
import type { BlobRequest, BlobResponse, FetchedManifest, ReferrersAnswer, TagList, UpstreamRegistry } from '../upstream/types.js';

/**
 * One upstream's content as the content store holds it, read without contacting anything:
 * `sigil serve --offline`, and the fallback when an upstream fails (stale-if-error). Only what
 * the catalog records for this repository is served.
 */
export class StoredRegistry implements UpstreamRegistry {
  readonly name: string;
  readonly #catalog: Catalog;
  readonly #content: ContentStore;

  constructor(name: string, store: { readonly content: ContentStore; readonly catalog: Catalog }) {
    this.name = name;
    this.#catalog = store.catalog;
    this.#content = store.content;
  }

  async fetchManifest(repository: string, reference: string): Promise<FetchedManifest> {
    let digest: Digest;
    if (isDigest(reference)) digest = reference;
    else {
      const tag = await this.#catalog.getTag(this.name, repository, reference);
      if (!tag) throw this.#missing(`manifest ${repository}:${reference}`, 'MANIFEST_UNKNOWN');
      digest = tag.value.digest;
    }
    const m = await this.#catalog.getManifest(this.name, repository, digest);
    if (!m) throw this.#missing(`manifest ${repository}@${digest}`, 'MANIFEST_UNKNOWN');
    return { bytes: m.bytes, digest, mediaType: m.mediaType, stale: true };
  }

  async openBlob(repository: string, digest: Digest, req: BlobRequest): Promise<BlobResponse> {
    const store = this.#content;
    const stat = (await this.#catalog.hasBlob(this.name, repository, digest)) ? await store.stat(digest) : null;
    if (!stat) throw this.#missing(`blob ${digest} of ${repository}`, 'BLOB_UNKNOWN');
    const size = stat.size;
    const base = { 'content-type': 'application/octet-stream', 'accept-ranges': 'bytes' };
    const range = req.range !== undefined ? resolveRange(req.range, size) : undefined;
    if (req.range !== undefined && range === undefined) {
      throw new SigilError({ code: 'RANGE_INVALID', message: `range ${req.range} not satisfiable for ${size} bytes`, headers: { 'content-range': `bytes */${size}` } });
    }
    const headers: Record<string, string> = range
      ? { ...base, 'content-length': String(range.end - range.start + 1), 'content-range': `bytes ${range.start}-${range.end}/${size}` }
      : { ...base, 'content-length': String(size) };
    const status = range ? 206 : 200;
    if (req.method === 'HEAD') return { status, headers, body: null };
    // A whole blob (or a range that is all of it) is checked against its digest (a damaged one is
    // absent when found before this returns, else cut off before its last chunk); a part is served as stored.
    const body = await store.openRead(digest, range);
    if (!body) throw this.#missing(`blob ${digest} of ${repository}`, 'BLOB_UNKNOWN');
    return { status, headers, body };
  }

  async listTags(repository: string): Promise<TagList & { upstreamPaginated: boolean }> {
    const tags = await this.#catalog.listTags(this.name, repository);
    if (tags.length === 0) throw this.#missing(`repository ${repository}`, 'NAME_UNKNOWN');
    return { name: repository, tags, upstreamPaginated: false, stale: true };
  }

  async referrers(repository: string, digest: Digest): Promise<ReferrersAnswer> {
    const manifests = await this.#catalog.getReferrers(this.name, repository, digest);
    // Recorded from an upstream without the API: the referrers tag, if stored, answers instead.
    if (manifests === null) return { kind: 'unsupported' };
    return { kind: 'api', body: Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MT.OCI_INDEX, manifests })), contentType: MT.OCI_INDEX, stale: true };
  }

  async ping(): Promise<void> {}

  async close(): Promise<void> {}

  #missing(what: string, code: 'MANIFEST_UNKNOWN' | 'BLOB_UNKNOWN' | 'NAME_UNKNOWN'): SigilError {
    return new SigilError({ code, message: `${this.name}: ${what} is not in the content store` });
  }
}
