import type { LRUCache } from 'lru-cache';
import { lru } from '../lru.js';
import type { Logger } from 'pino';
import type { Metrics } from '../audit/metrics.js';
import { VerdictCache, VerifiedChildren, verdictKey } from './verdicts.js';
import type { SharedVerdicts } from './shared-verdicts.js';
import type { Config, Policy } from '../config/types.js';
import { SigilError } from '../errors.js';
import { INDEX_MEDIA_TYPES } from '../oci/media-types.js';
import type { Digest } from '../oci/digest.js';
import { findPolicy } from '../policy/match.js';
import type { FetchedManifest, Registry } from '../oci/registry.js';
import type { SignatureVerifier } from './verifier.js';
import type { Keep } from '../registry/keep.js';
import type { Evaluation, ManifestDecision, ManifestTarget } from '../policy/evaluation.js';
import { decide, mayKeep } from '../policy/decide.js';
import { indexChildDigests } from '../oci/manifest.js';
import { VerificationSlots } from './verification-slots.js';
import { DecisionDeadline } from './decision-deadline.js';
import { ArtifactJudge } from './artifact-judge.js';
import { SignatureVerification, clientNamed } from './signature-verification.js';

export type { Basis, Evaluation, ManifestDecision, ManifestTarget, SignatureBlob, Verification } from '../policy/evaluation.js';

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
 * requests share one fetch and one verification. A manifest shaped like a signature artifact is
 * judged by artifact-judge.ts, an image's signatures verified by signature-verification.ts, both
 * under the decision's deadline (decision-deadline.ts) and the shared slots (verification-slots.ts).
 */
export class ManifestGate {
  readonly #clients: ReadonlyMap<string, Registry>;
  readonly #config: Config;
  readonly #metrics: Metrics;
  readonly #log: Logger;
  readonly #verifier: SignatureVerifier;
  readonly #keeper: Keep | null;
  readonly #verdicts: VerdictCache;
  readonly #shared: SharedVerdicts | undefined;
  readonly #children: VerifiedChildren;
  readonly #inflight = new Map<string, Promise<Evaluation>>();
  readonly #slots = new VerificationSlots({ total: MAX_CONCURRENT_VERIFICATIONS, perUpstream: MAX_CONCURRENT_VERIFICATIONS_PER_UPSTREAM });
  readonly #deadlineMs: number;
  readonly #artifacts: ArtifactJudge;
  readonly #verification: SignatureVerification;
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
    /** With cache.shared (Redis and a peer token): verdicts other processes reached, consulted on a memory miss. */
    sharedVerdicts?: SharedVerdicts | undefined;
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
    this.#shared = deps.sharedVerdicts;
    this.#children = new VerifiedChildren({ maxEntries: maxEntries * 4, ttlMs, now: deps.now });
    this.#denied = lru(maxEntries, { ttl: ttlMs, ...(deps.now ? { perf: { now: deps.now } } : {}) });
    this.#artifacts = new ArtifactJudge({ slots: this.#slots, logger: this.#log });
    this.#verification = new SignatureVerification({
      clients: this.#clients,
      verifier: this.#verifier,
      keeper: this.#keeper,
      slots: this.#slots,
      metrics: this.#metrics,
      logger: this.#log,
      deadlineMs: this.#deadlineMs,
    });
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
    return this.#artifacts.isSignatureBlob(upstream, repository, digest);
  }

  /**
   * May a blob be served from the content store? Under enforce only while a manifest that passes
   * the current policy and trust names it in this repository: one let through by this gate
   * within the verdict lifetime, else one the store records as naming it, judged now (from the
   * store's own copy and signatures when offline). Other modes: always. `not-stored`: the store
   * has no record of it for this repository when asked — and must not be read for it after all
   * (another process, or a gate of an earlier config, may be committing it this very moment).
   */
  async storedBlobAllowed(upstream: string, repository: string, digest: Digest): Promise<boolean | 'not-stored'> {
    const keeper = this.#keeper;
    if (!keeper) return true;
    if (keeper.servesUnnamed(upstream, repository)) return true;
    if (keeper.admittedBy(upstream, repository, digest)) return true;
    const namers = await keeper.blobNamers(upstream, repository, digest);
    if (namers === null) return 'not-stored';
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
    // a denial is counted apart from what warn serves unverified (the contract's `denied`)
    this.#metrics.manifestDecisions.inc({ upstream: target.upstream, verification: d.action === 'deny' ? 'denied' : d.verification, policy });
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
      reasons: ev.outcome && (d.verification === 'unverified' || d.reasons.length > 0) ? d.reasons : undefined,
      notArtifact: ev.notArtifact,
    };
    if (d.action === 'deny') {
      this.#log.warn({ ...audit, verification: 'denied' }, 'manifest denied');
      this.#denied.set(`${target.upstream}|${target.repository}|${ev.manifest.digest}`, true);
      throw new SigilError({ code: 'POLICY_DENIED', message: `${target.upstream}/${target.repository}@${ev.manifest.digest}: ${d.wording}`, detail: d.denial, reasonPhrase: d.statusPhrase });
    }
    this.#log.info({ ...audit, stale: ev.manifest.stale }, 'manifest decision');
    if (this.#keeper) await this.#keeper.keep(target, ev);
    return { ...ev, verification: d.verification, ...(d.signer !== undefined ? { signer: d.signer } : {}), ...(d.warning !== undefined ? { warning: d.warning } : {}) };
  }

  /** The verdict without the mode applied: shared by `decide` and `sigil verify`. */
  evaluate(target: ManifestTarget): Promise<Evaluation> {
    // Shared only under the same trust: a pull that starts after trust.tuf brought a new root
    // must not join a decision made under the root it replaced.
    const key = `${target.upstream}\0${target.repository}\0${target.reference}\0${target.accept ?? ''}\0${this.#verifier.trustFingerprint}`;
    const running = this.#inflight.get(key);
    if (running) return running;
    const p = this.#evaluate(target).finally(() => this.#inflight.delete(key));
    this.#inflight.set(key, p);
    return p;
  }

  async #evaluate(target: ManifestTarget): Promise<Evaluation> {
    const client = clientNamed(this.#clients, target.upstream);
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
      if (this.#artifacts.shapedLikeArtifact(manifest)) {
        // Shaped like one: it passes unverified only if its bytes prove it is signature data.
        deadline = new DecisionDeadline(this.#deadlineMs, `the blobs of ${manifest.digest} (upstream ${target.upstream}), shaped like a signature artifact, not read`);
        const judged = await this.#artifacts.judge(client, target, manifest, deadline);
        if (judged.ok) return { manifest, policy, basis: 'signature-artifact', signatureBlobs: judged.blobs, cached: false };
        notArtifact = judged.reason;
      }
      return await this.#verified(target, manifest, policy, notArtifact, deadline);
    } finally {
      deadline?.clear();
    }
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

    const { outcome, cached } = await this.#verdicts.get(key, async () => {
      // One deadline for the decision, whether its verdict comes from another process (waited
      // for) or is reached here, after that wait or instead of it. Except when the wait used up a
      // deadline of its own (started here, not by an artifact check): the process holding the
      // key's lease then outlived a deadline that started after it took the lease — it hangs, it
      // died holding it, or someone else wrote it into Redis — and the verdict is reached here
      // under a deadline of its own, as without it: a lease nobody answers for costs one wait,
      // never the decision (at most two deadlines in all).
      const own = deadline ?? new DecisionDeadline(this.#deadlineMs, `signatures of ${manifest.digest} (upstream ${target.upstream}) not verified`);
      try {
        const verify = () => this.#verification.verify(target, manifest.digest, policy, deadline === undefined && own.signal.aborted ? undefined : own);
        if (!this.#shared) return { outcome: await verify() };
        // Past the deadline while waiting for another process's verdict, the decision says so, not
        // what it did before (an artifact's blobs, read by now); verify() says what it does next.
        own.doing = `the verdict on ${manifest.digest} (upstream ${target.upstream}) not received from another process verifying it`;
        return await this.#shared.verdict(keyParts, verify, () => this.#verifier.trustFingerprint, own.signal);
      } finally {
        if (deadline === undefined) own.clear();
      }
    });
    this.#metrics.verdictCache.inc({ result: cached ? 'hit' : 'miss' });
    if (outcome.kind === 'verified' && INDEX_MEDIA_TYPES.has(manifest.mediaType)) {
      for (const child of indexChildDigests(manifest.bytes)) {
        this.#children.remember(verdictKey({ ...keyParts, digest: child }), manifest.digest, outcome);
      }
    }
    return { manifest, policy, outcome, basis: 'signature', cached, notArtifact };
  }
}
