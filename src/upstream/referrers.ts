import { SigilError } from '../errors.js';
import type { Digest } from '../oci/digest.js';
import { MT } from '../oci/media-types.js';
import { checkDigest, checkRepository, mediaTypeOf } from './answers.js';
import type { Endpoint } from './call.js';
import { pullScope } from './challenge.js';
import { headerValue } from './error-map.js';
import { REFERRERS_MAX_BYTES } from './limits.js';
import type { ReferrersAnswer } from '../oci/registry.js';

/**
 * GET /v2/<repo>/referrers/<digest>, the index buffered up to REFERRERS_MAX_BYTES. A 404 or 405 (a
 * registry without the referrers API, e.g. distribution 2.8) is `unsupported`: the caller uses
 * the fallback tag.
 */
export function referrersGet(repository: string, digest: Digest, artifactType: string | undefined): Endpoint<ReferrersAnswer> {
  checkRepository(repository);
  checkDigest(digest);
  return {
    kind: 'referrers',
    what: `referrers of ${repository}@${digest}`,
    method: 'GET',
    path: `/v2/${repository}/referrers/${digest}`,
    query: artifactType !== undefined && artifactType !== '' ? { artifactType } : {},
    headers: { accept: MT.OCI_INDEX },
    scope: pullScope(repository),
    deadline: true,
    answers: [200, 404, 405],
    async answer(res, { http, describe, signal }): Promise<ReferrersAnswer> {
      if (res.status === 404 || res.status === 405) {
        await http.discard(res.body);
        return { kind: 'unsupported' };
      }
      const body = await http.readCapped(
        res,
        REFERRERS_MAX_BYTES,
        () => new SigilError({ code: 'UPSTREAM_BAD_RESPONSE', message: `${describe}: index exceeds ${REFERRERS_MAX_BYTES} bytes` }),
        signal,
      );
      const filtersApplied = headerValue(res.headers, 'oci-filters-applied');
      return {
        kind: 'api',
        body,
        contentType: mediaTypeOf(headerValue(res.headers, 'content-type')) ?? MT.OCI_INDEX,
        ...(filtersApplied !== undefined ? { filtersApplied } : {}),
      };
    },
  };
}
