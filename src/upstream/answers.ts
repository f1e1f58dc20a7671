/**
 * Pure checks and parsing of what sigil sends an upstream and what comes back: names,
 * digests and references before a request; Content-Type, Content-Length, manifest and
 * tag-list bodies after it. No I/O.
 */
import { SigilError } from '../errors.js';
import { isDigest } from '../oci/digest.js';
import type { Digest } from '../oci/digest.js';
import { MT } from '../oci/media-types.js';
import { isRepositoryName, isTag } from '../oci/reference.js';
import { headerValue } from './error-map.js';
import type { Exchange } from './http.js';
import { tryParseJson } from '../oci/json.js';
import { manifestObject } from '../oci/manifest.js';

// RFC 9110: a decimal Content-Length
const CONTENT_LENGTH_RE = /^\d{1,15}$/;

/** The media type of a Content-Type header, parameters dropped. */
export function mediaTypeOf(contentType: string | undefined): string | undefined {
  const t = contentType?.split(';')[0]?.trim().toLowerCase();
  return t === undefined || t === '' ? undefined : t;
}

export function contentLength(headers: Exchange['headers']): number | undefined {
  const v = headerValue(headers, 'content-length');
  return v !== undefined && CONTENT_LENGTH_RE.test(v) ? Number(v) : undefined;
}

export function checkRepository(repository: string): void {
  if (!isRepositoryName(repository)) {
    throw new SigilError({ code: 'NAME_INVALID', message: 'invalid repository name', detail: { name: repository } });
  }
}

export function checkDigest(digest: string): asserts digest is Digest {
  if (!isDigest(digest)) throw new SigilError({ code: 'DIGEST_INVALID', message: 'invalid digest', detail: { digest } });
}

export function checkReference(reference: string): void {
  // a reference with ':' can only be a digest; the grammar keeps '/', '?', '#' and '@' out of the path
  if (reference.includes(':')) checkDigest(reference);
  else if (!isTag(reference)) throw new SigilError({ code: 'TAG_INVALID', message: 'invalid tag', detail: { tag: reference } });
}

/** The body's own `mediaType`, else an OCI manifest (what a manifest without one is). */
export function bodyMediaType(bytes: Buffer): string {
  // not JSON: the caller's parser will say so
  const declared = manifestObject(bytes)?.mediaType;
  return typeof declared === 'string' && declared !== '' ? declared : MT.OCI_MANIFEST;
}

export function parseTagList(body: Buffer): { name?: string; tags: string[] } | undefined {
  const parsed = tryParseJson(body);
  if (typeof parsed !== 'object' || parsed === null) return undefined;
  const o = parsed as { name?: unknown; tags?: unknown };
  // distribution answers `"tags": null` for a repository without tags
  const tags = o.tags === null || o.tags === undefined ? [] : o.tags;
  if (!Array.isArray(tags) || !tags.every((t) => typeof t === 'string')) return undefined;
  return { ...(typeof o.name === 'string' ? { name: o.name } : {}), tags: tags as string[] };
}
