import type { Readable } from 'node:stream';
import type { Digest } from './digest.js';

// The OCI distribution API as sigil reads it: what every layer of the registry stack
// (src/registry/), the upstream client at its bottom, and the content store alone answer.

/** A manifest fetched, buffered (≤ MANIFEST_MAX_BYTES) and hashed here. */
export interface FetchedManifest {
  /** Exactly the bytes the upstream sent: the bytes that are hashed, verified and served. */
  readonly bytes: Buffer;
  /** Computed here from `bytes` (sha256, or the algorithm of the digest asked for). */
  readonly digest: Digest;
  /** The upstream's Content-Type (else the body's mediaType, else OCI manifest). */
  readonly mediaType: string;
  /** Served from the content store because the upstream failed (stale-if-error), or offline. */
  readonly stale?: boolean;
}

/** A tag resolved with a HEAD: the digest it points at now (only a pointer: what is fetched by it is hashed). */
export interface ResolvedTag {
  readonly digest: Digest;
  readonly mediaType: string;
}

export interface BlobRequest {
  readonly method: 'GET' | 'HEAD';
  /** The client's Range header, passed on as is. */
  readonly range?: string;
  /**
   * Hash a whole blob as it streams and cut it off before its last chunk on a mismatch (default
   * true). False where something downstream checks the digest anyway (the content store's writer).
   */
  readonly verifyDigest?: boolean;
  /** Neither read nor write the content store for this request (a stored blob no passing manifest names). */
  readonly skipStore?: boolean;
  /**
   * The size the descriptor naming the blob gives, when the caller will refuse any other (signature
   * data read whole, a download into the store). A layer that knows the size of what it holds
   * before answering (the shared bucket) answers from below when it holds another size, instead of
   * serving bytes the caller is bound to reject.
   */
  readonly descriptorSize?: number;
}

/**
 * A blob answer, ready to stream to the client; or, for a whole-blob GET the shared bucket holds
 * (`cache.shared.s3.redirect`, registry/shared-redirect.ts), a 307 to a presigned URL of it.
 */
export interface BlobResponse {
  /** 200 or 206; 307 for a redirect (headers: `location` only; body null). */
  readonly status: number;
  /** Only headers safe and meaningful to pass on (content-type/-length/-range, accept-ranges, etag; a redirect's location). */
  readonly headers: Readonly<Record<string, string>>;
  /**
   * The body (null for HEAD and a redirect). For a whole-blob GET it is checked against the
   * digest while it streams: on a mismatch it errors before its last chunk.
   */
  readonly body: Readable | null;
}

export interface TagList {
  readonly name: string;
  readonly tags: readonly string[];
  /** From the content store because the upstream failed (stale-if-error). */
  readonly stale?: boolean;
}

export type ReferrersAnswer =
  /** The upstream has the referrers API: its answer, passed on. */
  | { readonly kind: 'api'; readonly body: Buffer; readonly contentType: string; readonly filtersApplied?: string; readonly stale?: boolean }
  /** No referrers API (404): sigil builds the index from the fallback tag. */
  | { readonly kind: 'unsupported' };

/** The part of a registry that signatures/ needs: read manifests and small blobs. */
export interface RegistryReader {
  fetchManifest(repository: string, reference: string, opts?: { accept?: string }): Promise<FetchedManifest>;
}

/**
 * One upstream as the HTTP layer and the gate read it: the upstream client (src/upstream/client.ts)
 * and every layer of the registry stack (src/registry/) implement it.
 */
export interface Registry extends RegistryReader {
  readonly name: string;
  /** The digest a tag points at now (a HEAD), or null when the answer named none (then fetch by tag). */
  resolveTag(repository: string, tag: string, opts?: { accept?: string }): Promise<ResolvedTag | null>;
  openBlob(repository: string, digest: Digest, req: BlobRequest): Promise<BlobResponse>;
  listTags(repository: string, q: { n?: number; last?: string }): Promise<TagList & { upstreamPaginated: boolean }>;
  referrers(repository: string, digest: Digest, artifactType?: string): Promise<ReferrersAnswer>;
  ping(): Promise<void>;
  close(): Promise<void>;
}
