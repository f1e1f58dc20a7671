import { SigilError } from '../errors.js';
import { isDigest, type Digest } from '../oci/digest.js';
import { INDEX_MEDIA_TYPES, MT } from '../oci/media-types.js';
import { parseJson } from '../oci/json.js';

/** A descriptor whose digest, size and media type were checked. */
export interface Descriptor {
  readonly mediaType: string;
  readonly digest: Digest;
  readonly size: number;
  readonly artifactType?: string;
  readonly annotations?: Readonly<Record<string, string>>;
  readonly platform?: Platform;
}

export interface Platform {
  readonly os: string;
  readonly architecture: string;
  readonly variant?: string;
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

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function stringRecord(v: unknown): Record<string, string> | undefined {
  if (!isObject(v)) return undefined;
  const entries = Object.entries(v).filter((e): e is [string, string] => typeof e[1] === 'string');
  return entries.length === Object.keys(v).length ? Object.fromEntries(entries) : undefined;
}

/** A checked descriptor; MANIFEST_INVALID naming `what` otherwise. */
export function descriptor(v: unknown, what: string): Descriptor {
  const bad = (why: string): SigilError => new SigilError({ code: 'MANIFEST_INVALID', message: `${what}: ${why}` });
  if (!isObject(v)) throw bad('not a descriptor');
  if (typeof v.digest !== 'string' || !isDigest(v.digest)) throw bad(`invalid digest ${JSON.stringify(v.digest)}`);
  if (typeof v.size !== 'number' || !Number.isSafeInteger(v.size) || v.size < 0) throw bad(`invalid size ${JSON.stringify(v.size)}`);
  if (typeof v.mediaType !== 'string' || v.mediaType === '') throw bad('no media type');
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

/**
 * Parses an image manifest or index (OCI or Docker schema 2) enough to copy it: every
 * descriptor it names, checked. `mediaType` is the type it was served or stored as.
 */
export function parseManifest(bytes: Buffer, mediaType: string, what: string): ParsedManifest {
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

/** Is this referrer a Sigstore bundle (what signature discovery reads)? */
export function isBundleReferrer(d: { artifactType?: unknown }): boolean {
  return d.artifactType === MT.SIGSTORE_BUNDLE_V03;
}

/** `linux/amd64`, `linux/arm64/v8`: parsed, or undefined when malformed. */
export function parsePlatform(text: string): Platform | undefined {
  const parts = text.split('/');
  if (parts.length < 2 || parts.length > 3 || parts.some((p) => !/^[a-z0-9_.-]+$/i.test(p))) return undefined;
  const [os, architecture, variant] = parts;
  return { os, architecture, ...(variant !== undefined ? { variant } : {}) };
}

/** A child of an index fits the wanted platforms (no list: every child); a variant asked for must match. */
export function platformWanted(d: Descriptor, wanted: readonly Platform[] | undefined): boolean {
  if (wanted === undefined) return true;
  const p = d.platform;
  if (p === undefined) return false;
  return wanted.some((w) => w.os === p.os && w.architecture === p.architecture && (w.variant === undefined || w.variant === p.variant));
}

export function platformText(p: Platform): string {
  return `${p.os}/${p.architecture}${p.variant !== undefined ? `/${p.variant}` : ''}`;
}
