import { isDigest, type Digest } from '../oci/digest.js';
import type { Outcome } from '../verify/types.js';
import type { ContentStore } from './content-store.js';

/** A manifest is at most this big (upstream/limits MANIFEST_MAX_BYTES): read back with this cap. */
const MANIFEST_READ_MAX = 4 * 1024 * 1024;

export interface TagRecord {
  readonly digest: Digest;
  readonly mediaType: string;
}

export interface ManifestRecord {
  readonly mediaType: string;
  readonly size: number;
}

/**
 * Manifests remembered as naming one stored blob in one repository, newest first. Under enforce a
 * stored blob is served only while one of them passes the current policy; a layer shared by many
 * images needs one that passes, not all of them.
 */
export const MAX_BLOB_NAMERS = 8;

/** What the catalog records of a blob in a repository (older stores wrote `1`: no manifests named). */
interface BlobRecord {
  readonly namedBy: readonly Digest[];
}

/** The catalog's metadata namespaces: each document is about one object (see `catalogSubject`). */
export const CATALOG_NAMESPACES = ['tag', 'manifest', 'blob', 'referrers', 'verdict'] as const;

/**
 * The object a catalog document is about, so that a metadata sweep can drop documents of
 * objects no longer stored: for `tag` the digest the tag points at; for `manifest`, `blob`,
 * `referrers` the digest after the key's last `@`; for `verdict`
 * (`<upstream>/<repo>@<digest>|<policy fingerprint>`, registry/keep.ts) the digest between the last
 * `@` before the first `|` and that `|`. undefined when the key or value does not parse (or the
 * namespace is not the catalog's): such a document is left alone.
 */
export function catalogSubject(ns: string, key: string, value: unknown): Digest | undefined {
  let d: unknown;
  switch (ns) {
    case 'tag':
      d = typeof value === 'object' && value !== null ? (value as { digest?: unknown }).digest : undefined;
      break;
    case 'manifest':
    case 'blob':
    case 'referrers':
      d = afterLastAt(key);
      break;
    case 'verdict': {
      const bar = key.indexOf('|');
      d = bar < 0 ? undefined : afterLastAt(key.slice(0, bar));
      break;
    }
    default:
      return undefined;
  }
  return typeof d === 'string' && isDigest(d) ? d : undefined;
}

function namersOf(value: unknown): Digest[] {
  const list = typeof value === 'object' && value !== null ? (value as { namedBy?: unknown }).namedBy : undefined;
  return Array.isArray(list) ? list.filter((d): d is Digest => typeof d === 'string' && isDigest(d)).slice(0, MAX_BLOB_NAMERS) : [];
}

function afterLastAt(s: string): string | undefined {
  const at = s.lastIndexOf('@');
  return at < 0 ? undefined : s.slice(at + 1);
}

/** A stored verdict, so that offline serving can decide without re-verifying when it is still fresh. */
export interface VerdictRecord {
  readonly outcome: Outcome;
  readonly decidedAt: number;
}

/**
 * What the content store knows about images, on top of content-addressed objects: which
 * repository holds which manifest and blob (a digest seen in repository A is not served as
 * repository B's), the last tag → digest of each tag, referrers, and verdicts. Namespaces:
 * `tag`, `manifest`, `blob`, `referrers`, `verdict`. Keys are `<upstream>/<repo>:<tag>` and
 * `<upstream>/<repo>@<digest>`; every part is validated before it reaches here.
 */
export class Catalog {
  readonly store: ContentStore;

  constructor(store: ContentStore) {
    this.store = store;
  }

  async putTag(upstream: string, repo: string, tag: string, rec: TagRecord): Promise<void> {
    await this.store.putMeta('tag', `${upstream}/${repo}:${tag}`, rec);
  }

  async getTag(upstream: string, repo: string, tag: string): Promise<{ value: TagRecord; updated: number } | null> {
    const r = await this.store.getMeta<TagRecord>('tag', `${upstream}/${repo}:${tag}`);
    return r && isDigest(r.value?.digest) ? r : null;
  }

  async listTags(upstream: string, repo: string): Promise<string[]> {
    const prefix = `${upstream}/${repo}:`;
    return (await this.store.listMeta<TagRecord>('tag')).filter((t) => t.key.startsWith(prefix)).map((t) => t.key.slice(prefix.length));
  }

  /** Stores a manifest (digest checked by the store) and records that `repo` holds it. */
  async putManifest(upstream: string, repo: string, digest: Digest, mediaType: string, bytes: Buffer): Promise<void> {
    await this.store.putBytes(digest, bytes);
    await this.store.putMeta('manifest', `${upstream}/${repo}@${digest}`, { mediaType, size: bytes.length } satisfies ManifestRecord);
  }

  /** Is `repo`'s record of the manifest there (the object itself may be gone)? */
  async hasManifestRecord(upstream: string, repo: string, digest: Digest): Promise<boolean> {
    return (await this.store.getMeta<ManifestRecord>('manifest', `${upstream}/${repo}@${digest}`)) !== null;
  }

  async getManifest(upstream: string, repo: string, digest: Digest): Promise<{ bytes: Buffer; mediaType: string } | null> {
    const rec = await this.store.getMeta<ManifestRecord>('manifest', `${upstream}/${repo}@${digest}`);
    if (!rec) return null;
    const bytes = await this.store.readAll(digest, MANIFEST_READ_MAX);
    return bytes ? { bytes, mediaType: rec.value.mediaType } : null;
  }

  /** Records that `repo` holds the blob, and (when given) the manifest that names it there. */
  async noteBlob(upstream: string, repo: string, digest: Digest, namedBy?: Digest): Promise<void> {
    const key = `${upstream}/${repo}@${digest}`;
    const prior = await this.store.getMeta<unknown>('blob', key);
    const namers = prior ? namersOf(prior.value) : [];
    if (prior && (namedBy === undefined || namers[0] === namedBy)) return; // nothing new to record
    const next = namedBy === undefined ? namers : [namedBy, ...namers.filter((d) => d !== namedBy)].slice(0, MAX_BLOB_NAMERS);
    await this.store.putMeta('blob', key, { namedBy: next } satisfies BlobRecord);
  }

  /**
   * The manifests recorded as naming the blob in `repo`, newest first (none for records of older
   * stores); null when `repo` has no record of the blob.
   */
  async blobNamers(upstream: string, repo: string, digest: Digest): Promise<Digest[] | null> {
    const r = await this.store.getMeta<unknown>('blob', `${upstream}/${repo}@${digest}`);
    return r ? namersOf(r.value) : null;
  }

  /** Is the blob stored and known to belong to `repo`? */
  async hasBlob(upstream: string, repo: string, digest: Digest): Promise<boolean> {
    return (await this.store.getMeta('blob', `${upstream}/${repo}@${digest}`)) !== null && (await this.store.has(digest));
  }

  async putReferrers(upstream: string, repo: string, digest: Digest, manifests: readonly unknown[]): Promise<void> {
    await this.store.putMeta('referrers', `${upstream}/${repo}@${digest}`, manifests);
  }

  async getReferrers(upstream: string, repo: string, digest: Digest): Promise<unknown[] | null> {
    return (await this.store.getMeta<unknown[]>('referrers', `${upstream}/${repo}@${digest}`))?.value ?? null;
  }

  async putVerdict(key: string, rec: VerdictRecord): Promise<void> {
    await this.store.putMeta('verdict', key, rec);
  }

  async getVerdict(key: string): Promise<VerdictRecord | null> {
    return (await this.store.getMeta<VerdictRecord>('verdict', key))?.value ?? null;
  }
}
