import { lru } from '../lru.js';
import type { Logger } from 'pino';
import { causeOf } from '../errors.js';
import type { FetchedManifest, Registry } from '../oci/registry.js';
import type { ManifestTarget, SignatureBlob } from '../policy/evaluation.js';
import { isSignatureArtifact } from '../signatures/artifact.js';
import { checkSignatureArtifact, type ArtifactContent } from '../signatures/artifact-content.js';
import type { DecisionDeadline } from './decision-deadline.js';
import type { VerificationSlots } from './verification-slots.js';

/** Signature-artifact verdicts remembered by manifest digest (content-addressed: the answer never changes). */
export const ARTIFACT_MEMO_MAX = 10_000;
/** Blobs of signature artifacts remembered, so that the blob endpoint serves them only digest-checked. */
export const SIGNATURE_BLOBS_MAX = 100_000;

/** Whether a manifest shaped like a signature artifact is one: its blobs, or why not. */
export type ArtifactJudgement = { ok: true; blobs: readonly SignatureBlob[] } | { ok: false; reason: string };

/**
 * Judges manifests shaped like signature artifacts: such a manifest passes unverified only if
 * its blobs, read from the upstream within the decision's deadline and holding one of the
 * upstream's verification slots, prove it is signature data. Judgements are remembered by media
 * type and digest (its blobs are named by digest: the answer never changes; upstream failures are
 * not remembered), and so are the blobs found to be signature data, which the blob endpoint then
 * serves only digest-checked.
 */
export class ArtifactJudge {
  readonly #slots: VerificationSlots;
  readonly #log: Logger;
  readonly #memo = lru<string, ArtifactJudgement>(ARTIFACT_MEMO_MAX);
  /** Whether a manifest is shaped like a signature artifact, by media type and digest (parsed once, not per request). */
  readonly #shapes = lru<string, boolean>(ARTIFACT_MEMO_MAX);
  /** `upstream|repo|digest` of blobs checked as signature data. */
  readonly #signatureBlobs = lru<string, true>(SIGNATURE_BLOBS_MAX);

  constructor(deps: { slots: VerificationSlots; logger: Logger }) {
    this.#slots = deps.slots;
    this.#log = deps.logger;
  }

  /** isSignatureArtifact, remembered by media type and digest. */
  shapedLikeArtifact(manifest: FetchedManifest): boolean {
    const key = `${manifest.mediaType}|${manifest.digest}`;
    let shaped = this.#shapes.get(key);
    if (shaped === undefined) {
      shaped = isSignatureArtifact(manifest.mediaType, manifest.bytes);
      this.#shapes.set(key, shaped);
    }
    return shaped;
  }

  /** Was `digest` checked as signature data of a signature artifact in this repository? */
  isSignatureBlob(upstream: string, repository: string, digest: string): boolean {
    return this.#signatureBlobs.has(`${upstream}|${repository}|${digest}`);
  }

  /**
   * Reads and judges the blobs of a manifest shaped like a signature artifact (remembered by
   * digest) under the decision's deadline: past it, not shown to be signature data (judged as an
   * image: fail closed). The blobs of one that is are remembered as signature data of `target`'s
   * repository.
   */
  async judge(client: Registry, target: ManifestTarget, manifest: FetchedManifest, deadline: DecisionDeadline): Promise<ArtifactJudgement> {
    const judged = await this.#judge(client, target, manifest, deadline);
    if (judged.ok) for (const b of judged.blobs) this.#signatureBlobs.set(`${target.upstream}|${target.repository}|${b.digest}`, true);
    return judged;
  }

  async #judge(client: Registry, target: ManifestTarget, manifest: FetchedManifest, deadline: DecisionDeadline): Promise<ArtifactJudgement> {
    const memoKey = `${manifest.mediaType}|${manifest.digest}`;
    const known = this.#memo.get(memoKey);
    if (known) return known;
    let release: () => void;
    try {
      release = await this.#slots.acquire(target.upstream, deadline.signal);
    } catch (e) {
      return { ok: false, reason: `its blobs were not read: ${causeOf(e)}, waiting for a verification slot` };
    }
    let content: ArtifactContent;
    try {
      content = await checkSignatureArtifact(client, target.repository, manifest.bytes, { signal: deadline.signal });
    } catch (e) {
      // Could not read its blobs (in time): not shown to be signature data, so judged as an image (not remembered).
      return { ok: false, reason: `its blobs could not be read: ${causeOf(e)}` };
    } finally {
      release();
    }
    const judged = content.ok
      ? { ok: true as const, blobs: content.blobs.map((b) => ({ digest: b.digest, size: b.bytes.length, bytes: b.bytes })) }
      : { ok: false as const, reason: content.reason };
    this.#memo.set(memoKey, judged.ok ? { ok: true, blobs: judged.blobs.map(({ digest, size }) => ({ digest, size })) } : judged);
    if (!judged.ok) this.#log.warn({ upstream: target.upstream, repository: target.repository, digest: manifest.digest, reason: judged.reason }, 'shaped like a signature artifact, but its content is not signature data: verified as an image');
    return judged;
  }
}
