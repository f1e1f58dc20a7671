import type { FastifyReply } from 'fastify';
import { SigilError } from '../errors.js';
import type { Registry } from '../oci/registry.js';
import type { Routed } from './route.js';

/** A page larger than this is refused: tag lists are JSON built in memory. */
export const TAGS_PAGE_MAX = 10_000;

type Query = Record<string, string | string[] | undefined>;

function param(q: Query, key: string): string | undefined {
  const v = q[key];
  return Array.isArray(v) ? v[0] : v;
}

/**
 * distribution-spec "Listing Tags": `n` limits the page, `last` starts after a tag, and a
 * `Link: <…>; rel="next"` header names the next page. The proxy applies n/last itself when
 * the upstream ignored them (distribution 2.8 does), so clients always get what they asked.
 */
export async function answerTags(reply: FastifyReply, client: Registry, r: Routed, query: Query) {
  const nText = param(query, 'n');
  const last = param(query, 'last');
  let n: number | undefined;
  if (nText !== undefined) {
    if (!/^\d+$/.test(nText) || Number(nText) > TAGS_PAGE_MAX) {
      throw new SigilError({
        code: 'PAGINATION_NUMBER_INVALID',
        message: `n must be an integer from 0 to ${TAGS_PAGE_MAX}, got '${nText}'`,
      });
    }
    n = Number(nText);
  }
  const list = await client.listTags(r.repository, { n, last });
  if (list.stale) reply.header('sigil-stale', 'true');
  let tags = [...list.tags];
  if (!list.upstreamPaginated) {
    tags.sort();
    if (last !== undefined) tags = tags.filter((t) => t > last);
  }
  let more = false;
  if (n !== undefined) {
    more = tags.length > n || (list.upstreamPaginated && tags.length === n && n > 0);
    tags = tags.slice(0, n);
  }
  if (more && tags.length > 0) {
    const next = new URLSearchParams({ n: String(n), last: tags[tags.length - 1] });
    const ns = param(query, 'ns');
    if (ns !== undefined) next.set('ns', ns);
    reply.header('link', `</v2/${r.clientName}/tags/list?${next.toString()}>; rel="next"`);
  }
  reply.type('application/json');
  return JSON.stringify({ name: r.clientName, tags });
}
