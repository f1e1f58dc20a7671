import { LRUCache } from 'lru-cache';
import type { Logger } from 'pino';
import type { Metrics } from '../audit/metrics.js';
import { VerdictCache, VerifiedChildren, verdictKey } from './verdicts.js';
import type { Config, Policy } from '../config/types.js';
import { SigilError, isSigilError } from '../errors.js';
import { INDEX_MEDIA_TYPES } from '../oci/media-types.js';
import type { Digest } from '../oci/digest.js';
import { findPolicy } from '../policy/match.js';
import { discoverSignatures, type SignatureLocation } from '../signatures/discover.js';
import { isSignatureArtifact } from '../signatures/artifact.js';
import { checkSignatureArtifact, type ArtifactContent } from '../signatures/artifact-content.js';
import type { FetchedManifest, Registry } from '../oci/registry.js';
import type { Outcome, SignatureCheck } from '../verify/types.js';
import type { SignatureVerifier } from './verifier.js';
import type { Keep } from '../registry/keep.js';
import type { Recording } from '../registry/recording.js';
import type { Evaluation, ManifestDecision, ManifestTarget, SignatureBlob } from '../policy/evaluation.js';
import { decide, mayKeep } from '../policy/decide.js';
import { indexChildDigests } from '../oci/manifest.js';
import { VerificationSlots } from './verification-slots.js';
import { DecisionDeadline } from './decision-deadline.js';

export type { Basis, Evaluation, ManifestDecision, ManifestTarget, SignatureBlob, Verification } from '../policy/evaluation.js';

/** Signature-artifact verdicts remembered by manifest digest (content-addressed: the answer never changes). */
const ARTIFACT_MEMO_MAX = 10_000;
/** Blobs of signature artifacts remembered, so that the blob endpoint serves them only digest-checked. */
const SIGNATURE_BLOBS_MAX = 100_000;

/**
 * Signature lookups + verifications running at once, across all digests. Each may hold up to
 * MAX_DISCOVERY_BYTES of signature data and spend milliseconds of CPU on keyless checks; the
 * rest queue (cache hits and coalesced requests never do).
 */
export const MAX_CONCURRENT_VERIFICATIONS = 16;

/**
 * Of those, the most that the decisions of one upstream (the one signatures are read from) may
 * hold: half, so that an upstream that answers slowly — or drips its signature blobs on purpose —
 * leaves the other half to every other upstream, whose verifications go on at full speed.
 */
export const MAX_CONCURRENT_VERIFICATIONS_PER_UPSTREAM = MAX_CONCURRENT_VERIFICATIONS / 2;

/**
 * The upstream reads of one decision — a signature artifact's blobs, signature discovery and
 * verification, waiting for slots included — end within this long; past it the outcome is
 * `indeterminate` (denied under enforce, marked under warn) and the reads still under way are
 * destroyed. The per-request timeouts (connect 5 s, headers 15 s, whole metadata answer 20 s,
 * idle body 30 s) bound one request each, and a body that drips a byte now and then trips none
 * of them: without this, a decision could hold its slot for hours. A healthy upstream needs well
 * under a second: a verification is 5-8 small requests (token, referrers or the referrers tag,
 * the `.sig` tag — asked beside the referrers —, its payloads) and ~10-20 ms of CPU. 6 s, not
 * less: with a content store, a stored image whose upstream has gone silent re-verifies from the
 * store, and that costs at most one STALE_DEADLINE_MS (4 s) cut-off — the lookup that finds the
 * upstream failing (or a lookup of something not stored, side by side with it); for
 * STALE_BREAKER_MS after it the stored answers come at once — which leaves 2 s for the rest.
 */
export const VERIFICATION_DEADLINE_MS = 6_000;


/**
 * The one module that knows a manifest's whole path: fetch (buffered, hashed, digest-checked
 * by upstream/) → find signatures → verify → decide; the very bytes that were hashed and
 * verified are served. Verdicts are cached by digest, never by tag; concurrent identical
 * requests share one fetch and one verification.
 */
export class ManifestGate {
  readonly #clients: ReadonlyMap<string, Registry>;
  readonly #config: Config;
  readonly #metrics: Metrics;
  readonly #log: Logger;
  readonly #verifier: SignatureVerifier;
  readonly #keeper: Keep | null;
  readonly #verdicts: VerdictCache;
  readonly #children: VerifiedChildren;
  readonly #inflight = new Map<string, Promise<Evaluation>>();
  readonly #slots = new VerificationSlots({ total: MAX_CONCURRENT_VERIFICATIONS, perUpstream: MAX_CONCURRENT_VERIFICATIONS_PER_UPSTREAM });
  readonly #deadlineMs: number;
  /**
   * The judgement of a manifest shaped like a signature artifact, by media type and digest: its
   * blobs are named by digest, so the answer never changes (upstream failures are not remembered).
   */
  readonly #artifactMemo = new LRUCache<string, { ok: true; blobs: readonly SignatureBlob[] } | { ok: false; reason: string }>({ max: ARTIFACT_MEMO_MAX });
  /** Whether a manifest is shaped like a signature artifact, by media type and digest (parsed once, not per request). */
  readonly #artifactShapes = new LRUCache<string, boolean>({ max: ARTIFACT_MEMO_MAX });
  /** `upstream|repo|digest` of blobs checked as signature data: the blob endpoint hashes them whatever `verifyBlobDigests` says. */
  readonly #signatureBlobs = new LRUCache<string, true>({ max: SIGNATURE_BLOBS_MAX });
  /** Manifests enforce denied, so that /blobs/<digest> cannot serve the same bytes (containerd tries that). */
  readonly #denied: LRUCache<string, true>;

  constructor(deps: {
    config: Config;
    clients: ReadonlyMap<string, Registry>;
    metrics: Metrics;
    logger: Logger;
    verifier: SignatureVerifier;
    /** With a content store: what keeps what passes (registry/keep.ts). */
    keeper?: Keep;
    now?: () => number;
    /** Deadline of one signature discovery and verification (tests shorten it); default VERIFICATION_DEADLINE_MS. */
    verificationDeadlineMs?: number;
  }) {
    this.#deadlineMs = deps.verificationDeadlineMs ?? VERIFICATION_DEADLINE_MS;
    this.#keeper = deps.keeper ?? null;
    this.#config = deps.config;
    this.#clients = deps.clients;
    this.#metrics = deps.metrics;
    this.#log = deps.logger;
    this.#verifier = deps.verifier;
    const { maxEntries, ttlMs } = deps.config.cache.verifications;
    this.#verdicts = new VerdictCache({ maxEntries, ttlMs, now: deps.now });
    this.#children = new VerifiedChildren({ maxEntries: maxEntries * 4, ttlMs, now: deps.now });
    this.#denied = new LRUCache({ max: maxEntries, ttl: ttlMs, ...(deps.now ? { perf: { now: deps.now } } : {}) });
  }

  /** Verifications holding a slot and waiting for one, now (for tests and diagnostics). */
  get verificationSlots(): { readonly running: number; readonly waiting: number } {
    return { running: this.#slots.running, waiting: this.#slots.waiting };
  }

  /** Was `digest` denied as a manifest of this repository (within the verdict lifetime)? */
  wasDenied(upstream: string, repository: string, digest: string): boolean {
    return this.#denied.has(`${upstream}|${repository}|${digest}`);
  }

  /** Was `digest` checked as signature data of a signature artifact in this repository? (Served only digest-checked.) */
  isSignatureBlob(upstream: string, repository: string, digest: string): boolean {
    return this.#signatureBlobs.has(`${upstream}|${repository}|${digest}`);
  }

  /**
   * May a blob be served from the content store? Under enforce only while a manifest that passes
   * the current policy and trust names it in this repository: one let through in this process
   * within the verdict lifetime, else one the store records as naming it, judged now (from the
   * store's own copy and signatures when offline). Other modes: always.
   */
  async storedBlobAllowed(upstream: string, repository: string, digest: Digest): Promise<boolean> {
    const keeper = this.#keeper;
    if (!keeper) return true;
    if (keeper.servesUnnamed(upstream, repository)) return true;
    if (keeper.admittedBy(upstream, repository, digest)) return true;
    const namers = await keeper.blobNamers(upstream, repository, digest);
    if (namers === null) return true; // not stored for this repository: nothing to serve from the store
    for (const namer of namers) {
      const target = { upstream, repository, reference: namer };
      let ev: Evaluation;
      try {
        ev = await this.evaluate(target);
      } catch {
        continue; // that manifest cannot be judged now: it does not vouch for the blob
      }
      if (mayKeep(ev.policy, ev)) {
        await keeper.keep(target, ev); // admits its blobs for the verdict lifetime
        if (keeper.admittedBy(upstream, repository, digest)) return true;
      }
    }
    return false;
  }

  /** Fetches and judges a manifest; throws POLICY_DENIED when an enforce policy refuses it. */
  async decide(target: ManifestTarget): Promise<ManifestDecision> {
    const t0 = performance.now();
    const ev = await this.evaluate(target);
    const d = decide(ev.policy, ev);
    const ms = Math.round((performance.now() - t0) * 10) / 10;
    const policy = ev.policy?.name ?? '';
    this.#metrics.manifestDecisions.inc({ upstream: target.upstream, verification: d.verification, policy });
    const audit = {
      audit: 'decision',
      upstream: target.upstream,
      repository: target.repository,
      reference: target.reference,
      digest: ev.manifest.digest,
      policy: ev.policy?.name,
      mode: ev.policy?.mode,
      basis: ev.basis,
      outcome: ev.outcome?.kind,
      verification: d.verification,
      signer: d.signer,
      index: ev.index,
      cached: ev.cached,
      ms,
      reasons: ev.outcome && d.verification === 'unverified' ? d.reasons : undefined,
      notArtifact: ev.notArtifact,
    };
    if (d.action === 'deny') {
      this.#log.warn({ ...audit, verification: 'denied' }, 'manifest denied');
      this.#denied.set(`${target.upstream}|${target.repository}|${ev.manifest.digest}`, true);
      throw new SigilError({ code: 'POLICY_DENIED', message: `${target.upstream}/${target.repository}@${ev.manifest.digest}: ${d.wording}`, detail: d.denial });
    }
    this.#log.info({ ...audit, stale: ev.manifest.stale }, 'manifest decision');
    if (this.#keeper) await this.#keeper.keep(target, ev);
    return { ...ev, verification: d.verification, ...(d.signer !== undefined ? { signer: d.signer } : {}), ...(d.warning !== undefined ? { warning: d.warning } : {}) };
  }

  /** The verdict without the mode applied: shared by `decide` and `sigil verify`. */
  evaluate(target: ManifestTarget): Promise<Evaluation> {
    const key = `${target.upstream}\0${target.repository}\0${target.reference}\0${target.accept ?? ''}`;
    const running = this.#inflight.get(key);
    if (running) return running;
    const p = this.#evaluate(target).finally(() => this.#inflight.delete(key));
    this.#inflight.set(key, p);
    return p;
  }

  async #evaluate(target: ManifestTarget): Promise<Evaluation> {
    const client = this.#client(target.upstream);
    const policy = findPolicy(this.#config.policies, target.upstream, target.repository);
    // One fetch per decision: these bytes are hashed, verified and served.
    const manifest = await client.fetchManifest(target.repository, target.reference, { accept: target.accept });
    if (!policy) return { manifest, basis: 'no-policy', cached: false };
    if (policy.mode === 'off') return { manifest, policy, basis: 'mode-off', cached: false };
    // One deadline for the decision's reads: an artifact check that used it up leaves the
    // verification that follows none (a dripping upstream holds a request no longer either way).
    let deadline: DecisionDeadline | undefined;
    try {
      let notArtifact: string | undefined;
      if (this.#shapedLikeArtifact(manifest)) {
        // Shaped like one: it passes unverified only if its bytes prove it is signature data.
        deadline = new DecisionDeadline(this.#deadlineMs, `the blobs of ${manifest.digest} (upstream ${target.upstream}), shaped like a signature artifact, not read`);
        const judged = await this.#judgeArtifact(client, target, manifest, deadline);
        if (judged.ok) {
          for (const b of judged.blobs) this.#signatureBlobs.set(`${target.upstream}|${target.repository}|${b.digest}`, true);
          return { manifest, policy, basis: 'signature-artifact', signatureBlobs: judged.blobs, cached: false };
        }
        notArtifact = judged.reason;
      }
      return await this.#verified(target, manifest, policy, notArtifact, deadline);
    } finally {
      deadline?.clear();
    }
  }

  /** isSignatureArtifact, remembered by media type and digest (content-addressed: the answer never changes). */
  #shapedLikeArtifact(manifest: FetchedManifest): boolean {
    const key = `${manifest.mediaType}|${manifest.digest}`;
    let shaped = this.#artifactShapes.get(key);
    if (shaped === undefined) {
      shaped = isSignatureArtifact(manifest.mediaType, manifest.bytes);
      this.#artifactShapes.set(key, shaped);
    }
    return shaped;
  }

  /** The verdict on a manifest judged as an image: remembered through an index, cached, or verified now. */
  async #verified(target: ManifestTarget, manifest: FetchedManifest, policy: Policy, notArtifact: string | undefined, deadline: DecisionDeadline | undefined): Promise<Evaluation> {
    const keyParts = {
      upstream: target.upstream,
      repository: target.repository,
      digest: manifest.digest,
      policyFingerprint: policy.fingerprint,
      trustFingerprint: this.#verifier.trustFingerprint,
    };
    const key = verdictKey(keyParts);
    const viaIndex = this.#children.lookup(key);
    if (viaIndex) return { manifest, policy, outcome: viaIndex.outcome, basis: 'index', index: viaIndex.index, cached: true, notArtifact };

    const { outcome, cached } = await this.#verdicts.get(key, () => this.#verify(target, manifest.digest, policy, deadline));
    this.#metrics.verdictCache.inc({ result: cached ? 'hit' : 'miss' });
    if (outcome.kind === 'verified' && INDEX_MEDIA_TYPES.has(manifest.mediaType)) {
      for (const child of indexChildDigests(manifest.bytes)) {
        this.#children.remember(verdictKey({ ...keyParts, digest: child }), manifest.digest, outcome);
      }
    }
    return { manifest, policy, outcome, basis: 'signature', cached, notArtifact };
  }

  /**
   * Reads and judges the blobs of a manifest shaped like a signature artifact (memoised by
   * digest), holding a verification slot of the upstream it reads from, under the decision's
   * deadline: past it, not shown to be signature data (judged as an image: fail closed).
   */
  async #judgeArtifact(
    client: Registry,
    target: ManifestTarget,
    manifest: FetchedManifest,
    deadline: DecisionDeadline,
  ): Promise<{ ok: true; blobs: readonly SignatureBlob[] } | { ok: false; reason: string }> {
    const memoKey = `${manifest.mediaType}|${manifest.digest}`;
    const known = this.#artifactMemo.get(memoKey);
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
    this.#artifactMemo.set(memoKey, judged.ok ? { ok: true, blobs: judged.blobs.map(({ digest, size }) => ({ digest, size })) } : judged);
    if (!judged.ok) this.#log.warn({ upstream: target.upstream, repository: target.repository, digest: manifest.digest, reason: judged.reason }, 'shaped like a signature artifact, but its content is not signature data: verified as an image');
    return judged;
  }

  /**
   * One verification under the deadline: a slot of the signatures' upstream first (waiting counts
   * against the deadline), then discovery and verification; past the deadline, `indeterminate`.
   */
  async #verify(target: ManifestTarget, digest: Digest, policy: Policy, started: DecisionDeadline | undefined): Promise<Outcome> {
    const t0 = performance.now();
    let upstream = target.upstream;
    try {
      upstream = this.#signatureLocation(target, policy).registry.name;
    } catch {
      // #verifyNow reports it
    }
    const deadline = started ?? new DecisionDeadline(this.#deadlineMs, '');
    const indeterminate = (cause: string): Outcome => {
      const outcome: Outcome = { kind: 'indeterminate', cause, checks: [] };
      this.#counted(outcome, policy, t0);
      return outcome;
    };
    try {
      // The decision's deadline passed before it came to its signatures (reading an artifact's blobs).
      if (deadline.signal.aborted) return indeterminate(causeOf(deadline.signal.reason));
      deadline.doing = `signatures of ${digest} (upstream ${upstream}) not verified`;
      let release: () => void;
      try {
        release = await this.#slots.acquire(upstream, deadline.signal);
      } catch (e) {
        return indeterminate(`${causeOf(e)}, waiting for a verification slot`);
      }
      try {
        return await this.#verifyNow(target, digest, policy, deadline.signal);
      } finally {
        release();
      }
    } finally {
      if (started === undefined) deadline.clear();
    }
  }

  async #verifyNow(target: ManifestTarget, digest: Digest, policy: Policy, signal: AbortSignal): Promise<Outcome> {
    const t0 = performance.now();
    let outcome: Outcome;
    let recording: Recording | undefined;
    try {
      const where = this.#signatureLocation(target, policy);
      const rec = this.#keeper?.record(where.registry);
      const found = await discoverSignatures(rec ? { ...where, registry: rec.registry } : where, digest, { signal });
      recording = rec?.recording;
      const rejected: SignatureCheck[] = found.rejected.map((r) => ({ source: r.source, ok: false, reason: r.reason }));
      if (found.candidates.length === 0) {
        outcome = rejected.length > 0 ? { kind: 'invalid', checks: rejected } : { kind: 'unsigned', checks: [] };
      } else {
        // Offline and CPU-bound (bounded by MAX_CANDIDATES): it ends on its own, holding its slot.
        const o = await this.#verifier.verify(found.candidates, { digest }, policy);
        outcome = rejected.length > 0 ? { ...o, checks: [...o.checks, ...rejected] } : o;
      }
      // Past the deadline the outcome is indeterminate, whatever came of it.
      signal.throwIfAborted();
      if (outcome.kind !== 'verified' && found.failures.length > 0) {
        outcome = { kind: 'indeterminate', cause: found.failures.join('; '), checks: outcome.checks };
      }
    } catch (e) {
      // Could not look: upstream or trust trouble. Never "verified", never a crash.
      const cause = isSigilError(e) ? `${e.code}: ${e.message}` : `unexpected error: ${String(e)}`;
      if (!isSigilError(e)) this.#log.error({ err: e, digest }, 'verification failed unexpectedly');
      outcome = { kind: 'indeterminate', cause, checks: [] };
    }
    // Signature data is kept with the image it signs: when the image itself may be kept.
    if (recording && this.#keeper) await this.#keeper.keepSignatures(recording, digest, { policy, basis: 'signature', outcome });
    this.#counted(outcome, policy, t0);
    return outcome;
  }

  #counted(outcome: Outcome, policy: Policy, t0: number): void {
    this.#metrics.verifications.inc({ outcome: outcome.kind, policy: policy.name });
    this.#metrics.verificationDuration.observe({ outcome: outcome.kind }, (performance.now() - t0) / 1000);
  }

  /** The image's repository, or the policy's signatureRepository ("<upstream>/<repo>" or a repo on the same upstream). */
  #signatureLocation(target: ManifestTarget, policy: Policy): SignatureLocation {
    const sr = policy.signatureRepository;
    if (sr === undefined) return { registry: this.#client(target.upstream), repository: target.repository };
    const slash = sr.indexOf('/');
    const named = slash > 0 ? this.#clients.get(sr.slice(0, slash)) : undefined;
    if (named) return { registry: named, repository: sr.slice(slash + 1) };
    return { registry: this.#client(target.upstream), repository: sr };
  }

  #client(name: string): Registry {
    const c = this.#clients.get(name);
    if (!c) throw new SigilError({ code: 'NAME_UNKNOWN', message: `upstream '${name}' is not configured` });
    return c;
  }
}

/** An error as a cause: `CODE: message` for sigil's own. */
function causeOf(e: unknown): string {
  return isSigilError(e) ? `${e.code}: ${e.message}` : String(e);
}
