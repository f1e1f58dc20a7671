import { SigilError, isSigilError } from '../errors.js';
import { isDigest, referrersTag, type Digest } from '../oci/digest.js';
import { MT } from '../oci/media-types.js';
import type { BlobRequest, BlobResponse, FetchedManifest, ReferrersAnswer, Registry, ResolvedTag, TagList } from '../oci/registry.js';
import type { Catalog } from '../store/catalog.js';
import type { ContentStore } from '../store/content-store.js';
import { resolveRange } from '../upstream/ranges.js';

/** The content store and what it records about the images in it. */
export interface StoreParts {
  readonly content: ContentStore;
  readonly catalog: Catalog;
}

/**
 * One upstream's content as the content store holds it, read without contacting anything:
 * `sigil serve --offline`, and the answers of stale-if-error and of the store read layer. Only
 * what the catalog records for this repository is served; every manifest is marked stale.
 */
export class StoredRegistry implements Registry {
  readonly name: string;
  readonly #content: ContentStore;
  readonly #catalog: Catalog;

  constructor(name: string, store: StoreParts) {
    this.name = name;
    this.#content = store.content;
    this.#catalog = store.catalog;
  }

  async fetchManifest(repository: string, reference: string): Promise<FetchedManifest> {
    const digest = isDigest(reference) ? reference : (await this.resolveTag(repository, reference)).digest;
    const m = await this.#catalog.getManifest(this.name, repository, digest);
    if (!m) throw this.#missing(`manifest ${repository}@${digest}`, 'MANIFEST_UNKNOWN');
    return { bytes: m.bytes, digest, mediaType: m.mediaType, stale: true };
  }

  async resolveTag(repository: string, tag: string): Promise<ResolvedTag> {
    const rec = await this.#catalog.getTag(this.name, repository, tag);
    if (!rec) throw this.#missing(`manifest ${repository}:${tag}`, 'MANIFEST_UNKNOWN');
    return { digest: rec.value.digest, mediaType: rec.value.mediaType };
  }

  async openBlob(repository: string, digest: Digest, req: BlobRequest): Promise<BlobResponse> {
    const stat = (await this.#catalog.hasBlob(this.name, repository, digest)) ? await this.#content.stat(digest) : null;
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
    const body = await this.#content.openRead(digest, range);
    if (!body) throw this.#missing(`blob ${digest} of ${repository}`, 'BLOB_UNKNOWN');
    return { status, headers, body };
  }

  /**
   * The blob when the store holds it for this repository and can read it (an object that is
   * unreadable, or found damaged before anything was served, is absent); else null.
   */
  async storedBlob(repository: string, digest: Digest, req: BlobRequest): Promise<BlobResponse | null> {
    try {
      return await this.openBlob(repository, digest, req);
    } catch (e) {
      if (isSigilError(e) && e.code === 'BLOB_UNKNOWN') return null;
      throw e;
    }
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

  /**
   * The stored referrers of `digest`: the recorded list, or — recorded from an upstream without
   * the API — `unsupported` when the referrers tag is stored (read next, from the store). With
   * neither, nothing is stored (MANIFEST_UNKNOWN).
   */
  async storedReferrers(repository: string, digest: Digest): Promise<ReferrersAnswer> {
    const r = await this.referrers(repository, digest);
    if (r.kind === 'unsupported') await this.fetchManifest(repository, referrersTag(digest));
    return r;
  }

  async ping(): Promise<void> {}

  async close(): Promise<void> {}

  #missing(what: string, code: 'MANIFEST_UNKNOWN' | 'BLOB_UNKNOWN' | 'NAME_UNKNOWN'): SigilError {
    return new SigilError({ code, message: `${this.name}: ${what} is not in the content store` });
  }
}
