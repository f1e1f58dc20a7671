import { SigilError } from '../errors.js';
import { isDigest, type Digest } from './digest.js';
import { parseJson } from './json.js';
import { INDEX_MEDIA_TYPES } from './media-types.js';
import type { Platform } from './platform.js';

/**
 * The one reader of manifests, indexes and descriptors sigil did not write (image-spec
 * "Image Manifest", "Image Index", "Descriptor"; Docker schema 2 alike). Every read goes through
 * json.ts parseJson, so MAX_JSON_DEPTH holds for all of them. Two ways to read:
 * - strict (`parseManifest`, `descriptor`): every descriptor checked, MANIFEST_INVALID naming
 *   where otherwise (what `mirror` and `import` copy);
 * - lenient (`manifestObject`, `indexEntries`, `imageBlobs`, `indexChildDigests`): the fields as
 *   written, for readers that judge each entry on its own and skip or reject it with their own
 *   reason (signature discovery, the gate, the store's admission).
 * Repeated keys (json.ts repeatedKey) are refused by the readers that vouch for a document's
 * meaning to Go clients: signatures/artifact.ts.
 */

/** A descriptor whose digest, size and media type were checked. */
export interface Descriptor {
  readonly mediaType: string;
  readonly digest: Digest;
  readonly size: number;
  readonly artifactType?: string;
  readonly annotations?: Readonly<Record<string, string>>;
  readonly platform?: Platform;
}

/** What a manifest points at: child manifests (an index) or blobs (an image or artifact). */
export type ParsedManifest =
  | { readonly kind: 'index'; readonly children: readonly Descriptor[] }
  | {
      readonly kind: 'image';
      /** The config first, then the layers. */
      readonly blobs: readonly Descriptor[];
      readonly subject?: Descriptor;
      readonly artifactType?: string;
      readonly configMediaType: string;
      readonly annotations?: Readonly<Record<string, string>>;
    };

export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A descriptor's `size`: a non-negative safe integer. */
export function isSize(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

/** An object whose every value is a string (annotations), else undefined. */
export function stringRecord(v: unknown): Record<string, string> | undefined {
  if (!isObject(v)) return undefined;
  const entries = Object.entries(v).filter((e): e is [string, string] => typeof e[1] === 'string');
  return entries.length === Object.keys(v).length ? Object.fromEntries(entries) : undefined;
}

/** Why `v` is not a descriptor, or the checked descriptor. */
function check(v: unknown): Descriptor | string {
  if (!isObject(v)) return 'not a descriptor';
  if (typeof v.digest !== 'string' || !isDigest(v.digest)) return `invalid digest ${JSON.stringify(v.digest)}`;
  if (!isSize(v.size)) return `invalid size ${JSON.stringify(v.size)}`;
  if (typeof v.mediaType !== 'string' || v.mediaType === '') return 'no media type';
  const p = v.platform;
  const platform =
    isObject(p) && typeof p.os === 'string' && typeof p.architecture === 'string'
      ? { os: p.os, architecture: p.architecture, ...(typeof p.variant === 'string' && p.variant !== '' ? { variant: p.variant } : {}) }
      : undefined;
  const annotations = stringRecord(v.annotations);
  return {
    mediaType: v.mediaType,
    digest: v.digest,
    size: v.size,
    ...(typeof v.artifactType === 'string' ? { artifactType: v.artifactType } : {}),
    ...(annotations ? { annotations } : {}),
    ...(platform ? { platform } : {}),
  };
}

/** A checked descriptor; MANIFEST_INVALID naming `what` otherwise. */
export function descriptor(v: unknown, what: string): Descriptor {
  const d = check(v);
  if (typeof d === 'string') throw new SigilError({ code: 'MANIFEST_INVALID', message: `${what}: ${d}` });
  return d;
}

/** A checked descriptor, or undefined. */
export function tryDescriptor(v: unknown): Descriptor | undefined {
  const d = check(v);
  return typeof d === 'string' ? undefined : d;
}

/**
 * Parses an image manifest or index (OCI or Docker schema 2) enough to copy it: every
 * descriptor it names, checked. `mediaType` is the type it was served or stored as.
 */
export function parseManifest(bytes: Uint8Array, mediaType: string, what: string): ParsedManifest {
  let doc: unknown;
  try {
    doc = parseJson(bytes, what);
  } catch (cause) {
    throw new SigilError({ code: 'MANIFEST_INVALID', message: (cause as Error).message, cause });
  }
  if (!isObject(doc) || doc.schemaVersion !== 2) {
    throw new SigilError({ code: 'MANIFEST_INVALID', message: `${what}: not a schema 2 manifest (schema 1 is not supported)` });
  }
  const type = typeof doc.mediaType === 'string' ? doc.mediaType : mediaType;
  if (INDEX_MEDIA_TYPES.has(type) || (Array.isArray(doc.manifests) && doc.config === undefined)) {
    if (!Array.isArray(doc.manifests)) throw new SigilError({ code: 'MANIFEST_INVALID', message: `${what}: an index without manifests` });
    return { kind: 'index', children: doc.manifests.map((d, i) => descriptor(d, `${what}: manifests[${i}]`)) };
  }
  const config = descriptor(doc.config, `${what}: config`);
  const layers = Array.isArray(doc.layers) ? doc.layers.map((d, i) => descriptor(d, `${what}: layers[${i}]`)) : [];
  const annotations = stringRecord(doc.annotations);
  return {
    kind: 'image',
    blobs: [config, ...layers],
    configMediaType: config.mediaType,
    ...(doc.subject !== undefined ? { subject: descriptor(doc.subject, `${what}: subject`) } : {}),
    ...(typeof doc.artifactType === 'string' && doc.artifactType !== '' ? { artifactType: doc.artifactType } : {}),
    ...(annotations ? { annotations } : {}),
  };
}

/** The JSON object of a manifest, fields as written; undefined when the bytes are not one (or nest too deep). */
export function manifestObject(bytes: Uint8Array): Record<string, unknown> | undefined {
  try {
    const doc = parseJson(bytes, 'manifest');
    return isObject(doc) ? doc : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The `manifests` list of an index or a referrers answer, entries as written; undefined when it
 * has none. Throws json.ts JsonRefused naming `what` when the text is not JSON within MAX_JSON_DEPTH.
 */
export function indexEntries(input: Uint8Array | string, what: string): unknown[] | undefined {
  const doc = parseJson(input, what);
  const list = isObject(doc) ? doc.manifests : undefined;
  return Array.isArray(list) ? list : undefined;
}

/** indexEntries for readers to whom unusable bytes simply mean "no list". */
export function tryIndexEntries(input: Uint8Array | string): unknown[] | undefined {
  try {
    return indexEntries(input, 'index');
  } catch {
    return undefined;
  }
}

/** The digests an index lists (entries without a valid one skipped; none when it is not an index). */
export function indexChildDigests(bytes: Uint8Array): Digest[] {
  return (tryIndexEntries(bytes) ?? []).flatMap((m) => (isObject(m) && typeof m.digest === 'string' && isDigest(m.digest) ? [m.digest] : []));
}

/** The config's media type as written; undefined for an index or bytes that are not a manifest. */
export function configMediaType(bytes: Uint8Array): string | undefined {
  const config = manifestObject(bytes)?.config;
  return isObject(config) && typeof config.mediaType === 'string' ? config.mediaType : undefined;
}

/** The config and layers of an image manifest that have a valid digest and size (none for an index or bad bytes). */
export function imageBlobs(bytes: Uint8Array): Array<{ digest: Digest; size: number }> {
  const doc = manifestObject(bytes);
  if (doc === undefined) return [];
  const all: unknown[] = [doc.config, ...(Array.isArray(doc.layers) ? doc.layers : [])];
  return all.flatMap((d) => (isObject(d) && typeof d.digest === 'string' && isDigest(d.digest) && isSize(d.size) ? [{ digest: d.digest, size: d.size }] : []));
}

/**
 * The descriptor a referrers API lists for a referrer manifest (distribution-spec "Listing
 * Referrers": artifactType, else the config's media type; the manifest's annotations).
 * Computed the same way by `mirror` and `--import`, so both write the same catalog record.
 */
export function referrerDescriptor(digest: Digest, mediaType: string, size: number, m: ParsedManifest & { kind: 'image' }): Descriptor {
  return {
    mediaType,
    digest,
    size,
    artifactType: m.artifactType ?? m.configMediaType,
    ...(m.annotations ? { annotations: m.annotations } : {}),
  };
}
