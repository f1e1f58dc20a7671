import { SigilError } from '../errors.js';
import { digestOf, isDigest } from '../oci/digest.js';
import type { Digest } from '../oci/digest.js';
import { MAX_JSON_DEPTH, jsonDepth } from '../oci/json.js';
import { DEFAULT_MANIFEST_ACCEPT } from '../oci/media-types.js';
import { bodyMediaType, checkReference, checkRepository, contentLength, mediaTypeOf } from './answers.js';
import type { Endpoint } from './call.js';
import { pullScope } from './challenge.js';
import { headerValue } from './error-map.js';
import { MANIFEST_MAX_BYTES } from './limits.js';
import type { FetchedManifest } from '../oci/registry.js';

/** The Accept asked for, else every manifest type sigil reads. */
function acceptOf(accept: string | undefined): string {
  return accept !== undefined && accept.trim() !== '' ? accept : DEFAULT_MANIFEST_ACCEPT;
}

/**
 * GET /v2/<repo>/manifests/<reference>: buffered up to MANIFEST_MAX_BYTES and hashed here. For a
 * digest reference the bytes must hash to it; an upstream Docker-Content-Digest must match the
 * bytes too (distribution-spec: clients verify, never trust the header).
 */
export function manifestGet(repository: string, reference: string, accept: string | undefined): Endpoint<FetchedManifest> {
  checkRepository(repository);
  checkReference(reference);
  const requested = isDigest(reference) ? reference : undefined;
  const what = `manifest ${repository}${requested !== undefined ? '@' : ':'}${reference}`;
  return {
    kind: 'manifest',
    what,
    method: 'GET',
    path: `/v2/${repository}/manifests/${reference}`,
    headers: { accept: acceptOf(accept) },
    scope: pullScope(repository),
    deadline: true,
    answers: [200],
    notFound: 'MANIFEST_UNKNOWN',
    async answer(res, { http, describe, signal }) {
      const tooLarge = (): SigilError =>
        new SigilError({ code: 'MANIFEST_TOO_LARGE', message: `${describe} exceeds ${MANIFEST_MAX_BYTES} bytes` });
      const announced = contentLength(res.headers);
      if (announced !== undefined && announced > MANIFEST_MAX_BYTES) {
        res.body.destroy();
        throw tooLarge();
      }
      const bytes = await http.readCapped(res, MANIFEST_MAX_BYTES, tooLarge, signal);
      const digest = digestOf(bytes, requested);
      if (requested !== undefined && digest !== requested) {
        throw new SigilError({
          code: 'DIGEST_MISMATCH',
          message: `${describe}: the bytes hash to ${digest}`,
          detail: { expected: requested, got: digest },
        });
      }
      const announcedDigest = headerValue(res.headers, 'docker-content-digest')?.trim();
      if (announcedDigest !== undefined && isDigest(announcedDigest)) {
        const check = digestOf(bytes, announcedDigest);
        if (check !== announcedDigest) {
          throw new SigilError({
            code: 'DIGEST_MISMATCH',
            message: `${describe}: Docker-Content-Digest ${announcedDigest} does not match the bytes (${check})`,
            detail: { announced: announcedDigest, got: check },
          });
        }
      }
      if (jsonDepth(bytes) > MAX_JSON_DEPTH) {
        // Hostile nesting would overflow the stack of whatever walks or re-serialises it.
        throw new SigilError({ code: 'MANIFEST_INVALID', message: `${describe}: JSON nested deeper than ${MAX_JSON_DEPTH} levels (MAX_JSON_DEPTH)` });
      }
      return { bytes, digest, mediaType: mediaTypeOf(headerValue(res.headers, 'content-type')) ?? bodyMediaType(bytes) };
    },
  };
}

/**
 * HEAD /v2/<repo>/manifests/<tag> (Docker Hub does not count HEADs against its pull rate limit):
 * the upstream's Docker-Content-Digest and Content-Type, or null when it sent no usable digest.
 * The digest is only a pointer: the bytes fetched by digest are hashed and checked against it.
 */
export function manifestHead(repository: string, tag: string, accept: string | undefined): Endpoint<{ digest: Digest; mediaType: string } | null> {
  checkRepository(repository);
  checkReference(tag);
  return {
    kind: 'manifest',
    what: `manifest ${repository}:${tag}`,
    method: 'HEAD',
    path: `/v2/${repository}/manifests/${tag}`,
    headers: { accept: acceptOf(accept) },
    scope: pullScope(repository),
    deadline: true,
    answers: [200],
    notFound: 'MANIFEST_UNKNOWN',
    async answer(res, { http }) {
      await http.discard(res.body);
      const digest = headerValue(res.headers, 'docker-content-digest')?.trim();
      const mediaType = mediaTypeOf(headerValue(res.headers, 'content-type'));
      return digest !== undefined && isDigest(digest) && mediaType !== undefined ? { digest, mediaType } : null;
    },
  };
}
