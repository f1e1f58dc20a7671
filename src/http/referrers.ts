import type { FastifyReply } from 'fastify';
import { SigilError, isSigilError } from '../errors.js';
import { referrersTag, type Digest } from '../oci/digest.js';
import { INDEX_MEDIA_TYPES, MT } from '../oci/media-types.js';
import type { UpstreamClient } from '../upstream/client.js';
import type { Routed } from './route.js';

interface Descriptor {
  mediaType?: unknown;
  artifactType?: unknown;
  digest?: unknown;
  size?: unknown;
  annotations?: unknown;
}

/**
 * distribution-spec "Listing Referrers". When the upstream has the API its answer is
 * passed on (filtered here if it did not filter). When it has none (distribution 2.8
 * answers 404), the answer is built from the referrers tag schema: the index tagged
 * `<alg>-<hex>`, or an empty index when there is no such tag.
 */
export async function answerReferrers(
  reply: FastifyReply,
  client: UpstreamClient,
  r: Routed,
  digest: Digest,
  artifactType: string | undefined,
) {
  reply.type(MT.OCI_INDEX);
  const api = await client.referrers(r.repository, digest, artifactType);
  let manifests: Descriptor[];
  let filtered = false;
  if (api.kind === 'api') {
    if (artifactType === undefined || api.filtersApplied?.split(',').map((s) => s.trim()).includes('artifactType')) {
      if (api.filtersApplied) reply.header('oci-filters-applied', api.filtersApplied);
      return reply.send(api.body);
    }
    manifests = descriptorsOf(api.body, 'the upstream referrers answer');
  } else {
    manifests = await fromFallbackTag(client, r.repository, digest);
  }
  if (artifactType !== undefined) {
    manifests = manifests.filter((m) => m.artifactType === artifactType);
    filtered = true;
  }
  if (filtered) reply.header('oci-filters-applied', 'artifactType');
  // A Buffer, so fastify adds no charset to the OCI media type.
  return reply.send(Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MT.OCI_INDEX, manifests })));
}

async function fromFallbackTag(client: UpstreamClient, repository: string, digest: Digest): Promise<Descriptor[]> {
  try {
    const m = await client.fetchManifest(repository, referrersTag(digest), { accept: MT.OCI_INDEX });
    if (!INDEX_MEDIA_TYPES.has(m.mediaType)) return [];
    return descriptorsOf(m.bytes, `the referrers tag ${referrersTag(digest)}`);
  } catch (e) {
    if (isSigilError(e) && (e.code === 'MANIFEST_UNKNOWN' || e.code === 'NAME_UNKNOWN')) return [];
    throw e;
  }
}

function descriptorsOf(bytes: Buffer, what: string): Descriptor[] {
  let doc: unknown;
  try {
    doc = JSON.parse(bytes.toString('utf8'));
  } catch (cause) {
    throw new SigilError({ code: 'UPSTREAM_BAD_RESPONSE', message: `${what} is not JSON`, cause });
  }
  const list = (doc as { manifests?: unknown } | null)?.manifests;
  if (!Array.isArray(list)) {
    throw new SigilError({ code: 'UPSTREAM_BAD_RESPONSE', message: `${what} is not an image index (no manifests list)` });
  }
  return list.filter((d): d is Descriptor => typeof d === 'object' && d !== null);
}
