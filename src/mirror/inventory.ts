import { isDigest, type Digest } from '../oci/digest.js';
import type { Catalog, TagRecord } from '../store/catalog.js';
import type { TagRef } from '../store/catalog-keys.js';
import type { ContentStore } from '../store/content-store.js';
import { MANIFEST_MAX_BYTES } from '../upstream/limits.js';
import { parseManifest, type ParsedManifest } from '../oci/manifest.js';

/**
 * What `sigil cache ls` and `sigil cache prune` work on. An image is kept or removed whole:
 * a unit is one stored (non-signature) tag with everything it reaches — the manifest, its
 * children and blobs, and the signature data of each of those manifests (cosign `.sig` and
 * referrers fallback tags in any repository, referrers records). Objects no unit reaches are
 * loose (blobs cached by digest only, orphans) and go first.
 */
export interface Unit {
  /** `<upstream>/<repository>:<tag>` */
  readonly ref: string;
  readonly digest: Digest;
  readonly mediaType: string;
  /** Every stored object the unit reaches, with its size. */
  readonly objects: ReadonlyMap<Digest, number>;
  readonly bytes: number;
  /** The most recent use of any of its objects (ms); null when none is stored. */
  readonly lastUsed: number | null;
  /** The manifest and every blob of every stored manifest are there (children left out by a platform filter do not count). */
  readonly complete: boolean;
  /** When the tag record was written. */
  readonly tagged: number;
}

export interface Inventory {
  readonly units: readonly Unit[];
  readonly loose: { readonly objects: number; readonly bytes: number };
  readonly total: { readonly objects: number; readonly bytes: number };
}

// cosign's `sha256-<hex>.sig` and `.att`, and the referrers fallback tag `sha256-<hex>`: signature data of that digest
const SIGNATURE_TAG_RE = /^(sha256|sha512)-([a-f0-9]{64}|[a-f0-9]{128})(\.sig|\.att)?$/;

/** The digest a signature tag belongs to, else undefined (an ordinary tag). */
export function signatureSubject(tag: string): Digest | undefined {
  const m = SIGNATURE_TAG_RE.exec(tag);
  if (!m) return undefined;
  const d = `${m[1]}:${m[2]}`;
  return isDigest(d) ? d : undefined;
}

/** The content store and its catalog. */
export interface Store {
  readonly content: ContentStore;
  readonly catalog: Catalog;
}

/** A stored tag as `cache ls` and `cache prune` name it: `<upstream>/<repository>:<tag>`. */
function refText(ref: TagRef): string {
  return `${ref.upstream}/${ref.repository}:${ref.tag}`;
}

function isTagRecord(value: unknown): value is TagRecord {
  const d = typeof value === 'object' && value !== null ? (value as { digest?: unknown }).digest : undefined;
  return typeof d === 'string' && isDigest(d);
}

/** A stored tag record. */
interface StoredTag {
  readonly ref: TagRef;
  readonly value: TagRecord;
  readonly updated: number;
}

/**
 * Reads the store's catalog and objects without marking anything used (a listing must not
 * change the LRU order it reports): manifests are read with `touch: false`.
 */
export class StoreWalker {
  readonly #store: ContentStore;
  readonly #catalog: Catalog;
  readonly #parsed = new Map<Digest, ParsedManifest | null>();
  #objects = new Map<Digest, { size: number; lastUsed: number }>();
  #sigTags = new Map<Digest, Digest[]>();
  #referrers = new Map<Digest, Digest[]>();

  constructor(store: Store) {
    this.#store = store.content;
    this.#catalog = store.catalog;
  }

  /** (Re)reads the object list and the signature records. */
  async load(): Promise<{ tags: StoredTag[] }> {
    this.#objects = new Map((await this.#store.list()).map((o) => [o.digest, { size: o.size, lastUsed: o.lastUsed }]));
    const tags = (await this.#catalog.records('tag')).flatMap((t) => (isTagRecord(t.value) ? [{ ref: t.ref, value: t.value, updated: t.updated }] : []));
    this.#sigTags = new Map();
    for (const t of tags) {
      const subject = signatureSubject(t.ref.tag);
      if (subject) this.#sigTags.set(subject, [...(this.#sigTags.get(subject) ?? []), t.value.digest]);
    }
    this.#referrers = new Map();
    for (const r of await this.#catalog.records('referrers')) {
      const subject = r.ref.digest;
      if (!Array.isArray(r.value)) continue;
      const digests = r.value.map((d) => (d as { digest?: unknown } | null)?.digest).filter((d): d is Digest => typeof d === 'string' && isDigest(d));
      this.#referrers.set(subject, [...(this.#referrers.get(subject) ?? []), ...digests]);
    }
    return { tags };
  }

  get objects(): ReadonlyMap<Digest, { size: number; lastUsed: number }> {
    return this.#objects;
  }

  /** Every unit (image tag) with what it reaches. */
  async units(tags: readonly StoredTag[]): Promise<Unit[]> {
    const units: Unit[] = [];
    for (const t of tags) {
      if (signatureSubject(t.ref.tag)) continue;
      const reach = new Map<Digest, number>();
      const state = { complete: true };
      await this.#visit(t.value.digest, reach, state, true);
      // signature data of every manifest reached (children may carry their own)
      for (const m of [...reach.keys()].filter((d) => this.#parsed.get(d))) {
        for (const s of [...(this.#sigTags.get(m) ?? []), ...(this.#referrers.get(m) ?? [])]) await this.#visit(s, reach, { complete: true }, false);
      }
      let bytes = 0;
      let lastUsed: number | null = null;
      for (const [d, size] of reach) {
        bytes += size;
        const o = this.#objects.get(d);
        if (o) lastUsed = Math.max(lastUsed ?? 0, o.lastUsed);
      }
      units.push({ ref: refText(t.ref), digest: t.value.digest, mediaType: t.value.mediaType, objects: reach, bytes, lastUsed, complete: state.complete, tagged: t.updated });
    }
    return units.sort((a, b) => (a.ref < b.ref ? -1 : 1));
  }

  async #visit(d: Digest, reach: Map<Digest, number>, state: { complete: boolean }, required: boolean): Promise<void> {
    if (reach.has(d)) return;
    const o = this.#objects.get(d);
    if (!o) {
      if (required) state.complete = false;
      return;
    }
    reach.set(d, o.size);
    const parsed = await this.#manifest(d);
    if (!parsed) return;
    if (parsed.kind === 'index') {
      for (const c of parsed.children) await this.#visit(c.digest, reach, state, false);
    } else {
      for (const b of parsed.blobs) {
        const blob = this.#objects.get(b.digest);
        if (blob) reach.set(b.digest, blob.size);
        else state.complete = false;
      }
    }
  }

  /** The object parsed as a manifest, or null when it is not one (a blob). Read without touching. */
  async #manifest(d: Digest): Promise<ParsedManifest | null> {
    const known = this.#parsed.get(d);
    if (known !== undefined) return known;
    let parsed: ParsedManifest | null = null;
    const size = this.#objects.get(d)?.size ?? Infinity;
    if (size <= MANIFEST_MAX_BYTES) {
      try {
        // hashed again by the store: a damaged object is removed and reads as absent (null)
        const bytes = await this.#store.readAll(d, MANIFEST_MAX_BYTES, { touch: false });
        if (bytes !== null && bytes[0] === 0x7b /* { */) parsed = parseManifest(bytes, '', d);
      } catch {
        parsed = null; // not JSON, not a manifest, or gone meanwhile
      }
    }
    this.#parsed.set(d, parsed);
    return parsed;
  }
}

export async function takeInventory(store: Store): Promise<Inventory> {
  const walker = new StoreWalker(store);
  const { tags } = await walker.load();
  const units = await walker.units(tags);
  const reached = new Set<Digest>();
  for (const u of units) for (const d of u.objects.keys()) reached.add(d);
  let looseObjects = 0;
  let looseBytes = 0;
  let bytes = 0;
  for (const [d, o] of walker.objects) {
    bytes += o.size;
    if (!reached.has(d)) {
      looseObjects++;
      looseBytes += o.size;
    }
  }
  return { units, loose: { objects: looseObjects, bytes: looseBytes }, total: { objects: walker.objects.size, bytes } };
}

export interface PruneOptions {
  /** Remove images (and loose objects) not used for this long. */
  readonly olderThanMs?: number;
  /** Then remove loose objects, then least recently used images, until the store holds at most this. */
  readonly maxBytes?: number;
  readonly now: number;
}

export interface PruneSummary {
  readonly removedTags: readonly string[];
  readonly removedObjects: number;
  readonly freedBytes: number;
  readonly removedRecords: number;
  readonly remaining: { readonly objects: number; readonly bytes: number };
}

/** What a prune removes: whole images, and the objects that go with them or are loose. */
export interface PrunePlan {
  /** The images removed whole, as `<upstream>/<repository>:<tag>`, sorted. */
  readonly removedTags: readonly string[];
  /** Each object removed, with its size. */
  readonly objects: ReadonlyMap<Digest, number>;
  readonly freedBytes: number;
  /** The store before the prune. */
  readonly total: { readonly objects: number; readonly bytes: number };
}

/**
 * What a prune removes (see Unit): images unused for `olderThanMs` and loose objects as old,
 * then loose objects and least recently used images until at most `maxBytes` remain. Reads
 * only: `cache prune --dry-run` reports it, pruneStore carries it out.
 */
export async function planPrune(store: Store, opts: PruneOptions): Promise<PrunePlan> {
  const walker = new StoreWalker(store);
  const { tags } = await walker.load();
  let kept = await walker.units(tags);
  const dropped: Unit[] = [];
  if (opts.olderThanMs !== undefined) {
    const cutoff = opts.now - opts.olderThanMs;
    dropped.push(...kept.filter((u) => (u.lastUsed ?? 0) < cutoff));
    kept = kept.filter((u) => (u.lastUsed ?? 0) >= cutoff);
  }
  const reachedBy = (units: readonly Unit[]): Set<Digest> => new Set(units.flatMap((u) => [...u.objects.keys()]));
  const remove = new Map<Digest, number>();
  let reached = reachedBy(kept);
  // loose (and newly unreached) objects: by age first
  const lru = [...walker.objects].sort((a, b) => a[1].lastUsed - b[1].lastUsed);
  if (opts.olderThanMs !== undefined) {
    const cutoff = opts.now - opts.olderThanMs;
    for (const [d, o] of lru) if (!reached.has(d) && o.lastUsed < cutoff) remove.set(d, o.size);
  }
  let total = 0;
  for (const o of walker.objects.values()) total += o.size;
  if (opts.maxBytes !== undefined) {
    let left = total;
    for (const size of remove.values()) left -= size;
    const limit = opts.maxBytes;
    for (const [d, o] of lru) {
      if (left <= limit) break;
      if (reached.has(d) || remove.has(d)) continue;
      remove.set(d, o.size);
      left -= o.size;
    }
    // then whole images, least recently used first (what another image shares stays)
    const byUse = [...kept].sort((a, b) => (a.lastUsed ?? 0) - (b.lastUsed ?? 0));
    while (left > limit && byUse.length > 0) {
      const u = byUse.shift() as Unit;
      dropped.push(u);
      kept = kept.filter((k) => k !== u);
      reached = reachedBy(kept);
      for (const [d, size] of u.objects) {
        if (reached.has(d) || remove.has(d) || !walker.objects.has(d)) continue;
        remove.set(d, size);
        left -= size;
      }
    }
  }
  let freedBytes = 0;
  for (const size of remove.values()) freedBytes += size;
  return { removedTags: [...new Set(dropped.map((u) => u.ref))].sort(), objects: remove, freedBytes, total: { objects: walker.objects.size, bytes: total } };
}

/**
 * Removes what planPrune plans, then every catalog record that names something no longer
 * stored, so that neither `serve --offline` nor `cache ls` sees half an image.
 */
export async function pruneStore(store: Store, opts: PruneOptions): Promise<PruneSummary> {
  const plan = await planPrune(store, opts);
  let removedObjects = 0;
  let freedBytes = 0;
  for (const [d, size] of plan.objects) {
    if (await store.content.remove(d)) {
      removedObjects++;
      freedBytes += size;
    }
  }
  const removedRecords = await dropStaleRecords(store, new Set(plan.removedTags));
  const usage = store.content.usage();
  return { removedTags: plan.removedTags, removedObjects, freedBytes, removedRecords, remaining: { objects: usage.objects, bytes: usage.bytes } };
}

/** Deletes tag records of dropped images and every record naming an object that is gone. */
async function dropStaleRecords(store: Store, droppedRefs: ReadonlySet<string>): Promise<number> {
  const present = async (d: Digest | undefined): Promise<boolean> => d !== undefined && (await store.content.has(d));
  let n = await store.catalog.dropRecords('tag', async (ref, value) => {
    const subject = ref && signatureSubject(ref.tag);
    return (ref !== undefined && droppedRefs.has(refText(ref))) || !(await present(isTagRecord(value) ? value.digest : undefined)) || (subject !== undefined && !(await present(subject)));
  });
  for (const kind of ['manifest', 'blob', 'referrers', 'verdict'] as const) n += await store.catalog.dropRecords(kind, async (ref) => !(await present(ref?.digest)));
  return n;
}
