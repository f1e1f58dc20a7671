import { lru } from '../lru.js';
import type { Logger } from 'pino';
import { isDigest, type Digest } from '../oci/digest.js';
import type { FetchedManifest, Registry } from '../oci/registry.js';
import { mayKeep } from '../policy/decide.js';
import { imageBlobs } from '../oci/manifest.js';
import type { KeptJudgement, StoreAdmission } from './admission.js';
import { KeptMemo, type KeptAt } from './kept.js';
import type { StoreParts } from './offline.js';
import { recording, type Recording } from './recording.js';

/** Manifests whose blob descriptors are remembered (content-addressed: parsed once, not per pull). */
const DESCRIPTORS_MAX = 10_000;

/** What the gate let through, as the keeper reads it (the gate's Evaluation has this shape). */
export interface LetThrough extends KeptJudgement {
  readonly manifest: FetchedManifest;
  readonly policy?: NonNullable<KeptJudgement['policy']>;
  /** basis 'signature-artifact': its blobs, checked to be signature data (with their bytes the first time). */
  readonly signatureBlobs?: ReadonlyArray<{ readonly digest: Digest; readonly size: number; readonly bytes?: Buffer }>;
}

/**
 * What the gate asks of the content store: it decides, this keeps. With no store the gate has none.
 */
export interface Keep {
  /** After a manifest was let through: admit the blobs it names, store it (and its tag, its verdict). */
  keep(at: KeptAt, ev: LetThrough): Promise<void>;
  /** The registry one verification reads signatures through, recorded (recording.ts). */
  record(registry: Registry): { registry: Registry; recording: Recording };
  /** Stores the signature data a verdict on `subject` was made from, when the image it signs may be stored. */
  keepSignatures(rec: Recording, subject: Digest, judged: KeptJudgement): Promise<void>;
  /** Did a manifest let through in this process, within the verdict lifetime, name this blob in this repository? */
  admittedBy(upstream: string, repository: string, digest: Digest): boolean;
  /** May a stored blob of this repository be served without a passing manifest that names it? */
  servesUnnamed(upstream: string, repository: string): boolean;
  /** The manifests the store records as naming a blob in this repository; null: no record of it there. */
  blobNamers(upstream: string, repository: string, digest: Digest): Promise<Digest[] | null>;
}

/**
 * The one writer of the store's manifests, tags, signature data and verdicts (blobs are written
 * by the write-through layer): what the gate let through — under enforce only what verified
 * (admission.ts) — so that a restarted or offline sigil can serve and re-verify it. The store is
 * a cache: a failure to keep is logged, never the pull's failure.
 */
export class StoreKeeper implements Keep {
  readonly #store: StoreParts;
  readonly #admission: StoreAdmission;
  readonly #log: Logger;
  readonly #now: () => number;
  readonly #kept: KeptMemo;
  readonly #descriptors = lru<Digest, ReadonlyArray<{ digest: Digest; size: number }>>(DESCRIPTORS_MAX);

  constructor(store: StoreParts, admission: StoreAdmission, logger: Logger, now: () => number = Date.now) {
    this.#store = store;
    this.#admission = admission;
    this.#log = logger;
    this.#now = now;
    this.#kept = new KeptMemo(store, now);
  }

  async keep(at: KeptAt, ev: LetThrough): Promise<void> {
    const m = ev.manifest;
    if (!mayKeep(ev.policy, ev)) return;
    // Blobs named by a manifest that was let through may be stored, held to their descriptor's size;
    // a signature artifact's are the ones whose bytes were checked (and are stored as those bytes).
    const named = ev.basis === 'signature-artifact' ? (ev.signatureBlobs ?? []) : this.#blobsOf(m);
    this.#admission.admitNamed(at.upstream, at.repository, m.digest, named);
    if (m.stale) return; // read from the store: nothing new to keep
    // Kept already, and still stored with this key's records (eviction, a metadata sweep or
    // another process may have removed them since).
    if (await this.#kept.still(at, m.digest)) return;
    const { content, catalog } = this.#store;
    try {
      await catalog.putManifest(at.upstream, at.repository, m.digest, m.mediaType, m.bytes);
      if (!isDigest(at.reference)) await catalog.putTag(at.upstream, at.repository, at.reference, { digest: m.digest, mediaType: m.mediaType });
      for (const b of ev.signatureBlobs ?? []) {
        if (b.bytes === undefined) continue;
        await content.putBytes(b.digest, b.bytes);
        await catalog.noteBlob(at.upstream, at.repository, b.digest, m.digest);
      }
      if (ev.outcome && ev.policy) await catalog.putVerdict(at.upstream, at.repository, m.digest, ev.policy.fingerprint, { outcome: ev.outcome, decidedAt: this.#now() });
      this.#kept.kept(at, m.digest);
    } catch (err) {
      this.#log.warn({ err: String(err), digest: m.digest }, 'content store: manifest not kept');
    }
  }

  record(registry: Registry): { registry: Registry; recording: Recording } {
    return recording(registry);
  }

  async keepSignatures(rec: Recording, subject: Digest, judged: KeptJudgement): Promise<void> {
    if (!mayKeep(judged.policy, judged)) return;
    const { content, catalog } = this.#store;
    try {
      for (const m of rec.manifests) {
        await catalog.putManifest(rec.upstream, m.repository, m.manifest.digest, m.manifest.mediaType, m.manifest.bytes);
        if (!isDigest(m.reference)) await catalog.putTag(rec.upstream, m.repository, m.reference, { digest: m.manifest.digest, mediaType: m.manifest.mediaType });
      }
      for (const b of rec.blobs) {
        await content.putBytes(b.digest, b.bytes);
        await catalog.noteBlob(rec.upstream, b.repository, b.digest, subject);
      }
      for (const r of rec.referrers) await catalog.putReferrers(rec.upstream, r.repository, r.digest, r.manifests);
    } catch (err) {
      this.#log.warn({ err: String(err) }, 'content store: signatures not kept');
    }
  }

  admittedBy(upstream: string, repository: string, digest: Digest): boolean {
    return this.#admission.admittedBy(upstream, repository, digest);
  }

  servesUnnamed(upstream: string, repository: string): boolean {
    return this.#admission.servesUnnamed(upstream, repository);
  }

  blobNamers(upstream: string, repository: string, digest: Digest): Promise<Digest[] | null> {
    return this.#store.catalog.blobNamers(upstream, repository, digest);
  }

  /** The config and layer descriptors of an image manifest (none for an index), parsed once per digest. */
  #blobsOf(m: FetchedManifest): ReadonlyArray<{ digest: Digest; size: number }> {
    let named = this.#descriptors.get(m.digest);
    if (named === undefined) {
      named = imageBlobs(m.bytes);
      this.#descriptors.set(m.digest, named);
    }
    return named;
  }
}
