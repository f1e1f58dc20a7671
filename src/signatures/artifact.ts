import { INDEX_MEDIA_TYPES, MT } from '../oci/media-types.js';

/** cosign's attestation layers (`.att` tags): DSSE envelopes. */
export const DSSE_ENVELOPE = 'application/vnd.dsse.envelope.v1+json';

/** Layer media types that only ever carry signature data, never a filesystem. */
const SIGNATURE_LAYER_TYPES: ReadonlySet<string> = new Set([MT.COSIGN_SIMPLESIGNING, DSSE_ENVELOPE, MT.SIGSTORE_BUNDLE_V03]);
/** Config media types a signature artifact may have: cosign's plain OCI config, or OCI's empty one. */
const SIGNATURE_CONFIG_TYPES: ReadonlySet<string> = new Set([MT.OCI_CONFIG, MT.OCI_EMPTY]);

/**
 * Is this manifest a signature artifact (cosign `.sig`/`.att`, or a Sigstore bundle referrer),
 * which is served unverified so that cosign, Kyverno or policy-controller behind sigil keep
 * working? Decided strictly from the bytes, never from the tag: an image manifest, at least one
 * signature layer, EVERY layer of a signature media type (nothing a runtime could unpack), and a
 * config that is cosign's or OCI's empty one. An index is never a signature artifact.
 */
export function isSignatureArtifact(mediaType: string, bytes: Buffer): boolean {
  if (INDEX_MEDIA_TYPES.has(mediaType)) return false;
  let doc: unknown;
  try {
    doc = JSON.parse(bytes.toString('utf8'));
  } catch {
    return false;
  }
  if (typeof doc !== 'object' || doc === null) return false;
  const m = doc as { mediaType?: unknown; config?: { mediaType?: unknown }; layers?: unknown; manifests?: unknown };
  if (m.manifests !== undefined) return false;
  if (m.mediaType !== undefined && m.mediaType !== MT.OCI_MANIFEST && m.mediaType !== MT.DOCKER_MANIFEST) return false;
  if (typeof m.config?.mediaType !== 'string' || !SIGNATURE_CONFIG_TYPES.has(m.config.mediaType)) return false;
  if (!Array.isArray(m.layers) || m.layers.length === 0) return false;
  return m.layers.every(
    (l: unknown) => typeof l === 'object' && l !== null && SIGNATURE_LAYER_TYPES.has((l as { mediaType?: unknown }).mediaType as string),
  );
}
