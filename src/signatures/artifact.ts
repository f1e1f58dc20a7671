import { MT } from '../oci/media-types.js';
import { repeatedKey } from '../oci/json.js';
import { isObject, manifestObject } from '../oci/manifest.js';

/** cosign's attestation layers (`.att` tags): DSSE envelopes. */
export const DSSE_ENVELOPE = 'application/vnd.dsse.envelope.v1+json';

/** Layer media types that only ever carry signature data, never a filesystem. */
const SIGNATURE_LAYER_TYPES: ReadonlySet<string> = new Set([MT.COSIGN_SIMPLESIGNING, DSSE_ENVELOPE, MT.SIGSTORE_BUNDLE_V03]);
/** Config media types a signature artifact may have: cosign's plain OCI config, or OCI's empty one. */
const SIGNATURE_CONFIG_TYPES: ReadonlySet<string> = new Set([MT.OCI_CONFIG, MT.OCI_EMPTY]);
/** The image manifest types a signature artifact may be served as. */
const MANIFEST_TYPES: ReadonlySet<string> = new Set([MT.OCI_MANIFEST, MT.DOCKER_MANIFEST]);

// The exact keys the OCI image spec defines. Clients decode with Go's encoding/json, which
// matches keys case-insensitively (and folds ſ→s, K→k), the last one winning: a "Layers" key
// next to "layers" would be invisible to a case-sensitive check here but decide what containerd
// runs. So any key outside these lists means "not a signature artifact": verify it like an image.
const MANIFEST_KEYS: ReadonlySet<string> = new Set(['schemaVersion', 'mediaType', 'artifactType', 'config', 'layers', 'subject', 'annotations']);
const DESCRIPTOR_KEYS: ReadonlySet<string> = new Set(['mediaType', 'digest', 'size', 'annotations', 'artifactType', 'urls', 'data', 'platform']);

function onlyKeys(v: Record<string, unknown>, allowed: ReadonlySet<string>): boolean {
  return Object.keys(v).every((k) => allowed.has(k));
}

function isDescriptor(v: unknown, types: ReadonlySet<string>): boolean {
  return isObject(v) && onlyKeys(v, DESCRIPTOR_KEYS) && typeof v.mediaType === 'string' && types.has(v.mediaType);
}

/**
 * Is this manifest a signature artifact (cosign `.sig`/`.att`, or a Sigstore bundle referrer),
 * which is served unverified so that cosign, Kyverno or policy-controller behind sigil keep
 * working? Decided strictly from the bytes and the upstream's Content-Type, never from the tag:
 * an OCI or Docker v2 image manifest (served as such), no key the spec does not define, at least
 * one layer, EVERY layer of a signature media type (nothing a runtime could unpack), a config
 * that is cosign's or OCI's empty one, and no key repeated (json.ts repeatedKey). Anything else is verified like an image.
 */
export function isSignatureArtifact(contentType: string, bytes: Buffer): boolean {
  if (!MANIFEST_TYPES.has(contentType)) return false;
  const doc = manifestObject(bytes);
  if (doc === undefined || !onlyKeys(doc, MANIFEST_KEYS) || doc.schemaVersion !== 2) return false;
  if (doc.mediaType !== undefined && doc.mediaType !== contentType) return false;
  if (!isDescriptor(doc.config, SIGNATURE_CONFIG_TYPES)) return false;
  if (!Array.isArray(doc.layers) || doc.layers.length === 0) return false;
  return doc.layers.every((l) => isDescriptor(l, SIGNATURE_LAYER_TYPES)) && repeatedKey(bytes) === undefined;
}
