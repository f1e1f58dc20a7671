import type { FastifyReply } from 'fastify';
import type { Digest } from '../oci/digest.js';
import { MT } from '../oci/media-types.js';
import { listReferrers } from '../signatures/referrers.js';
import type { Registry } from '../oci/registry.js';
import type { Routed } from './route.js';

/**
 * distribution-spec "Listing Referrers": the upstream's answer when it has the API (filtered
 * here if it did not filter), else an index built from the referrers tag schema.
 */
export async function answerReferrers(
  reply: FastifyReply,
  client: Registry,
  r: Routed,
  digest: Digest,
  artifactType: string | undefined,
) {
  reply.type(MT.OCI_INDEX);
  const list = await listReferrers(client, r.repository, digest, artifactType);
  if (list.stale) reply.header('sigil-stale', 'true');
  if (list.raw) {
    if (list.raw.filtersApplied) reply.header('oci-filters-applied', list.raw.filtersApplied);
    return reply.send(list.raw.body);
  }
  if (list.filtered) reply.header('oci-filters-applied', 'artifactType');
  // A Buffer, so fastify adds no charset to the OCI media type.
  return reply.send(Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MT.OCI_INDEX, manifests: list.manifests })));
}
