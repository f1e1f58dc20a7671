import { isDigest, type Digest } from '../oci/digest.js';
import type { Outcome } from '../verify/types.js';
import { keyOf, parseKey, type RecordKind, type RecordRef, type RefOf } from './catalog-keys.js';
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

/**
 * A verdict, written when serve or mirror let an image through, for inspection; nothing reads it
 * back to decide (a verdict is made again from the stored signature data under the current policy).
 */
export interface VerdictRecord {
  readonly outcome: Outcome;
  readonly decidedAt: number;
}

/** A record as it was (null: there was none), to be put back with `restore`. */
export type RecordSnapshot = { readonly value: unknown } | null;

function namersOf(value: unknown): Digest[] {
  const list = typeof value === 'object' && value !== null ? (value as { namedBy?: unknown }).namedBy : undefined;
  return Array.isArray(list) ? list.filter((d): d is Digest => typeof d === 'string' && isDigest(d)).slice(0, MAX_BLOB_NAMERS) : [];
}

/**
 * What the content store knows about images, on top of content-addressed objects: which
 * repository holds which manifest and blob (a digest seen in repository A is not served as
 * repository B's), the last tag → digest of each tag, referrers, and verdicts. Callers pass the
 * parts of a record; its key is built and parsed in catalog-keys.ts only.
 */
export class Catalog {
  readonly #store: ContentStore;
  readonly #recordListeners: Array<(ref: RecordRef, value: unknown) => void> = [];

  constructor(store: ContentStore) {
    this.#store = store;
  }

  /**
   * Calls `listener` after each record this catalog writes (any kind; a `restore` that puts one
   * back included, a removal not), with its ref and value, synchronously: a listener only takes
   * note (replication queues it). One that throws is ignored: the record is written.
   */
  onRecord(listener: (ref: RecordRef, value: unknown) => void): void {
    this.#recordListeners.push(listener);
  }

  async putTag(upstream: string, repository: string, tag: string, rec: TagRecord): Promise<void> {
    await this.#put({ kind: 'tag', upstream, repository, tag }, rec);
  }

  async getTag(upstream: string, repository: string, tag: string): Promise<{ value: TagRecord; updated: number } | null> {
    const r = await this.#get<TagRecord>({ kind: 'tag', upstream, repository, tag });
    return r && isDigest(r.value?.digest) ? r : null;
  }

  /** Removes a tag record; false when there was none. */
  deleteTag(upstream: string, repository: string, tag: string): Promise<boolean> {
    return this.#store.deleteMeta('tag', keyOf({ kind: 'tag', upstream, repository, tag }));
  }

  async listTags(upstream: string, repository: string): Promise<string[]> {
    return (await this.records('tag')).filter((t) => t.ref.upstream === upstream && t.ref.repository === repository).map((t) => t.ref.tag);
  }

  /** Stores a manifest (digest checked by the store) and records that `repository` holds it. */
  async putManifest(upstream: string, repository: string, digest: Digest, mediaType: string, bytes: Buffer): Promise<void> {
    await this.#store.putBytes(digest, bytes);
    await this.#put({ kind: 'manifest', upstream, repository, digest }, { mediaType, size: bytes.length } satisfies ManifestRecord);
  }

  /** Is `repository`'s record of the manifest there (the object itself may be gone)? */
  async hasManifestRecord(upstream: string, repository: string, digest: Digest): Promise<boolean> {
    return (await this.#get({ kind: 'manifest', upstream, repository, digest })) !== null;
  }

  async getManifest(upstream: string, repository: string, digest: Digest): Promise<{ bytes: Buffer; mediaType: string } | null> {
    const rec = await this.#get<ManifestRecord>({ kind: 'manifest', upstream, repository, digest });
    if (!rec) return null;
    const bytes = await this.#store.readAll(digest, MANIFEST_READ_MAX);
    return bytes ? { bytes, mediaType: rec.value.mediaType } : null;
  }

  /** Records that `repository` holds the blob, and (when given) the manifest that names it there. */
  async noteBlob(upstream: string, repository: string, digest: Digest, namedBy?: Digest): Promise<void> {
    const ref: RecordRef = { kind: 'blob', upstream, repository, digest };
    const prior = await this.#get<unknown>(ref);
    const namers = prior ? namersOf(prior.value) : [];
    if (prior && (namedBy === undefined || namers[0] === namedBy)) return; // nothing new to record
    const next = namedBy === undefined ? namers : [namedBy, ...namers.filter((d) => d !== namedBy)].slice(0, MAX_BLOB_NAMERS);
    await this.#put(ref, { namedBy: next } satisfies BlobRecord);
  }

  /**
   * The manifests recorded as naming the blob in `repository`, newest first (none for records of
   * older stores); null when `repository` has no record of the blob.
   */
  async blobNamers(upstream: string, repository: string, digest: Digest): Promise<Digest[] | null> {
    const r = await this.#get<unknown>({ kind: 'blob', upstream, repository, digest });
    return r ? namersOf(r.value) : null;
  }

  /** Is the blob stored and known to belong to `repository`? */
  async hasBlob(upstream: string, repository: string, digest: Digest): Promise<boolean> {
    return (await this.#get({ kind: 'blob', upstream, repository, digest })) !== null && (await this.#store.has(digest));
  }

  async putReferrers(upstream: string, repository: string, digest: Digest, manifests: readonly unknown[]): Promise<void> {
    await this.#put({ kind: 'referrers', upstream, repository, digest }, manifests);
  }

  async getReferrers(upstream: string, repository: string, digest: Digest): Promise<unknown[] | null> {
    return (await this.#get<unknown[]>({ kind: 'referrers', upstream, repository, digest }))?.value ?? null;
  }

  async putVerdict(upstream: string, repository: string, digest: Digest, policyFingerprint: string, rec: VerdictRecord): Promise<void> {
    await this.#put({ kind: 'verdict', upstream, repository, digest, policyFingerprint }, rec);
  }

  /** Every record of one kind with its parts (`sigil cache ls`, an import); a document whose key does not parse is left out. */
  async records<K extends RecordKind>(kind: K): Promise<Array<{ ref: RefOf<K>; value: unknown; updated: number }>> {
    const out: Array<{ ref: RefOf<K>; value: unknown; updated: number }> = [];
    for (const d of await this.#store.listMeta<unknown>(kind)) {
      const ref = parseKey(kind, d.key);
      if (ref !== undefined) out.push({ ref, value: d.value, updated: d.updated });
    }
    return out;
  }

  /**
   * Removes every record of one kind that `stale` says is stale; `ref` is undefined for a
   * document whose key does not parse (it may be removed too). Returns how many were removed.
   */
  async dropRecords<K extends RecordKind>(kind: K, stale: (ref: RefOf<K> | undefined, value: unknown) => Promise<boolean> | boolean): Promise<number> {
    let n = 0;
    for (const d of await this.#store.listMeta<unknown>(kind)) {
      if ((await stale(parseKey(kind, d.key), d.value)) && (await this.#store.deleteMeta(kind, d.key))) n++;
    }
    return n;
  }

  /** The record as it is now, to be put back later with `restore` (an import taking out what it wrote). */
  async snapshot(ref: RecordRef): Promise<RecordSnapshot> {
    const r = await this.#get<unknown>(ref);
    return r === null ? null : { value: r.value };
  }

  /** Puts a record back as `snapshot` found it: removed when there was none. */
  async restore(ref: RecordRef, snapshot: RecordSnapshot): Promise<void> {
    if (snapshot === null) await this.#store.deleteMeta(ref.kind, keyOf(ref));
    else await this.#put(ref, snapshot.value);
  }

  async #put(ref: RecordRef, value: unknown): Promise<void> {
    await this.#store.putMeta(ref.kind, keyOf(ref), value);
    for (const listener of this.#recordListeners) {
      try {
        listener(ref, value);
      } catch {
        // a listener's failure is its own (it logs); the record is written
      }
    }
  }

  #get<T>(ref: RecordRef): Promise<{ value: T; updated: number } | null> {
    return this.#store.getMeta<T>(ref.kind, keyOf(ref));
  }
}
