import { PassThrough } from 'node:stream';
import { LRUCache } from 'lru-cache';
import type { Logger } from 'pino';
import type { Config } from '../config/types.js';
import { isDigest, type Digest } from '../oci/digest.js';
import { findPolicy } from '../policy/match.js';
import { MAX_SIGNATURE_BLOB_BYTES } from '../signatures/limits.js';
import type { Catalog } from '../store/catalog.js';
import type { ContentStore } from '../store/content-store.js';
import type { BlobRequest, BlobResponse, FetchedManifest, ReferrersAnswer, UpstreamRegistry } from '../upstream/types.js';
import type { Evaluation, ManifestTarget } from './evaluation.js';
import { tryParseJson } from '../oci/json.js';

/** Blob digests of verified manifests remembered for admission to the store (enforce mode). */
const ADMITTED_MAX = 100_000;

/** What a signature lookup read, to be stored with the image it signs once the image may be stored. */
export interface Recording {
  readonly upstream: string;
  readonly manifests: Array<{ repository: string; reference: string; manifest: FetchedManifest }>;
  readonly blobs: Array<{ repository: string; digest: Digest; bytes: Buffer }>;
  readonly referrers: Array<{ repository: string; digest: Digest; manifests: unknown[] }>;
}

/**
 * How long a kept manifest's records are trusted without reading them back: another sigil
 * process sharing the store may sweep them (after evicting the object) meanwhile; its
 * sweeps run at most every 10 minutes too.
 */
export const KEPT_TRUST_MS = 10 * 60_000;

/**
 * Decides what goes into the content store and puts it there: a manifest once the gate let it
 * through (in enforce mode: verified), the tag that named it, the signature data its verdict was
 * made from (so a restarted or offline sigil can re-verify), and which blobs may be stored —
 * in enforce mode only those a verified manifest of the repository names.
 */
export class Keeper {
  readonly #catalog: Catalog;
  readonly #content: ContentStore;
  readonly #now: () => number;
  readonly #config: Config;
  readonly #log: Logger;
  /**
   * (upstream/repo, tag or '') → the digest last kept for it, and the store's sweep count
   * then. Trusted without reading the records back only while no sweep of this process
   * ran since, and for KEPT_TRUST_MS (a process sharing the directory sweeps too).
   */
  readonly #kept = new LRUCache<string, { digest: string; sweeps: number; at: number }>({ max: 50_000 });
  /**
   * Blobs named by a manifest that was let through in this process (enforce: verified), with the
   * size its descriptor gives and that manifest; forgotten with the verdict (cache.verifications.ttl).
   */
  readonly #admitted: LRUCache<string, { size: number; manifest: Digest }>;

  constructor(store: { readonly content: ContentStore; readonly catalog: Catalog }, config: Config, logger: Logger, now: () => number = Date.now) {
    this.#now = now;
    this.#catalog = store.catalog;
    this.#content = store.content;
    this.#config = config;
    this.#log = logger;
    const { ttlMs } = config.cache.verifications;
    this.#admitted = new LRUCache({ max: ADMITTED_MAX, ttl: Math.max(1, ttlMs), perf: { now } });
  }

  /** Kept already: the object is on disk, and this key's records too (read back after a sweep). */
  async #stillKept(key: string, target: ManifestTarget, digest: Digest): Promise<boolean> {
    const kept = this.#kept.get(key);
    if (kept?.digest !== digest) return false;
    if (!(await this.#content.onDisk(digest))) return false;
    const sweeps = this.#content.metaSweeps;
    if (kept.sweeps === sweeps && this.#now() - kept.at < KEPT_TRUST_MS) return true;
    if (!(await this.#catalog.hasManifestRecord(target.upstream, target.repository, digest))) return false;
    if (!isDigest(target.reference) && (await this.#catalog.getTag(target.upstream, target.repository, target.reference))?.value.digest !== digest) return false;
    this.#kept.set(key, { digest, sweeps, at: this.#now() });
    return true;
  }

  /**
   * The store admission rule for blobs: false, or the size to hold the download to (the
   * descriptor's, when a kept manifest named it; the upstream cannot make it longer).
   */
  admitBlob(upstream: string, repository: string, digest: Digest): false | { size?: number; manifest?: Digest } {
    const admitted = this.#admitted.get(`${upstream}|${repository}|${digest}`);
    if (admitted !== undefined) return admitted;
    const policy = findPolicy(this.#config.policies, upstream, repository);
    return policy?.mode === 'enforce' ? false : {};
  }

  /** Did a manifest let through in this process, within the verdict lifetime, name this blob in this repository? */
  admittedBy(upstream: string, repository: string, digest: Digest): boolean {
    return this.#admitted.has(`${upstream}|${repository}|${digest}`);
  }

  /** The manifests the store records as naming a blob in this repository; null: no record of it there. */
  blobNamers(upstream: string, repository: string, digest: Digest): Promise<Digest[] | null> {
    return this.#catalog.blobNamers(upstream, repository, digest);
  }

  /** After a manifest was let through: store it (and its tag), and admit the blobs it names. */
  async keep(target: ManifestTarget, ev: Evaluation): Promise<void> {
    const m = ev.manifest;
    const enforce = ev.policy?.mode === 'enforce';
    if (enforce && ev.basis !== 'signature-artifact' && ev.outcome?.kind !== 'verified') return;
    // Blobs named by a manifest that was let through may be stored, held to their descriptor's size;
    // a signature artifact's are the ones whose bytes were checked (and are stored as those bytes).
    const named = ev.basis === 'signature-artifact' ? (ev.signatureBlobs ?? []) : blobDescriptors(m.bytes);
    for (const d of named) this.#admitted.set(`${target.upstream}|${target.repository}|${d.digest}`, { size: d.size, manifest: m.digest });
    if (m.stale) return; // read from the store: nothing new to keep
    const key = `${target.upstream}/${target.repository}|${isDigest(target.reference) ? '' : target.reference}`;
    // Kept already, and still stored with this key's records (eviction, a metadata sweep or
    // another process may have removed them since).
    if (await this.#stillKept(key, target, m.digest)) return;
    try {
      await this.#catalog.putManifest(target.upstream, target.repository, m.digest, m.mediaType, m.bytes);
      if (!isDigest(target.reference)) {
        await this.#catalog.putTag(target.upstream, target.repository, target.reference, { digest: m.digest, mediaType: m.mediaType });
      }
      for (const b of ev.signatureBlobs ?? []) {
        if (b.bytes === undefined) continue;
        await this.#content.putBytes(b.digest, b.bytes);
        await this.#catalog.noteBlob(target.upstream, target.repository, b.digest, m.digest);
      }
      if (ev.outcome && ev.policy) await this.#catalog.putVerdict(target.upstream, target.repository, m.digest, ev.policy.fingerprint, { outcome: ev.outcome, decidedAt: this.#now() });
      this.#kept.set(key, { digest: m.digest, sweeps: this.#content.metaSweeps, at: this.#now() });
    } catch (err) {
      // The store is a cache: a failure to keep never fails the pull.
      this.#log.warn({ err: String(err), digest: m.digest }, 'content store: manifest not kept');
    }
  }

  /** A registry that records what signature discovery reads through it. */
  recording(registry: UpstreamRegistry): { registry: UpstreamRegistry; recording: Recording } {
    const rec: Recording = { upstream: registry.name, manifests: [], blobs: [], referrers: [] };
    const wrapped: UpstreamRegistry = {
      name: registry.name,
      fetchManifest: async (repository, reference, opts) => {
        const manifest = await registry.fetchManifest(repository, reference, opts);
        rec.manifests.push({ repository, reference, manifest });
        return manifest;
      },
      openBlob: async (repository: string, digest: Digest, req: BlobRequest): Promise<BlobResponse> => {
        const res = await registry.openBlob(repository, digest, req);
        if (res.body === null || req.range !== undefined) return res;
        const chunks: Buffer[] = [];
        let size = 0;
        const tee = new PassThrough();
        tee.on('data', (c: Buffer) => {
          size += c.length;
          if (size <= MAX_SIGNATURE_BLOB_BYTES) chunks.push(c);
        });
        tee.on('end', () => {
          if (size <= MAX_SIGNATURE_BLOB_BYTES) rec.blobs.push({ repository, digest, bytes: Buffer.concat(chunks) });
        });
        const body = res.body;
        body.on('error', (e) => tee.destroy(e));
        // A reader that stops (discovery's deadline, an over-long blob) closes the upstream body too.
        tee.once('close', () => body.destroy());
        body.pipe(tee);
        return { ...res, body: tee };
      },
      referrers: async (repository: string, digest: Digest, artifactType?: string): Promise<ReferrersAnswer> => {
        const a = await registry.referrers(repository, digest, artifactType);
        if (a.kind === 'api') {
          // not JSON (or too deep): not recorded; discovery reports the bad answer itself
          const list = (tryParseJson(a.body) as { manifests?: unknown } | null | undefined)?.manifests;
          if (Array.isArray(list)) rec.referrers.push({ repository, digest, manifests: list });
        }
        return a;
      },
      listTags: (repository, q) => registry.listTags(repository, q),
      ping: () => registry.ping(),
      close: () => registry.close(),
    };
    return { registry: wrapped, recording: rec };
  }

  /** Stores the signature data of the verdict on `subject` that let the image through (served while it passes). */
  async keepSignatures(rec: Recording, subject: Digest): Promise<void> {
    try {
      for (const m of rec.manifests) {
        await this.#catalog.putManifest(rec.upstream, m.repository, m.manifest.digest, m.manifest.mediaType, m.manifest.bytes);
        if (!isDigest(m.reference)) {
          await this.#catalog.putTag(rec.upstream, m.repository, m.reference, { digest: m.manifest.digest, mediaType: m.manifest.mediaType });
        }
      }
      for (const b of rec.blobs) {
        await this.#content.putBytes(b.digest, b.bytes);
        await this.#catalog.noteBlob(rec.upstream, b.repository, b.digest, subject);
      }
      for (const r of rec.referrers) await this.#catalog.putReferrers(rec.upstream, r.repository, r.digest, r.manifests);
    } catch (err) {
      this.#log.warn({ err: String(err) }, 'content store: signatures not kept');
    }
  }
}

/** config and layer descriptors of an image manifest (none for an index). */
function blobDescriptors(bytes: Buffer): Array<{ digest: Digest; size: number }> {
  try {
    const doc = tryParseJson(bytes) as { config?: unknown; layers?: unknown } | null | undefined;
    if (typeof doc !== 'object' || doc === null) return [];
    const all = [doc.config, ...(Array.isArray(doc.layers) ? doc.layers : [])] as Array<{ digest?: unknown; size?: unknown } | null>;
    return all.flatMap((d) =>
      d && typeof d.digest === 'string' && isDigest(d.digest) && typeof d.size === 'number' && Number.isSafeInteger(d.size) && d.size >= 0
        ? [{ digest: d.digest, size: d.size }]
        : [],
    );
  } catch {
    return [];
  }
}
