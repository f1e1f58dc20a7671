import { SigilError, isSigilError } from '../errors.js';
import { referrersTag, type Digest } from '../oci/digest.js';
import { INDEX_MEDIA_TYPES, MT } from '../oci/media-types.js';
import type { Registry } from '../oci/registry.js';
import { indexEntries } from '../oci/manifest.js';

/** A descriptor from a referrers index, fields as the upstream wrote them (checked by users). */
export interface ReferrerDescriptor {
  readonly mediaType?: unknown;
  readonly artifactType?: unknown;
  readonly digest?: unknown;
  readonly size?: unknown;
  readonly annotations?: unknown;
}

export interface ReferrersList {
  readonly manifests: readonly ReferrerDescriptor[];
  /** True when only descriptors of the asked artifactType are listed. */
  readonly filtered: boolean;
  /** The upstream's answer, when it has the API and filtered as asked (pass it on as is). */
  readonly raw?: { readonly body: Buffer; readonly filtersApplied?: string };
  /** Answered from the content store because the upstream failed. */
  readonly stale?: boolean;
}

/**
 * distribution-spec "Listing Referrers": the referrers API when the upstream has it,
 * else the referrers tag schema (the index tagged `<alg>-<hex>`; none means no referrers).
 */
export async function listReferrers(
  registry: Registry,
  repository: string,
  digest: Digest,
  artifactType?: string,
): Promise<ReferrersList> {
  const api = await registry.referrers(repository, digest, artifactType);
  let manifests: ReferrerDescriptor[];
  if (api.kind === 'api') {
    const applied = api.filtersApplied?.split(',').map((s) => s.trim()) ?? [];
    if (artifactType === undefined || applied.includes('artifactType')) {
      return {
        manifests: descriptorsOf(api.body, 'the upstream referrers answer'),
        filtered: artifactType !== undefined,
        raw: { body: api.body, filtersApplied: api.filtersApplied },
        stale: api.stale,
      };
    }
    manifests = descriptorsOf(api.body, 'the upstream referrers answer');
    if (api.stale) {
      const kept = artifactType === undefined ? manifests : manifests.filter((m) => m.artifactType === artifactType);
      return { manifests: kept, filtered: artifactType !== undefined, stale: true };
    }
  } else {
    manifests = await fromFallbackTag(registry, repository, digest);
  }
  if (artifactType === undefined) return { manifests, filtered: false };
  return { manifests: manifests.filter((m) => m.artifactType === artifactType), filtered: true };
}

async function fromFallbackTag(registry: Registry, repository: string, digest: Digest): Promise<ReferrerDescriptor[]> {
  const tag = referrersTag(digest);
  try {
    const m = await registry.fetchManifest(repository, tag, { accept: MT.OCI_INDEX });
    if (!INDEX_MEDIA_TYPES.has(m.mediaType)) {
      throw new SigilError({ code: 'UPSTREAM_BAD_RESPONSE', message: `the referrers tag ${tag} is a ${m.mediaType}, not an image index` });
    }
    return descriptorsOf(m.bytes, `the referrers tag ${tag}`);
  } catch (e) {
    if (isSigilError(e) && (e.code === 'MANIFEST_UNKNOWN' || e.code === 'NAME_UNKNOWN')) return [];
    throw e;
  }
}

function descriptorsOf(bytes: Buffer, what: string): ReferrerDescriptor[] {
  let list: unknown[] | undefined;
  try {
    list = indexEntries(bytes, what);
  } catch (cause) {
    throw new SigilError({ code: 'UPSTREAM_BAD_RESPONSE', message: (cause as Error).message, cause });
  }
  if (list === undefined) {
    throw new SigilError({ code: 'UPSTREAM_BAD_RESPONSE', message: `${what} is not an image index (no manifests list)` });
  }
  return list.filter((d): d is ReferrerDescriptor => typeof d === 'object' && d !== null);
}

/** Is this referrer a Sigstore bundle (what signature discovery reads)? */
export function isBundleReferrer(d: { artifactType?: unknown }): boolean {
  return d.artifactType === MT.SIGSTORE_BUNDLE_V03;
}
