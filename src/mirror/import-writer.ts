import { pipeline } from 'node:stream/promises';
import { SigilError, messageOf } from '../errors.js';
import type { Digest } from '../oci/digest.js';
import { parseManifest, referrerDescriptor, type Descriptor } from '../oci/manifest.js';
import type { Catalog, RecordSnapshot } from '../store/catalog.js';
import { recordId, type ObjectRef, type RecordRef } from '../store/catalog-keys.js';
import type { ContentStore } from '../store/content-store.js';
import { inLayout, openLayoutBlob, readLayoutManifest } from './layout-objects.js';
import { MAX_INDEX_DEPTH } from './limits.js';

/** What importing one index.json entry touched. */
export interface Tally {
  readonly id: number;
  /** Every object the entry reaches, stored before or by this import. */
  readonly objects: Set<Digest>;
  /** The manifests among them (the entry's own and its children). */
  readonly manifests: Set<Digest>;
  /** Catalog records it wrote (recordId). */
  readonly records: Set<string>;
  /** Objects this import stored for it (absent before). */
  readonly created: Set<Digest>;
  newBytes: number;
  /** The `subject` of the entry's manifest (a referrer). */
  subject?: Digest;
}

/**
 * Writes the manifests and blobs of one layout into the content store with their catalog
 * records (and the referrers records their `subject`s call for), remembering what each record
 * was before, so that what did not pass can be taken out again.
 */
export class LayoutWriter {
  readonly #content: ContentStore;
  readonly #catalog: Catalog;
  readonly #dir: string;
  /** The referrers record of each subject (by recordId) → referrer descriptors by digest, with the entries that found them. */
  readonly #referrers = new Map<string, { ref: RecordRef & ObjectRef; found: Map<Digest, { desc: Descriptor; owners: Set<number> }> }>();
  /** recordId → the record, and what it was before this import wrote it. */
  readonly #prior = new Map<string, { ref: RecordRef; before: RecordSnapshot }>();

  constructor(store: { readonly content: ContentStore; readonly catalog: Catalog }, dir: string) {
    this.#content = store.content;
    this.#catalog = store.catalog;
    this.#dir = dir;
  }

  async manifest(upstream: string, repository: string, desc: Descriptor, tally: Tally, depth: number): Promise<void> {
    const bytes = await readLayoutManifest(this.#dir, desc);
    const parsed = parseManifest(bytes, desc.mediaType, `${upstream}/${repository}@${desc.digest}`);
    if (parsed.kind === 'index') {
      if (depth >= MAX_INDEX_DEPTH) throw new SigilError({ code: 'MANIFEST_INVALID', message: `${desc.digest}: indexes nested deeper than ${MAX_INDEX_DEPTH}` });
      for (const child of parsed.children) {
        if (await inLayout(this.#dir, child.digest)) await this.manifest(upstream, repository, child, tally, depth + 1);
      }
    } else {
      for (const b of parsed.blobs) await this.#blob(upstream, repository, b, tally, desc.digest);
      if (parsed.subject !== undefined) {
        if (depth === 0) tally.subject = parsed.subject.digest;
        const ref = { kind: 'referrers', upstream, repository, digest: parsed.subject.digest } as const;
        const id = recordId(ref);
        const list = this.#referrers.get(id)?.found ?? new Map<Digest, { desc: Descriptor; owners: Set<number> }>();
        const found = list.get(desc.digest) ?? { desc: referrerDescriptor(desc.digest, desc.mediaType, bytes.length, parsed), owners: new Set<number>() };
        found.owners.add(tally.id);
        list.set(desc.digest, found);
        this.#referrers.set(id, { ref, found: list });
      }
    }
    if (!(await this.#content.has(desc.digest))) {
      tally.newBytes += bytes.length;
      tally.created.add(desc.digest);
    }
    tally.objects.add(desc.digest);
    tally.manifests.add(desc.digest);
    await this.#remember({ kind: 'manifest', upstream, repository, digest: desc.digest }, tally);
    await this.#catalog.putManifest(upstream, repository, desc.digest, desc.mediaType, bytes);
  }

  /** Did the store hold `digest` for this repository before this import (its manifest record, then)? */
  async storedBefore(upstream: string, repository: string, digest: Digest): Promise<boolean> {
    const prior = this.#prior.get(recordId({ kind: 'manifest', upstream, repository, digest }));
    if (prior !== undefined) return prior.before !== null && (await this.#content.has(digest));
    return (await this.#catalog.hasManifestRecord(upstream, repository, digest)) && (await this.#content.has(digest));
  }

  async putTag(upstream: string, repository: string, tag: string, desc: Descriptor, tally: Tally): Promise<void> {
    await this.#remember({ kind: 'tag', upstream, repository, tag }, tally);
    await this.#catalog.putTag(upstream, repository, tag, { digest: desc.digest, mediaType: desc.mediaType });
  }

  /**
   * Referrers records: what the catalog listed before this import (by digest) plus the referrers
   * found by entries `keep` accepts, sorted as `mirror` writes them; with none, as it was before.
   */
  async writeReferrers(keep: (owners: ReadonlySet<number>) => boolean): Promise<void> {
    for (const [id, { ref, found }] of this.#referrers) {
      if (!this.#prior.has(id)) this.#prior.set(id, { ref, before: await this.#catalog.snapshot(ref) });
      const prior = this.#prior.get(id)?.before;
      const wanted = [...found].filter(([, f]) => keep(f.owners));
      if (wanted.length === 0) {
        await this.#restore(id);
        continue;
      }
      const merged = new Map<string, unknown>();
      for (const d of Array.isArray(prior?.value) ? (prior.value as unknown[]) : []) {
        const digest = (d as { digest?: unknown } | null)?.digest;
        if (typeof digest === 'string') merged.set(digest, d);
      }
      for (const [digest, f] of wanted) merged.set(digest, f.desc);
      const list = [...merged].sort((a, b) => (a[0] < b[0] ? -1 : 1)).map(([, d]) => d);
      await this.#catalog.putReferrers(ref.upstream, ref.repository, ref.digest, list);
    }
  }

  /**
   * Takes out what was imported for the `dropped` tallies: catalog records set back to what they
   * were, objects this import stored removed; except what a `kept` tally reaches.
   */
  async takeOut(dropped: readonly Tally[], kept: readonly Tally[]): Promise<void> {
    const keptRecords = new Set(kept.flatMap((t) => [...t.records]));
    const keptObjects = new Set(kept.flatMap((t) => [...t.objects]));
    for (const r of new Set(dropped.flatMap((t) => [...t.records]))) if (!keptRecords.has(r)) await this.#restore(r);
    for (const d of new Set(dropped.flatMap((t) => [...t.created]))) if (!keptObjects.has(d)) await this.#content.remove(d);
  }

  async #remember(ref: RecordRef, tally: Tally): Promise<void> {
    const id = recordId(ref);
    tally.records.add(id);
    if (this.#prior.has(id)) return;
    this.#prior.set(id, { ref, before: await this.#catalog.snapshot(ref) });
  }

  async #restore(id: string): Promise<void> {
    const prior = this.#prior.get(id);
    if (prior !== undefined) await this.#catalog.restore(prior.ref, prior.before);
  }

  async #blob(upstream: string, repository: string, d: Descriptor, tally: Tally, namedBy: Digest): Promise<void> {
    const store = this.#content;
    tally.objects.add(d.digest);
    if (!(await store.has(d.digest))) {
      const fh = await openLayoutBlob(this.#dir, d.digest);
      const w = store.beginWrite(d.digest, d.size);
      if (w.kind === 'follower') {
        await fh.close();
        w.stream.resume();
        await new Promise<void>((resolve, reject) => w.stream.once('end', resolve).once('error', reject));
      } else {
        w.done.catch(() => {});
        // The store hashes while writing: a wrong digest or size is DIGEST_MISMATCH, nothing stored.
        await pipeline(fh.createReadStream(), w.writer).catch(async (e: unknown) => {
          await w.done.catch(() => {});
          throw e;
        });
        try {
          await w.done;
        } catch (e) {
          throw new SigilError({ code: 'DIGEST_MISMATCH', message: `blob ${d.digest}: ${messageOf(e)}`, cause: e });
        }
        tally.newBytes += d.size;
        tally.created.add(d.digest);
      }
    }
    await this.#remember({ kind: 'blob', upstream, repository, digest: d.digest }, tally);
    await this.#catalog.noteBlob(upstream, repository, d.digest, namedBy);
  }
}
