import { SigilError } from '../errors.js';
import { checkRepository, parseTagList } from './answers.js';
import type { Endpoint } from './call.js';
import { pullScope } from './challenge.js';
import { headerValue } from './error-map.js';
import { TAG_LIST_MAX_BYTES } from './limits.js';
import type { TagList } from '../oci/registry.js';

/**
 * GET /v2/<repo>/tags/list with n/last passed on. `upstreamPaginated` says the upstream honoured
 * them (a Link header, or no more than n tags all after `last`); otherwise the caller applies
 * n/last itself.
 */
export function tagList(repository: string, q: { n?: number; last?: string }): Endpoint<TagList & { upstreamPaginated: boolean }> {
  checkRepository(repository);
  if (q.n !== undefined && (!Number.isSafeInteger(q.n) || q.n < 0)) {
    throw new SigilError({ code: 'PAGINATION_NUMBER_INVALID', message: 'n must be a non-negative integer' });
  }
  return {
    kind: 'tags',
    what: `tags of ${repository}`,
    method: 'GET',
    path: `/v2/${repository}/tags/list`,
    query: { ...(q.n !== undefined ? { n: String(q.n) } : {}), ...(q.last !== undefined ? { last: q.last } : {}) },
    headers: { accept: 'application/json' },
    scope: pullScope(repository),
    deadline: true,
    answers: [200],
    notFound: 'NAME_UNKNOWN',
    async answer(res, { http, describe, signal }) {
      const body = await http.readCapped(
        res,
        TAG_LIST_MAX_BYTES,
        () => new SigilError({ code: 'UPSTREAM_BAD_RESPONSE', message: `${describe}: list exceeds ${TAG_LIST_MAX_BYTES} bytes` }),
        signal,
      );
      const list = parseTagList(body);
      if (list === undefined) throw new SigilError({ code: 'UPSTREAM_BAD_RESPONSE', message: `${describe}: not a tag list` });
      const last = q.last;
      const honoured = q.n !== undefined && list.tags.length <= q.n && (last === undefined || list.tags.every((t) => t > last));
      return { name: list.name ?? repository, tags: list.tags, upstreamPaginated: headerValue(res.headers, 'link') !== undefined || honoured };
    },
  };
}
